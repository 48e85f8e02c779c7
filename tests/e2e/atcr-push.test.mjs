// `atcr push` and `atcr pull` (the helper's second binary) on the real local
// stack, behind an edge whose body limit (8 MB here, 100 MB on Cloudflare
// Free and Pro) is far below the image's 40 MiB layer: skopeo, which sends
// a layer in one PATCH, gets the edge's 413, while `atcr push` sends the
// layer straight to alice's own hold in presigned multipart parts, in
// parallel, and the manifest through the appview. skopeo pulls the image
// back byte for byte and the records are in alice's PDS. Also: a push
// stopped after a few parts resumes without sending them again; a second
// push sends nothing; `atcr pull` writes an OCI layout (and an oci-archive)
// with identical blobs; `docker save`-style and OCI archives push as they
// lie; pushing into bob's repository as alice is refused before anything
// is written; the hold still verifies every digest and charges its quota.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startStack, ROOT } from '../lib/stack.mjs';
import { runIn, atcrPushCounts as counts } from '../lib/clients.mjs';
import { listAllRecords } from '../lib/atproto.mjs';
import { buildImage, layoutBlobs } from '../lib/image.mjs';
import { registryToken } from '../lib/registry.mjs';

const HELPER = path.join(ROOT, 'target', 'debug', 'docker-credential-atcr');
const ATCR = path.join(ROOT, 'target', 'debug', 'atcr');
const MIB = 1024 * 1024;
const LIMIT = 8_000_000;

