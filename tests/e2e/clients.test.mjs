// More real clients and the rest of the API: multi-platform indexes
// (skopeo), buildah, oras artifacts with a subject found through the
// referrers API, deletes, and a second appview that owns nothing.
// buildah sends each layer in one PATCH, so its 200 MB layer passes only an
// edge that allows bodies that large: this stack's edge is an Enterprise
// plan's (500 MB); under Free and Pro's 100 MB it gets the edge's 413.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { PLAN_BODY_LIMITS } from '../lib/edge.mjs';
import { runIn } from '../lib/clients.mjs';
import { registryToken } from '../lib/registry.mjs';
import { buildImage, buildIndex, layoutBlobs } from '../lib/image.mjs';

let stack, scratch, registry, alice;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: PLAN_BODY_LIMITS.enterprise });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-clients-test-'));
  registry = `127.0.0.1:${stack.ports.appview}`;
  alice = stack.accounts.alice;
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args, input) => runIn(scratch, cmd, args, { input });
const creds = () => `${alice.handle}:${alice.appPassword}`;

const pullToken = (name) => registryToken(stack, `repository:${name}:pull`);

let multi;
test('skopeo pushes a multi-platform index (amd64 + arm64) and pulls every platform back', { timeout: 600_000 }, async () => {
  multi = buildIndex(scratch, { tag: 'v1' });
  const ref = `docker://${registry}/${alice.handle}/multi:v1`;
  const push = await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', '--dest-creds', creds(), `oci:${multi.layout}:v1`, ref]);
  assert.equal(push.code, 0, push.stderr);
  const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', ref]);
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal(raw.stdout, multi.indexBytes.toString(), 'the index comes back byte-identical');
  const out = path.join(scratch, 'multi-pulled');
  const pull = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', ref, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  for (const image of multi.images) {
    for (const blob of image.blobs) assert.equal(pulled[blob.digest], blob.size, `${image.architecture} blob`);
  }
  const arm = await run('skopeo', ['inspect', '--override-arch', 'arm64', '--tls-verify=false', ref]);
  assert.equal(JSON.parse(arm.stdout).Architecture, 'arm64');
});

test('an index naming a manifest that was never pushed is MANIFEST_BLOB_UNKNOWN', async () => {
  const name = `${alice.handle}/multi`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  const bogus = { ...multi.index, manifests: [{ ...multi.index.manifests[0], digest: `sha256:${'7'.repeat(64)}` }] };
  const res = await fetch(`${stack.urls.appview}/v2/${name}/manifests/broken`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.oci.image.index.v1+json' },
    body: JSON.stringify(bogus),
  });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).errors[0].code, 'MANIFEST_BLOB_UNKNOWN');
});

test('buildah pushes and pulls a two-layer image (one layer 200 MB, in one PATCH: as on an Enterprise plan)', { timeout: 600_000 }, async () => {
  const big = crypto.randomBytes(200 * 1024 * 1024);
  const image = buildImage(scratch, { tag: 'b1', layers: [{ 'buildah.txt': 'pushed by buildah\n' }, { 'big.bin': big }] });
  // Podman and buildah name an image after its layout's path, which must be lowercase.
  const layout = path.join(os.tmpdir(), `atcr-buildah-layout-${crypto.randomBytes(6).toString('hex')}`);
  process.on('exit', () => fs.rmSync(layout, { recursive: true, force: true }));
  fs.renameSync(image.layout, layout);
  const storage = ['--root', path.join(scratch, 'buildah-root'), '--runroot', path.join(scratch, 'buildah-run'), '--storage-driver', 'vfs'];
  const buildah = (...args) => run('buildah', [...storage, ...args]);
  const load = await buildah('pull', `oci:${layout}:b1`);
  assert.equal(load.code, 0, load.stderr);
  const imageId = load.stdout.trim().split('\n').pop();
  const remote = `${registry}/${alice.handle}/buildah-app:b1`;
  const push = await buildah('push', '--tls-verify=false', '--creds', creds(), imageId, `docker://${remote}`);
  assert.equal(push.code, 0, push.stderr);
  assert.equal((await buildah('rmi', '-f', imageId)).code, 0);
  const pull = await buildah('pull', '--tls-verify=false', remote);
  assert.equal(pull.code, 0, pull.stderr);
  assert.equal(pull.stdout.trim().split('\n').pop(), imageId, 'the same image (config digest) came back');
  // The pulled image unpacks: a working container holds the files pushed.
  const from = await buildah('from', imageId);
  assert.equal(from.code, 0, from.stderr);
  const container = from.stdout.trim().split('\n').pop();
  const mount = await buildah('mount', container);
  assert.equal(mount.code, 0, mount.stderr);
  const root = mount.stdout.trim();
  const hash = (b) => crypto.createHash('sha256').update(b).digest('hex');
  assert.equal(fs.readFileSync(path.join(root, 'buildah.txt'), 'utf8'), 'pushed by buildah\n');
  assert.equal(hash(fs.readFileSync(path.join(root, 'big.bin'))), hash(big));
  await buildah('umount', container);
  await buildah('rm', container);
});

