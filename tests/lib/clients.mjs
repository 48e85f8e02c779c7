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

const ORAS_PRELUDE = `
import hashlib, json, os, sys
import oras.client
p = json.load(sys.stdin)
c = oras.client.OrasClient(hostname=p["registry"], insecure=True)
c.login(username=p["user"], password=p["password"], hostname=p["registry"], tls_verify=False)
exchanges = []
c.session.hooks["response"].append(lambda r, *a, **k: exchanges.append([r.request.method, r.status_code, int(r.request.headers.get("Content-Length") or 0)]))
def report(**kw):
    print(json.dumps({"exchanges": exchanges, **kw}))
`;

/**
 * Runs a Python `script` with oras-py: `p` is `params` (with `registry`,
 * `user` and `password`, which `c`, an OrasClient, is logged in with), and
 * `report(**kw)` prints what the script found, with every HTTP exchange as
 * [method, status, request body length]. Resolves to that report; rejects
 * with the script's output if it fails.
 */
export async function oras(home, script, params) {
  const res = await runIn(home, 'python3', ['-c', ORAS_PRELUDE + script], { input: JSON.stringify(params), timeout: 540_000 });
  if (res.code !== 0) throw new Error(`oras script failed (${res.code}):\n${res.stderr}\n${res.stdout}`);
  return JSON.parse(res.stdout.trim().split('\n').pop());
}

/** The counts `atcr push` reports on its last line; throws if there is none. */
export function atcrPushCounts(stdout) {
  const m = stdout.match(/(\d+) blobs to the hold, (\d+) through the registry, (\d+) already present, (\d+) linked from the hold; parts sent: (\d+), parts resumed: (\d+), bytes sent: (\d+)/);
  if (!m) throw new Error(`no push summary in: ${stdout}`);
  const [direct, small, present, linked, sent, resumed, bytes] = m.slice(1).map(Number);
  return { direct, small, present, linked, sent, resumed, bytes };
}
