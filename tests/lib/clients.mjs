// Running the real client programs (skopeo, podman, buildah, python3 for
// oras, tar) from tests.

import { execFile } from 'node:child_process';

/**
 * Runs `cmd` with `home` as its HOME and XDG_RUNTIME_DIR, so its logins,
 * caches and auth files stay in the test's scratch directory. Resolves to
 * {code, stdout, stderr}; never rejects. `input` is written to its stdin.
 */
export function runIn(home, cmd, args, { input, timeout = 300_000 } = {}) {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: { ...process.env, HOME: home, XDG_RUNTIME_DIR: home }, timeout, maxBuffer: 1 << 26 },
      (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr }));
    if (input !== undefined) child.stdin.end(input);
  });
}