test('oras pushes an artifact in several chunked PATCHes with a subject, found through the referrers API, and pulls it', { timeout: 600_000 }, async () => {
  const subject = multi.images[0];
  const sbom = path.join(scratch, 'sbom.json');
  // 12 MiB in 5 MiB chunks: three PATCHes, the last one short.
  const packages = Array.from({ length: 120_000 }, (_, i) => ({ name: `pkg-${i}`, version: `1.${i}.0`, checksum: crypto.randomBytes(32).toString('hex') }));
  fs.writeFileSync(sbom, JSON.stringify({ spdxVersion: 'SPDX-2.3', name: 'multi', packages }));
  assert.ok(fs.statSync(sbom).size > 10 * 1024 * 1024);
  const script = `
import oras.client, oras.oci
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest="${subject.digest}", size=${subject.manifestBytes.length})
c = oras.client.OrasClient(hostname="${registry}", insecure=True)
c.login(username="${alice.handle}", password="${alice.appPassword}", hostname="${registry}", tls_verify=False)
import os
os.chdir("${scratch}")
r = c.push(target="${registry}/${alice.handle}/multi:sbom", files=["sbom.json:application/spdx+json"],
           manifest_config="/dev/null:application/vnd.example.sbom", subject=subject, do_chunked=True, chunk_size=5 * 1024 * 1024)
print(r.status_code)
`;
  const push = await run('python3', ['-c', script]);
  assert.equal(push.code, 0, push.stderr + push.stdout);

  const name = `${alice.handle}/multi`;
  const bearer = { authorization: `Bearer ${await pullToken(name)}` };
  const res = await fetch(`${stack.urls.appview}/v2/${name}/referrers/${multi.images[0].digest}`, { headers: bearer });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
  const index = await res.json();
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0].artifactType, 'application/vnd.example.sbom');
  const filtered = await fetch(`${stack.urls.appview}/v2/${name}/referrers/${multi.images[0].digest}?artifactType=application/x-other`, { headers: bearer });
  assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
  assert.deepEqual((await filtered.json()).manifests, []);

  const outdir = path.join(scratch, 'oras-out');
  const pull = await run('python3', ['-c', `
import oras.client
c = oras.client.OrasClient(hostname="${registry}", insecure=True)
print(c.pull(target="${registry}/${alice.handle}/multi:sbom", outdir="${outdir}"))
`]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.equal(fs.readFileSync(path.join(outdir, 'sbom.json'), 'utf8'), fs.readFileSync(sbom, 'utf8'));
});

test('a second appview with an empty D1 pulls the same image: ownership lives in the PDS', { timeout: 600_000 }, async () => {
  const second = await stack.startAppview('appview2');
  const host = second.replace('http://', '');
  const out = path.join(scratch, 'second-pulled');
  const pull = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${host}/${alice.handle}/multi:v1`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  assert.equal(pulled[multi.digest], multi.indexBytes.length);
  const tags = await run('skopeo', ['list-tags', '--tls-verify=false', `docker://${host}/${alice.handle}/multi`]);
  assert.deepEqual(JSON.parse(tags.stdout).Tags.sort(), ['sbom', 'v1']);
});

test('deleting a manifest by digest removes it and the tags naming it', async () => {
  const image = buildImage(scratch, { tag: 'gone', layers: [{ 'bye.txt': 'soon deleted\n' }] });
  const ref = `docker://${registry}/${alice.handle}/doomed:gone`;
  assert.equal((await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds(), `oci:${image.layout}:gone`, ref])).code, 0);
  const del = await run('skopeo', ['delete', '--tls-verify=false', '--creds', creds(), `docker://${registry}/${alice.handle}/doomed@${image.digest}`]);
  assert.equal(del.code, 0, del.stderr);
  const inspect = await run('skopeo', ['inspect', '--tls-verify=false', ref]);
  assert.notEqual(inspect.code, 0);
  assert.match(inspect.stderr, /manifest unknown/i);
});
