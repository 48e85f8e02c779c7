// Real clients push and pull real images: manifests land in the owner's PDS
// as records, layers in the owner's hold, and what comes back is byte-identical.
// skopeo and podman send each layer in one PATCH, so their 200 MB layers pass
// only an edge that allows bodies that large: this stack's edge is an
// Enterprise plan's (500 MB). Under Free and Pro's 100 MB the same push gets
// the edge's 413 (edge-limit.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { PLAN_BODY_LIMITS } from '../lib/edge.mjs';
import { runIn } from '../lib/clients.mjs';
import { xrpc } from '../lib/atproto.mjs';
import { buildImage, layoutBlobs } from '../lib/image.mjs';

let stack, scratch, registry, alice, bob;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: PLAN_BODY_LIMITS.enterprise });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-push-test-'));
  registry = `127.0.0.1:${stack.ports.appview}`;
  ({ alice, bob } = stack.accounts);
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args) => runIn(scratch, cmd, args);

/** The files of an unpacked image under `root` hold exactly `files` ({path: content}). */
function assertUnpacked(root, files) {
  const hash = (b) => crypto.createHash('sha256').update(b).digest('hex');
  for (const [file, content] of Object.entries(files)) {
    assert.equal(hash(fs.readFileSync(path.join(root, file))), hash(Buffer.from(content)), `${file} unpacked intact`);
  }
}

const records = async (collection, did = alice.did) =>
  (await xrpc(stack.urls.pds, 'com.atproto.repo.listRecords', { params: { repo: did, collection, limit: 100 } })).records;

test('skopeo pushes a two-layer image (one layer 200 MB, in one PATCH: as on an Enterprise plan) and pulls it back byte for byte; the records are in alice\'s PDS', { timeout: 600_000 }, async () => {
  const big = crypto.randomBytes(200 * 1024 * 1024);
  const image = buildImage(scratch, {
    tag: 'v1',
    layers: [{ 'etc/hello.txt': 'hello from atcr\n' }, { 'data/random.bin': big }],
  });
  const ref = `${registry}/${alice.handle}/app:v1`;
  const push = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`, `oci:${image.layout}:v1`, `docker://${ref}`]);
  assert.equal(push.code, 0, push.stderr);

  const out = path.join(scratch, 'pulled');
  const pull = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  for (const blob of image.blobs) assert.equal(pulled[blob.digest], blob.size, `blob ${blob.digest}`);
  assert.equal(pulled[image.digest], image.manifestBytes.length, 'the manifest comes back byte-identical');
  // The image unpacks: its layers are tarballs holding the files pushed.
  const rootfs = path.join(scratch, 'rootfs');
  fs.mkdirSync(rootfs);
  for (const layer of image.manifest.layers) {
    const untar = await run('tar', ['-xzf', path.join(out, 'blobs', 'sha256', layer.digest.slice(7)), '-C', rootfs]);
    assert.equal(untar.code, 0, untar.stderr);
  }
  assertUnpacked(rootfs, { 'etc/hello.txt': 'hello from atcr\n', 'data/random.bin': big });

  const manifests = await records('io.atcr.manifest');
  const record = manifests.find((r) => r.value.digest === image.digest);
  assert.ok(record, 'an io.atcr.manifest record names the manifest');
  assert.equal(record.value.repository, 'app');
  assert.equal(record.value.holdDid, stack.holdDid);
  assert.equal(record.value.layers.length, 2);
  assert.ok(record.value.manifestBlob.ref.$link);
  const tags = await records('io.atcr.tag');
  const tag = tags.find((r) => r.value.tag === 'v1' && r.value.repository === 'app');
  assert.equal(tag.value.manifest, record.uri);
  const profile = await records('io.atcr.sailor.profile');
  assert.equal(profile[0].value.defaultHold, stack.holdDid);
});

test('inspect and tags list see the pushed tag; manifests by digest are byte-identical', async () => {
  const inspect = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry}/${alice.handle}/app:v1`]);
  assert.equal(inspect.code, 0, inspect.stderr);
  const info = JSON.parse(inspect.stdout);
  assert.deepEqual(info.RepoTags, ['v1']);
  assert.equal(info.Architecture, 'amd64');
});

test('bob cannot push into alice\'s repository', async () => {
  const image = buildImage(scratch, { tag: 'evil', layers: [{ 'x': 'bob was here' }] });
  const res = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${bob.handle}:${bob.appPassword}`, `oci:${image.layout}:evil`, `docker://${registry}/${alice.handle}/app:evil`]);
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /denied|unauthorized|401|403/i);
  const tags = await records('io.atcr.tag');
  assert.ok(!tags.some((r) => r.value.tag === 'evil'), 'no tag record was written');
});

test('podman pushes and pulls a two-layer image (one layer 200 MB, in one PATCH: as on an Enterprise plan) with an app-password login', { timeout: 600_000 }, async () => {
  const big = crypto.randomBytes(200 * 1024 * 1024);
  const image = buildImage(scratch, { tag: 'p1', layers: [{ 'podman.txt': 'pushed by podman\n' }, { 'big.bin': big }] });
  // Podman keeps images in its own storage: an isolated one, loaded from the layout.
  // Podman and buildah name an image after its layout's path, which must be lowercase.
  const layout = path.join(os.tmpdir(), `atcr-podman-layout-${crypto.randomBytes(6).toString('hex')}`);
  process.on('exit', () => fs.rmSync(layout, { recursive: true, force: true }));
  fs.renameSync(image.layout, layout);
  const storage = ['--root', path.join(scratch, 'podman-root'), '--runroot', path.join(scratch, 'podman-run'), '--storage-driver', 'vfs'];
  const podman = (...args) => run('podman', [...storage, ...args]);
  const load = await podman('pull', `oci:${layout}:p1`);
  assert.equal(load.code, 0, load.stderr);
  const imageId = load.stdout.trim().split('\n').pop();
  const remote = `${registry}/${alice.handle}/podman-app:p1`;
  assert.equal((await podman('login', '--tls-verify=false', '-u', alice.handle, '-p', alice.appPassword, registry)).code, 0);
  const push = await podman('push', '--tls-verify=false', imageId, `docker://${remote}`);
  assert.equal(push.code, 0, push.stderr);
  assert.equal((await podman('rmi', '-f', imageId)).code, 0);
  const pull = await podman('pull', '--tls-verify=false', remote);
  assert.equal(pull.code, 0, pull.stderr);
  // The image ID is the config's digest: the same image came back.
  assert.equal(pull.stdout.trim().split('\n').pop(), imageId);
  assert.equal(`sha256:${imageId}`, image.blobs[0].digest);
  // The pulled image unpacks into podman's storage with the files pushed.
  const mount = await podman('image', 'mount', imageId);
  assert.equal(mount.code, 0, mount.stderr);
  assertUnpacked(mount.stdout.trim(), { 'podman.txt': 'pushed by podman\n', 'big.bin': big });
  await podman('image', 'unmount', imageId);
});