let stack, scratch, registry, alice, bob, image;
before(async () => {
  execFileSync('cargo', ['build', '-q', '-p', 'docker-credential-atcr'], { cwd: ROOT, stdio: 'inherit' });
  // alice pushes to her own hold; bob to the shared one, within 30 MB.
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: LIMIT, byoHold: true, hold: { quotaBytes: '30MB' } });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-push-cli-test-'));
  // Logins and upload states under the scratch HOME.
  delete process.env.XDG_CONFIG_HOME;
  delete process.env.XDG_CACHE_HOME;
  registry = `127.0.0.1:${stack.ports.appview}`;
  ({ alice, bob } = stack.accounts);
  // alice's login, as `docker login` (or the device login) would store it.
  const stored = await runIn(scratch, HELPER, ['store'], {
    input: JSON.stringify({ ServerURL: registry, Username: alice.handle, Secret: alice.appPassword }),
  });
  assert.equal(stored.code, 0, stored.stdout);
  image = buildImage(scratch, {
    tag: 'v1',
    layers: [{ 'etc/hello.txt': 'hello from atcr push\n' }, { 'data/random.bin': crypto.randomBytes(40 * MIB) }],
  });
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** Runs `cmd` in the scratch HOME, with `env` added to its environment. */
const run = (cmd, args, env = {}) =>
  runIn(scratch, 'env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args], { timeout: 540_000 });
const atcr = (args, env) => run(ATCR, args, env);


const statBlob = (digest) => fetch(`${stack.urls.byoHold}/xrpc/io.atcr.hold.statBlob?digest=${digest}`);
const big = () => image.blobs.reduce((a, b) => (b.size > a.size ? b : a));

test('skopeo gets the edge\'s 413 for the 40 MiB layer; atcr push sends it to alice\'s hold in parallel parts, skopeo pulls it back byte for byte, the records are in her PDS', { timeout: 600_000 }, async () => {
  const ref = `${registry}/${alice.handle}/big:v1`;
  const skopeo = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`, `oci:${image.layout}:v1`, `docker://${ref}`]);
  assert.notEqual(skopeo.code, 0, 'one PATCH over the limit fails');
  assert.match(skopeo.stderr, /413|Request Entity Too Large/i, skopeo.stderr);

  const push = await atcr(['push', `oci:${image.layout}:v1`, ref, '--parallel', '3', '--part-size', '5MiB']);
  assert.equal(push.code, 0, push.stderr);
  const c = counts(push.stdout);
  assert.equal(c.direct, 1, 'the big layer went to the hold');
  // skopeo may have sent the small blobs before the big one was refused.
  assert.equal(c.small + c.present, 2, 'config and small layer through the registry');
  assert.equal(c.sent, Math.ceil(big().size / (5 * MIB)));
  assert.equal(c.resumed, 0);
  assert.match(push.stderr, new RegExp(`to ${stack.byoHoldDid.replace(/[%.]/g, '\\$&')} in \\d+ parts`));
  assert.equal((await statBlob(big().digest)).status, 200, 'the layer is in alice\'s own hold');

  const out = path.join(scratch, 'skopeo-pulled');
  const pull = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  for (const blob of image.blobs) assert.equal(pulled[blob.digest], blob.size, `blob ${blob.digest}`);
  assert.equal(pulled[image.digest], image.manifestBytes.length, 'the manifest comes back byte-identical');

  const manifests = await listAllRecords(stack.urls.pds, alice.did, 'io.atcr.manifest');
  const record = manifests.find((r) => r.value.digest === image.digest);
  assert.ok(record, 'an io.atcr.manifest record for the pushed digest');
  assert.equal(record.value.repository, 'big');
  assert.equal(record.value.holdDid, stack.byoHoldDid);
  const tags = await listAllRecords(stack.urls.pds, alice.did, 'io.atcr.tag');
  assert.ok(tags.some((r) => r.value.repository === 'big' && r.value.tag === 'v1' && r.value.manifest === record.uri));
});

test('a second push of the same image sends nothing: every blob is already there', { timeout: 300_000 }, async () => {
  const push = await atcr(['push', `oci:${image.layout}:v1`, `${registry}/${alice.handle}/big:v2`]);
  assert.equal(push.code, 0, push.stderr);
  const c = counts(push.stdout);
  assert.deepEqual([c.direct, c.small, c.present, c.sent, c.bytes], [0, 0, 3, 0, 0]);
  assert.match(push.stderr, /already in the registry/);
});

test('a layer deleted from the repository but still in the hold is linked back without sending it, so the manifest push succeeds', { timeout: 300_000 }, async () => {
  const token = await registryToken(stack, `repository:${alice.handle}/big:pull,push,delete`, alice);
  const blobUrl = `${stack.urls.appview}/v2/${alice.handle}/big/blobs/${big().digest}`;
  const del = await fetch(blobUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  assert.equal(del.status, 202);
  assert.equal((await fetch(blobUrl, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } })).status, 404);
  const push = await atcr(['push', `oci:${image.layout}:v1`, `${registry}/${alice.handle}/big:v3`, '--part-size', '5MiB']);
  assert.equal(push.code, 0, push.stderr);
  const c = counts(push.stdout);
  assert.deepEqual([c.direct, c.present, c.linked, c.bytes], [0, 2, 1, 0]);
  assert.equal((await fetch(blobUrl, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } })).status, 200, 'linked again');
});

