// `./dev run`: starts the whole stack in the foreground, prints how to use it,
// and stops every process on Ctrl-C. Ports come from ATCR_*_PORT variables.
// The state directory (ATCR_STACK_DIR, default .stack/) is kept, so the next
// run brings back everything from before; `--fresh` (or ATCR_STACK_FRESH=1)
// deletes it first.
import { startStack } from '../tests/lib/stack.mjs';
import path from 'node:path';
import { ROOT } from '../tests/lib/stack.mjs';
import { StackStateError, looksLikeStackDir, removeState } from '../tests/lib/stack-state.mjs';

const args = process.argv.slice(2);
if (args.some((a) => a !== '--fresh')) {
  console.error(`unknown argument: ${args.find((a) => a !== '--fresh')}\nusage: ./dev run [--fresh]`);
  process.exit(2);
}
const fresh = args.includes('--fresh') || ['1', 'true', 'yes'].includes(process.env.ATCR_STACK_FRESH ?? '');

const envPort = (name, fallback) => Number(process.env[`ATCR_${name}_PORT`] ?? fallback);
const ports = {
  plc: envPort('PLC', 2582),
  pds: envPort('PDS', 2583),
  s3: envPort('S3', 9000),
  hold: envPort('HOLD', 8788),
  appview: envPort('APPVIEW', 8787),
  holdInspector: envPort('HOLD_INSPECTOR', 9230),
  appviewInspector: envPort('APPVIEW_INSPECTOR', 9229),
  byoHold: envPort('BYO_HOLD', 8789),
  byoHoldInspector: envPort('BYO_HOLD_INSPECTOR', 9231),
};
const dir = process.env.ATCR_STACK_DIR ?? path.join(ROOT, '.stack');
// `./dev run`, as typed in the directory it was typed in (the dev script passes it).
const devPath = path.relative(process.env.ATCR_CALLER_DIR ?? process.cwd(), path.join(ROOT, 'dev'));
const runCommand = `${devPath.startsWith('..') ? path.join(ROOT, 'dev') : `./${devPath}`} run`;
const freshCommand = `${process.env.ATCR_STACK_DIR ? `ATCR_STACK_DIR=${dir} ` : ''}${runCommand} --fresh`;
const s3 = {
  accessKey: process.env.ATCR_S3_ACCESS_KEY,
  secretKey: process.env.ATCR_S3_SECRET_KEY,
  bucket: process.env.ATCR_S3_BUCKET,
};

let stack;
let stopping = false;
async function shutdown(code, { quiet = false } = {}) {
  if (stopping) return;
  stopping = true;
  if (!quiet) console.log('\nstopping the stack ...');
  if (stack) await stack.stop();
  process.exit(code);
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));

let deleted = false;
if (fresh) {
  if (!looksLikeStackDir(dir)) {
    console.error(`not deleting ${dir}: it does not look like a stack state directory. Set ATCR_STACK_DIR to another directory.`);
    process.exit(1);
  }
  removeState(dir);
  deleted = true;
}
try {
  stack = await startStack({ ports, dir, s3, byoHold: true, jetstream: true, log: (m) => console.log(m) });
} catch (err) {
  if (err instanceof StackStateError) {
    console.error(`${err.message}.\nTo start fresh (this deletes ${dir} and everything pushed to it):\n  ${freshCommand}\n(or set ATCR_STACK_FRESH=1)`);
  } else {
    console.error(`the stack did not start: ${err.message}`);
  }
  await shutdown(1, { quiet: true });
}

// Cloudflare runs the appview's cron trigger every minute; wrangler dev runs
// it only when asked. It starts the Jetstream consumer and the backfill, and
// sweeps expired uploads.
const cron = async () => stack.triggerCron().catch((err) => console.error(`cron: ${err.message}`));
await cron();
setInterval(cron, 60_000).unref();

const { alice, bob } = stack.accounts;
const quotaText = ({ bytes, blobs }) => (bytes === '0' && blobs === '0'
  ? 'no quota'
  : `up to ${bytes === '0' ? 'any size' : bytes} and ${blobs === '0' ? 'any number of' : blobs} blobs`);
const registry = `127.0.0.1:${ports.appview}`;
const stateLine = stack.reused
  ? `State: reused ${dir} (made ${stack.createdAt}): the accounts, images and index from before.`
  : `State: new, in ${dir}${deleted ? ' (--fresh deleted the previous state)' : ''}.`;
const reissued = [alice, bob].filter((a) => a.appPasswordReissued).map((a) => a.handle);
console.log(`
ATCR stack is up.
${stateLine}
  It is kept when the stack stops; the next \`${runCommand}\` brings it back, \`${freshCommand}\` starts from nothing.

  appview (registry)  ${stack.urls.appview}        health: ${stack.urls.appview}/health
  shared hold         ${stack.urls.hold}        ${stack.holdDid}
                      the appview's default hold: anyone signed in pushes, ${quotaText(stack.quota)} each (owner ${alice.handle})
  alice's own hold    ${stack.urls.byoHold}        ${stack.byoHoldDid}
                      bring your own: ${alice.handle}'s defaultHold (her profile); only she and her crew push
  PDS                 ${stack.urls.pds}
  PLC                 ${stack.urls.plc}
  Jetstream           ${stack.urls.jetstream}        fed by the PDS's firehose; the appview's index follows it (cron every minute)
  S3 (s3s-fs)         ${stack.urls.s3}        bucket ${stack.s3.bucket}, key ${stack.s3.accessKey}

Demo accounts (handle / DID / password / app password):
  ${alice.handle}  ${alice.did}  ${alice.password}  ${alice.appPassword}
  ${bob.handle}  ${bob.did}  ${bob.password}  ${bob.appPassword}${reissued.length ? `
  (the app passwords of ${reissued.join(', ')} no longer worked and were re-issued)` : ''}

Push and pull (plain http on loopback, hence --dest-tls-verify=false / --tls-verify=false):
  skopeo copy --dest-tls-verify=false --dest-creds ${alice.handle}:${alice.appPassword} \\
      docker-archive:image.tar docker://${registry}/${alice.handle}/hello:latest
  skopeo copy --src-tls-verify=false docker://${registry}/${alice.handle}/hello:latest oci:hello-copy
  podman login --tls-verify=false -u ${alice.handle} -p ${alice.appPassword} ${registry}
  podman push --tls-verify=false hello ${registry}/${alice.handle}/hello:latest
  podman pull --tls-verify=false ${registry}/${alice.handle}/hello:latest
  (${alice.handle}'s blobs go to her own hold; ${bob.handle}'s, with --dest-creds ${bob.handle}:${bob.appPassword}, to the shared one)

Without a password: sign in on the web at ${stack.urls.appview}/login (${alice.handle} / ${alice.password}, on the PDS's own page),
or log the credential helper in with a device code and let podman, buildah and skopeo use it:
  cargo install --path helper && docker-credential-atcr configure-docker ${registry} && docker-credential-atcr login ${registry}

Layers over the edge's request body limit (${stack.edgeBodyLimit ? `${stack.edgeBodyLimit} bytes` : 'lifted here'}), which podman and skopeo send in one request, go
straight to the hold with atcr, which uses the credential helper's logins (cargo install --path helper installs both):
  atcr push docker-archive:image.tar ${registry}/${alice.handle}/hello:latest
  atcr pull ${registry}/${alice.handle}/hello:latest oci:hello-copy

Admin (backfill, rebuild; ADMIN_TOKEN ${stack.adminToken}):
  ./dev admin backfill --pds ${stack.urls.pds} --wait      ./dev admin rebuild --wait      ./dev admin status

Ctrl-C stops everything.`);
