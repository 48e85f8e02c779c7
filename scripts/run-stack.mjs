// `./dev run`: starts the whole stack in the foreground, prints how to use it,
// and stops every process on Ctrl-C. Ports come from ATCR_*_PORT variables.
import { startStack } from '../tests/lib/stack.mjs';
import path from 'node:path';
import { ROOT } from '../tests/lib/stack.mjs';

const envPort = (name, fallback) => Number(process.env[`ATCR_${name}_PORT`] ?? fallback);
const ports = {
  plc: envPort('PLC', 2582),
  pds: envPort('PDS', 2583),
  s3: envPort('S3', 9000),
  hold: envPort('HOLD', 8788),
  appview: envPort('APPVIEW', 8787),
  holdInspector: envPort('HOLD_INSPECTOR', 9230),
  appviewInspector: envPort('APPVIEW_INSPECTOR', 9229),
};
const dir = process.env.ATCR_STACK_DIR ?? path.join(ROOT, '.stack');
const s3 = {
  accessKey: process.env.ATCR_S3_ACCESS_KEY,
  secretKey: process.env.ATCR_S3_SECRET_KEY,
  bucket: process.env.ATCR_S3_BUCKET,
};

let stack;
let stopping = false;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping the stack ...');
  if (stack) await stack.stop();
  process.exit(code);
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));

try {
  stack = await startStack({ ports, dir, s3, log: (m) => console.log(m) });
} catch (err) {
  console.error(`the stack did not start: ${err.message}`);
  process.exit(1);
}

const { alice, bob } = stack.accounts;
const registry = `127.0.0.1:${ports.appview}`;
console.log(`
ATCR stack is up (state in ${dir}).

  appview (registry)  ${stack.urls.appview}        health: ${stack.urls.appview}/health
  hold                ${stack.urls.hold}        ${stack.holdDid}
  PDS                 ${stack.urls.pds}
  PLC                 ${stack.urls.plc}
  S3 (s3s-fs)         ${stack.urls.s3}        bucket ${stack.s3.bucket}, key ${stack.s3.accessKey}

Demo accounts (handle / DID / password / app password):
  ${alice.handle}  ${alice.did}  ${alice.password}  ${alice.appPassword}
  ${bob.handle}  ${bob.did}  ${bob.password}  ${bob.appPassword}

Push and pull (plain http on loopback, hence --dest-tls-verify=false / --tls-verify=false):
  skopeo copy --dest-tls-verify=false --dest-creds ${alice.handle}:${alice.appPassword} \\
      docker-archive:image.tar docker://${registry}/${alice.handle}/hello:latest
  skopeo copy --src-tls-verify=false docker://${registry}/${alice.handle}/hello:latest oci:hello-copy
  podman login --tls-verify=false -u ${alice.handle} -p ${alice.appPassword} ${registry}
  podman push --tls-verify=false hello ${registry}/${alice.handle}/hello:latest
  podman pull --tls-verify=false ${registry}/${alice.handle}/hello:latest

Ctrl-C stops everything.`);