test('an image in containers-storage is exported by skopeo to a temporary layout and pushed from there', { timeout: 600_000 }, async () => {
  const other = buildImage(scratch, { tag: 's1', layers: [{ 'data/storage.bin': crypto.randomBytes(8 * MIB) }] });
  const store = `containers-storage:[vfs@${path.join(scratch, 'storage-root')}+${path.join(scratch, 'storage-run')}]localhost/atcr-e2e:s1`;
  const loaded = await run('skopeo', ['copy', `oci:${other.layout}:s1`, store]);
  assert.equal(loaded.code, 0, loaded.stderr);
  const ref = `${registry}/${alice.handle}/from-storage:s1`;
  const push = await atcr(['push', store, ref, '--part-size', '5MiB']);
  assert.equal(push.code, 0, push.stderr);
  assert.equal(counts(push.stdout).direct, 1);
  const out = path.join(scratch, 'storage-pulled');
  const pull = await atcr(['pull', ref, `oci:${out}:s1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const layer = other.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  // containers-storage keeps layers uncompressed and skopeo compresses them
  // again on the way out: the files are what must come back.
  const root = path.join(scratch, 'storage-root-unpacked');
  fs.mkdirSync(root);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'blobs', 'sha256', JSON.parse(fs.readFileSync(path.join(out, 'index.json'))).manifests[0].digest.slice(7))));
  for (const l of manifest.layers) execFileSync('tar', ['-xf', path.join(out, 'blobs', 'sha256', l.digest.slice(7)), '-C', root]);
  const original = path.join(scratch, 'storage-original');
  fs.mkdirSync(original);
  execFileSync('tar', ['-xf', path.join(other.layout, 'blobs', 'sha256', layer.digest.slice(7)), '-C', original]);
  assert.ok(fs.readFileSync(path.join(root, 'data/storage.bin')).equals(fs.readFileSync(path.join(original, 'data/storage.bin'))));
});

test('layers go to the hold side by side, sharing the part slots', { timeout: 300_000 }, async () => {
  const other = buildImage(scratch, { tag: 'm1', layers: [{ 'a.bin': crypto.randomBytes(11 * MIB) }, { 'b.bin': crypto.randomBytes(7 * MIB) }, { 'c.bin': crypto.randomBytes(9 * MIB) }] });
  const ref = `${registry}/${alice.handle}/multi:m1`;
  const push = await atcr(['push', `oci:${other.layout}:m1`, ref, '--parallel', '2', '--part-size', '5MiB']);
  assert.equal(push.code, 0, push.stderr);
  const c = counts(push.stdout);
  assert.equal(c.direct, 3);
  assert.equal(c.sent, 3 + 2 + 2);
  const out = path.join(scratch, 'multi-pulled');
  const pull = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:m1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  for (const blob of other.blobs) assert.equal(pulled[blob.digest], blob.size, `blob ${blob.digest}`);
});

test('on a terminal each layer gets a progress bar with bytes, rate and time left', { timeout: 300_000 }, async () => {
  const other = buildImage(scratch, { tag: 't1', layers: [{ 'tty.bin': crypto.randomBytes(12 * MIB) }] });
  const cmd = [ATCR, 'push', `oci:${other.layout}:t1`, `${registry}/${alice.handle}/tty:t1`, '--part-size', '5MiB'].join(' ');
  // script(1) runs the push on a pseudo-terminal and copies what it drew.
  const shown = await run('script', ['-qec', cmd, '/dev/null'], { COLUMNS: '120', LINES: '40', TERM: 'xterm' });
  assert.equal(shown.code, 0, shown.stdout);
  assert.match(shown.stdout, /\[[=> ]{30}\]/, 'a bar');
  assert.match(shown.stdout, /MiB\/12\.\d+ MiB/, 'bytes done of the layer');
  assert.match(shown.stdout, /ETA/);
  assert.match(shown.stdout, /pushed .*tty:t1/);
});

test('a push stopped after 3 parts resumes: the parts stored are not sent again', { timeout: 600_000 }, async () => {
  const layer = crypto.randomBytes(30 * MIB);
  const other = buildImage(scratch, { tag: 'r1', layers: [{ 'data/resume.bin': layer }] });
  const ref = `${registry}/${alice.handle}/resume:r1`;
  const layerBlob = other.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  const total = Math.ceil(layerBlob.size / (5 * MIB));
  const args = ['push', `oci:${other.layout}:r1`, ref, '--parallel', '2', '--part-size', '5MiB'];

  const stopped = await atcr(args, { ATCR_TEST_STOP_AFTER_PARTS: '3' });
  assert.equal(stopped.code, 75, stopped.stderr);
  assert.match(stopped.stderr, /stopping after 3 parts/);
  const stateDir = path.join(scratch, '.cache', 'atcr', 'uploads');
  const states = fs.readdirSync(stateDir);
  assert.equal(states.length, 1, 'one upload state kept');
  const state = JSON.parse(fs.readFileSync(path.join(stateDir, states[0]), 'utf8'));
  assert.equal(state.digest, layerBlob.digest);
  assert.ok(Object.keys(state.parts).length >= 3, 'the confirmed parts are saved with their ETags');
  assert.equal((await statBlob(layerBlob.digest)).status, 404, 'nothing published yet');

  const resumed = await atcr(args);
  assert.equal(resumed.code, 0, resumed.stderr);
  const c = counts(resumed.stdout);
  assert.equal(c.resumed, Object.keys(state.parts).length, 'every saved part is reused');
  assert.equal(c.sent + c.resumed, total);
  assert.equal(c.present, 1, 'the config went in before the stop');
  assert.equal(c.bytes, layerBlob.size - c.resumed * 5 * MIB, 'only the missing parts\' bytes are sent');
  assert.match(resumed.stderr, /resuming, \d+ of \d+ parts already stored/);
  assert.deepEqual(fs.readdirSync(stateDir), [], 'the state is gone once the blob is in');
  assert.equal((await statBlob(layerBlob.digest)).status, 200);

  const out = path.join(scratch, 'resumed-pulled');
  const pull = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:r1`]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.equal(layoutBlobs(out)[layerBlob.digest], layerBlob.size, 'the resumed layer is whole');
});

test('atcr pull writes an OCI layout and an oci-archive whose blobs are the ones pushed', { timeout: 300_000 }, async () => {
  const out = path.join(scratch, 'atcr-pulled');
  const pull = await atcr(['pull', `${registry}/${alice.handle}/big:v1`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stdout, new RegExp(`pulled .* ${image.digest}`));
  const pulled = layoutBlobs(out);
  assert.deepEqual(pulled, layoutBlobs(image.layout), 'the same blobs, byte for byte');
  const index = JSON.parse(fs.readFileSync(path.join(out, 'index.json'), 'utf8'));
  assert.equal(index.manifests[0].digest, image.digest);
  assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'v1');
  // Again: nothing to fetch.
  const again = await atcr(['pull', `${registry}/${alice.handle}/big:v1`, `oci:${out}:v1`]);
  assert.match(again.stdout, /0 blobs fetched/);

  const archive = path.join(scratch, 'pulled.tar');
  const toArchive = await atcr(['pull', `${registry}/${alice.handle}/big:v1`, `oci-archive:${archive}:v1`]);
  assert.equal(toArchive.code, 0, toArchive.stderr);
  const unpacked = path.join(scratch, 'unpacked');
  const copy = await run('skopeo', ['copy', `oci-archive:${archive}:v1`, `oci:${unpacked}:v1`]);
  assert.equal(copy.code, 0, copy.stderr);
  assert.equal(layoutBlobs(unpacked)[big().digest], big().size);
});

test('docker-archive and oci-archive files push as they lie, read in place', { timeout: 600_000 }, async () => {
  const small = buildImage(scratch, { tag: 'a1', layers: [{ 'data/archive.bin': crypto.randomBytes(12 * MIB) }] });
  for (const [transport, repo] of [['docker-archive', 'from-docker'], ['oci-archive', 'from-oci']]) {
    const file = path.join(scratch, `${repo}.tar`);
    const made = await run('skopeo', ['copy', `oci:${small.layout}:a1`, transport === 'docker-archive' ? `${transport}:${file}:${repo}:a1` : `${transport}:${file}:a1`]);
    assert.equal(made.code, 0, made.stderr);
    const ref = `${registry}/${alice.handle}/${repo}:a1`;
    const push = await atcr(['push', `${transport}:${file}`, ref, '--part-size', '5MiB']);
    assert.equal(push.code, 0, push.stderr);
    assert.ok(counts(push.stdout).sent >= 2, `${transport}: the layer went in parts`);
    const out = path.join(scratch, `${repo}-pulled`);
    const pull = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:a1`]);
    assert.equal(pull.code, 0, pull.stderr);
    // The unpacked files are the same, whatever form the layers took in the archive.
    const root = path.join(scratch, `${repo}-root`);
    fs.mkdirSync(root);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'blobs', 'sha256', JSON.parse(fs.readFileSync(path.join(out, 'index.json'))).manifests[0].digest.slice(7))));
    for (const l of manifest.layers) execFileSync('tar', ['-xf', path.join(out, 'blobs', 'sha256', l.digest.slice(7)), '-C', root]);
    assert.equal(fs.statSync(path.join(root, 'data/archive.bin')).size, 12 * MIB, `${transport}: the layer unpacks`);
  }
});

test('alice pushing into bob\'s repository is refused before any byte is sent; nothing is written', { timeout: 300_000 }, async () => {
  const other = buildImage(scratch, { tag: 'x', layers: [{ 'data/intruder.bin': crypto.randomBytes(12 * MIB) }] });
  const layerBlob = other.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  const push = await atcr(['push', `oci:${other.layout}:x`, `${registry}/${bob.handle}/app:x`, '--part-size', '5MiB']);
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /may not push|only .* may push|DENIED|denied/i);
  assert.equal((await statBlob(layerBlob.digest)).status, 404, 'nothing reached alice\'s hold');
  const sharedStat = await fetch(`${stack.urls.hold}/xrpc/io.atcr.hold.statBlob?digest=${layerBlob.digest}`);
  assert.notEqual(sharedStat.status, 200, 'nor the shared hold');
  assert.equal((await listAllRecords(stack.urls.pds, bob.did, 'io.atcr.manifest')).length, 0, 'no record in bob\'s PDS');
});

test('the hold still verifies the digest: a layer whose bytes were altered is refused and nothing is published', { timeout: 300_000 }, async () => {
  const other = buildImage(scratch, { tag: 'c1', layers: [{ 'data/corrupt.bin': crypto.randomBytes(12 * MIB) }] });
  const layer = other.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  const file = path.join(other.layout, 'blobs', 'sha256', layer.digest.slice(7));
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([0x42]), 0, 1, 6 * MIB);
  fs.closeSync(fd);
  const push = await atcr(['push', `oci:${other.layout}:c1`, `${registry}/${alice.handle}/corrupt:c1`, '--part-size', '5MiB']);
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /DigestMismatch/);
  assert.equal((await statBlob(layer.digest)).status, 404, 'nothing published under the digest');
  assert.deepEqual(fs.readdirSync(path.join(scratch, '.cache', 'atcr', 'uploads')), [], 'nothing left to resume');
  const tags = await listAllRecords(stack.urls.pds, alice.did, 'io.atcr.tag');
  assert.ok(!tags.some((r) => r.value.repository === 'corrupt'), 'no tag record');
});

test('bob, on the shared hold, is held to his quota: the 40 MiB layer is refused at completion and not published', { timeout: 300_000 }, async () => {
  const bobHome = path.join(scratch, 'bob-home');
  fs.mkdirSync(bobHome);
  const stored = await runIn(bobHome, HELPER, ['store'], {
    input: JSON.stringify({ ServerURL: registry, Username: bob.handle, Secret: bob.appPassword }),
  });
  assert.equal(stored.code, 0, stored.stdout);
  const push = await atcr(['push', `oci:${image.layout}:v1`, `${registry}/${bob.handle}/quota:v1`, '--part-size', '5MiB'], { HOME: bobHome });
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /quota exceeded/i);
  const token = await registryToken(stack, `repository:${bob.handle}/quota:pull`, bob);
  const head = await fetch(`${stack.urls.appview}/v2/${bob.handle}/quota/blobs/${big().digest}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
  assert.equal(head.status, 404, 'the layer is not in bob\'s hold');
  assert.deepEqual(fs.readdirSync(path.join(bobHome, '.cache', 'atcr', 'uploads')), [], 'nothing left to resume');
  assert.equal((await listAllRecords(stack.urls.pds, bob.did, 'io.atcr.manifest')).length, 0, 'no record in bob\'s PDS');
});
