// The hold backed by an R2 binding (wrangler's local R2), no S3 keys: a
// binding cannot presign, so the hold signs URLs to its own /storage/
// endpoint and streams the bytes itself. Clients use the same API and the
// same code as against S3 (tests/lib/hold.mjs, the appview, skopeo).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { startStack } from '../lib/stack.mjs';
import { login, serviceToken } from '../lib/atproto.mjs';
import { startIssuer } from '../lib/issuer.mjs';
import { HoldClient, randomFile, fetchDigest } from '../lib/hold.mjs';
import { buildImage, layoutBlobs } from '../lib/image.mjs';
import { registryToken, checkSha512Uploads } from '../lib/registry.mjs';

const READ_URL_SECONDS = 4;
const MB = 1024 * 1024;

let stack, issuer, hold, alice, bob, scratch;
before(async () => {
  issuer = await startIssuer();
  stack = await startStack({
    log: (m) => process.stderr.write(`${m}\n`),
    hold: { storage: 'r2', trustedAppviews: [issuer.did], readUrlSeconds: READ_URL_SECONDS },
  });
  hold = new HoldClient(stack.urls.hold);
  alice = { ...stack.accounts.alice, jwt: await login(stack.urls.pds, stack.accounts.alice) };
  bob = { ...stack.accounts.bob, jwt: await login(stack.urls.pds, stack.accounts.bob) };
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-hold-r2-test-'));
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  await issuer?.close();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const pdsTokens = (user) => (lxm) => serviceToken(stack.urls.pds, user.jwt, stack.holdDid, lxm);
const onHold = (url) => url.startsWith(`${stack.urls.hold}/storage/`);


/** Keys in the local R2 bucket (wrangler keeps it in SQLite under the hold's state). */
function bucketKeys() {
  const dir = path.join(stack.dir, 'hold-state', 'v3', 'r2', 'miniflare-R2BucketObject');
  const keys = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.sqlite'))) {
    const db = new DatabaseSync(path.join(dir, file), { readOnly: true });
    try {
      // Besides the bucket's own database the directory holds the namespace's metadata.
      if (db.prepare("SELECT 1 FROM sqlite_master WHERE name = '_mf_objects'").get()) {
        keys.push(...db.prepare('SELECT key FROM _mf_objects').all().map((r) => r.key));
      }
    } finally {
      db.close();
    }
  }
  return keys;
}
const stagingLeftovers = () => bucketKeys().filter((k) => k.includes('/atcr-uploads/'));
const blobKey = (digest) => {
  const hex = digest.slice('sha256:'.length);
  return `docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
};

/** The high-water mark of the hold's WebAssembly memory, from GET /. */

/**
 * Uploads `size` random bytes in 64 MB parts and downloads them through the
 * hold's URLs; resolves to timings and memory figures.
 */
async function roundTrip(name, size) {
  const file = path.join(scratch, name);
  const digest = await randomFile(file, size);
  const rssBefore = stack.workerdRssKb('hold');
  let t = performance.now();
  const done = await hold.uploadFile(file, digest, 64 * MB, pdsTokens(alice));
  const upMs = performance.now() - t;
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.digest, digest);
  assert.equal(done.body.size, size);
  const rssAfterUp = stack.workerdRssKb('hold');
  const url = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  assert.equal(url.status, 200);
  assert.ok(onHold(url.body.url), `the URL points at the hold: ${url.body.url}`);
  t = performance.now();
  const pulled = await fetchDigest(url.body.url);
  const downMs = performance.now() - t;
  assert.equal(pulled.status, 200);
  assert.equal(pulled.size, size);
  assert.equal(pulled.digest, digest, 'the bytes come back identical');
  const rssAfter = stack.workerdRssKb('hold');
  assert.ok(rssBefore && rssAfter, 'could not find the hold workerd processes to measure their memory');
  fs.rmSync(file);
  const wasm = await hold.wasmMemoryBytes();
  process.stderr.write(
    `R2 hold, ${name}: ${size / MB} MB up in ${(upMs / 1000).toFixed(1)} s (verify ${done.body.verifyMs} ms), ` +
    `down in ${(downMs / 1000).toFixed(1)} s; workerd RSS ${rssBefore} kB before, ${rssAfterUp} kB after upload, ` +
    `${rssAfter} kB after download; wasm memory ${wasm} bytes\n`,
  );
  return { digest, done, rssBefore, rssAfter, wasm };
}

test('a 300 MB blob goes up in parts and comes down through the hold\'s own URLs, byte for byte; the hold\'s code holds none of it', { timeout: 900_000 }, async () => {
  const wasmBefore = await hold.wasmMemoryBytes();
  const { digest, done, wasm } = await roundTrip('big.bin', 300 * MB);
  // Multipart objects carry no checksum; R2 checks the SHA-256 as the hold
  // copies the staged object to the digest's key: one read, not two.
  assert.equal(done.body.verifiedBy, 'storageChecksum');
  // WebAssembly memory never shrinks: had any part (64 MB) or the blob passed
  // through the hold's code, it would be at least that big now.
  assert.ok(wasm < 16 * MB, `the hold's wasm memory reached ${wasm} bytes`);
  assert.equal(wasm, wasmBefore, 'the transfer did not grow the hold\'s wasm memory');

  // Distribution's layout, in the bucket behind the binding; nothing staged is left.
  assert.ok(bucketKeys().includes(blobKey(digest)));
  assert.deepEqual(stagingLeftovers(), []);
  const stat = await hold.call('io.atcr.hold.statBlob', { params: { digest } });
  assert.equal(stat.status, 200);
  assert.equal(stat.body.size, 300 * MB);
});

// The first big transfer lifts workerd's resident memory to a plateau: the
// local R2 simulator runs in the same process and pushes every byte through
// JS streams, and freed buffers stay with the allocator. (The Worker's own
// JS heap and wasm memory stay flat; a plain-JS Worker doing the same R2
// calls shows the same plateau.) Moving as many bytes again must not raise it.
test('a second 300 MB round trip leaves the hold\'s workerd memory where it was', { timeout: 900_000 }, async () => {
  const { rssBefore, rssAfter } = await roundTrip('again.bin', 300 * MB);
  assert.ok(rssAfter - rssBefore < 64 * 1024, `hold memory grew by ${rssAfter - rssBefore} kB`);
});

test('part URLs point at the hold and name their upload and part', async () => {
  const start = await hold.call('io.atcr.hold.startUpload', { token: await pdsTokens(alice)('io.atcr.hold.startUpload'), body: {} });
  assert.equal(start.status, 200);
  assert.equal(start.body.singlePut, undefined);
  const part = await hold.call('io.atcr.hold.getUploadPartUrl', {
    token: await pdsTokens(alice)('io.atcr.hold.getUploadPartUrl'), body: { session: start.body.session, partNumber: 3 },
  });
  assert.equal(part.status, 200);
  assert.ok(onHold(part.body.url), part.body.url);
  const u = new URL(part.body.url);
  assert.equal(u.searchParams.get('part'), '3');
  assert.ok(u.searchParams.get('uploadId'));
  // A part PUT needs its length up front: the body streams straight into R2.
  const chunked = await fetch(part.body.url, {
    method: 'PUT', duplex: 'half',
    body: new ReadableStream({ start(c) { c.enqueue(new Uint8Array(10)); c.close(); } }),
  });
  assert.equal(chunked.status, 411);
  assert.match(await chunked.text(), /MissingContentLength/);
  const aborted = await hold.call('io.atcr.hold.abortUpload', { token: await pdsTokens(alice)('io.atcr.hold.abortUpload'), body: { session: start.body.session } });
  assert.equal(aborted.status, 200, JSON.stringify(aborted.body));
  const late = await fetch(part.body.url, { method: 'PUT', body: Buffer.alloc(10) });
  assert.equal(late.status, 404, 'an aborted upload takes no parts');
  assert.match(await late.text(), /NoSuchUpload/);
});

test('HEAD URLs serve HEAD only; GET honours one byte range', async () => {
  const file = path.join(scratch, 'small.bin');
  const digest = await randomFile(file, 1000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  const head = await hold.call('io.atcr.hold.getBlob', { params: { digest, method: 'HEAD' } });
  const res = await fetch(head.body.url, { method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-length'), '1000');
  const misuse = await fetch(head.body.url); // GET on a HEAD signature
  assert.equal(misuse.status, 403);
  assert.match(await misuse.text(), /SignatureDoesNotMatch/);

  const { body } = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  const bytes = fs.readFileSync(file);
  const ranged = await fetch(body.url, { headers: { range: 'bytes=100-199' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get('content-range'), 'bytes 100-199/1000');
  assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), bytes.subarray(100, 200));
  const tail = await fetch(body.url, { headers: { range: 'bytes=-10' } });
  assert.deepEqual(Buffer.from(await tail.arrayBuffer()), bytes.subarray(990));
  const beyond = await fetch(body.url, { headers: { range: 'bytes=1000-' } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get('content-range'), 'bytes */1000');
});

test('a blob of known digest and size goes up in one PUT that R2 checksums: no read-back', { timeout: 300_000 }, async () => {
  const file = path.join(scratch, 'single.bin');
  const size = 40 * MB;
  const digest = await randomFile(file, size);
  const { start, put, complete } = await hold.uploadSingle(file, digest, pdsTokens(alice));
  assert.ok(start.body.singlePut, JSON.stringify(start.body));
  assert.ok(onHold(start.body.singlePut.url), start.body.singlePut.url);
  assert.deepEqual(start.body.singlePut.headers, { 'content-length': String(size) });
  assert.equal(put.status, 200, put.text);
  assert.equal(complete.status, 200, JSON.stringify(complete.body));
  assert.equal(complete.body.verifiedBy, 'storageChecksum');
  assert.equal(complete.body.size, size);
  process.stderr.write(`R2 hold: one checksummed PUT of ${size / MB} MB in ${(put.ms / 1000).toFixed(2)} s, completeUpload ${(complete.ms / 1000).toFixed(2)} s\n`);
  const url = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  assert.equal((await fetchDigest(url.body.url)).digest, digest);
  assert.deepEqual(stagingLeftovers(), []);
  fs.rmSync(file);
});

test('R2 refuses a checksummed PUT of other bytes; a PUT of another length is refused before', async () => {
  const file = path.join(scratch, 'claimed.bin');
  const other = path.join(scratch, 'other.bin');
  const digest = await randomFile(file, 2 * MB);
  await randomFile(other, 2 * MB);
  const { put, complete } = await hold.uploadSingle(file, digest, pdsTokens(alice), { bytesFrom: other });
  assert.equal(put.status, 400);
  assert.match(put.text, /BadDigest/);
  assert.ok(['DigestMismatch', 'UploadNotFound'].includes(complete.body.error), JSON.stringify(complete.body));
  assert.equal((await hold.call('io.atcr.hold.statBlob', { params: { digest } })).status, 404);
  assert.ok(!bucketKeys().includes(blobKey(digest)));
  assert.deepEqual(stagingLeftovers(), []);

  const start = await hold.call('io.atcr.hold.startUpload', { token: await pdsTokens(alice)('io.atcr.hold.startUpload'), body: { digest, size: 2 * MB } });
  const short = await fetch(start.body.singlePut.url, { method: 'PUT', body: fs.readFileSync(file).subarray(1) });
  assert.equal(short.status, 403);
  assert.match(await short.text(), /signed for 2097152 bytes/);
});

test('a wrong digest is refused and the upload discarded', async () => {
  const file = path.join(scratch, 'liar.bin');
  await randomFile(file, 6 * MB);
  const claimed = `sha256:${'ab'.repeat(32)}`;
  const res = await hold.uploadFile(file, claimed, 5 * MB, pdsTokens(alice));
  assert.equal(res.status, 400);
  assert.equal(res.body.error, 'DigestMismatch');
  assert.match(res.body.message, /not sha256:abab.*discarded/);
  const stat = await hold.call('io.atcr.hold.statBlob', { params: { digest: claimed } });
  assert.equal(stat.status, 404);
  assert.equal(stat.body.error, 'BlobNotFound');
  assert.ok(!bucketKeys().includes(blobKey(claimed)));
  assert.deepEqual(stagingLeftovers(), []);
});

test('the digest may be named only at completion, and is verified the same way', async () => {
  const file = path.join(scratch, 'late.bin');
  const digest = await randomFile(file, 7 * MB);
  const ok = await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice), { digestAtEnd: true });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.digest, digest);
  const refused = await hold.uploadFile(file, `sha256:${'12'.repeat(32)}`, 5 * MB, pdsTokens(alice), { digestAtEnd: true });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error, 'DigestMismatch');
  assert.deepEqual(stagingLeftovers(), []);
});

test('tampered storage URLs are refused: each signs its method, object, upload, part and expiry', async () => {
  const file = path.join(scratch, 'signed.bin');
  const digest = await randomFile(file, 3000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  const { body } = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  assert.equal((await fetch(body.url)).status, 200);
  const hex = digest.slice('sha256:'.length);
  const start = await hold.call('io.atcr.hold.startUpload', { token: await pdsTokens(alice)('io.atcr.hold.startUpload'), body: {} });
  const part = (await hold.call('io.atcr.hold.getUploadPartUrl', {
    token: await pdsTokens(alice)('io.atcr.hold.getUploadPartUrl'), body: { session: start.body.session, partNumber: 1 },
  })).body.url;
  const edit = (url, name, value) => { const u = new URL(url); u.searchParams.set(name, value); return u.toString(); };
  const cases = {
    'another object': [body.url.replace(hex, `${hex.slice(0, -1)}${hex.endsWith('0') ? '1' : '0'}`), 'GET'],
    'a later expiry': [edit(body.url, 'exp', String(Number(new URL(body.url).searchParams.get('exp')) + 3600)), 'GET'],
    'another signature': [edit(body.url, 'sig', 'A'.repeat(43)), 'GET'],
    'another method': [body.url, 'DELETE'],
    'PUT on a read URL': [body.url, 'PUT'],
    'another part': [edit(part, 'part', '2'), 'PUT'],
    'another upload': [edit(part, 'uploadId', 'forged'), 'PUT'],
    'a read of a part URL': [part, 'GET'],
  };
  for (const [name, [url, method]] of Object.entries(cases)) {
    const res = await fetch(url, { method, ...(method === 'PUT' ? { body: Buffer.alloc(5) } : {}) });
    assert.equal(res.status, 403, name);
    assert.match(await res.text(), /SignatureDoesNotMatch/, name);
  }
  const unsigned = await fetch(`${stack.urls.hold}/storage/${blobKey(digest)}`);
  assert.equal(unsigned.status, 403);
  assert.match(await unsigned.text(), /not a storage URL this hold signs/);
});

test('an expired storage URL is refused', { timeout: 60_000 }, async () => {
  const file = path.join(scratch, 'expiring.bin');
  const digest = await randomFile(file, 5000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  const { body } = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  assert.equal((await fetch(body.url)).status, 200);
  await new Promise((r) => setTimeout(r, (READ_URL_SECONDS + 2) * 1000));
  const late = await fetch(body.url);
  assert.equal(late.status, 403);
  assert.match(await late.text(), /expired/i);
});

test('only the owner deletes a blob, and then it is gone', async () => {
  const file = path.join(scratch, 'doomed.bin');
  const digest = await randomFile(file, 4000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  const { body } = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  const refused = await hold.call('io.atcr.hold.deleteBlob', { token: await pdsTokens(bob)('io.atcr.hold.deleteBlob'), body: { digest } });
  assert.equal(refused.status, 403);
  const del = await hold.call('io.atcr.hold.deleteBlob', { token: await pdsTokens(alice)('io.atcr.hold.deleteBlob'), body: { digest } });
  assert.equal(del.status, 200);
  assert.equal((await hold.call('io.atcr.hold.statBlob', { params: { digest } })).status, 404);
  assert.equal((await hold.call('io.atcr.hold.getBlob', { params: { digest } })).status, 404);
  const stale = await fetch(body.url);
  assert.equal(stale.status, 404, 'a URL signed before the delete finds nothing');
  assert.match(await stale.text(), /NoSuchKey/);
});

test('sha512 blobs go up by every upload method through the appview and come back whole', { timeout: 300_000 }, async () => {
  const name = `${alice.handle}/sha512`;
  const other = `${alice.handle}/sha512-mounted`;
  const token = await registryToken(stack, `repository:${name}:pull,push repository:${other}:pull,push`, alice);
  await checkSha512Uploads(stack, { authorization: `Bearer ${token}` }, name, other);
});

test('health names the binding', async () => {
  const res = await fetch(`${stack.urls.hold}/health`);
  assert.equal(res.status, 200);
  const report = await res.json();
  const r2 = report.checks.find((c) => c.name === 'r2');
  assert.ok(r2?.ok, JSON.stringify(report));
});

test('skopeo pushes and pulls an image through the appview and the R2-backed hold', { timeout: 600_000 }, async () => {
  const registry = `127.0.0.1:${stack.ports.appview}`;
  const image = buildImage(scratch, {
    tag: 'r2',
    layers: [{ 'etc/hello.txt': 'hello from an R2 hold\n' }, { 'data/random.bin': crypto.randomBytes(40 * MB) }],
  });
  const ref = `${registry}/${alice.handle}/r2-app:r2`;
  const skopeo = (args) => new Promise((resolve) => {
    execFile('skopeo', args, { env: { ...process.env, HOME: scratch, XDG_RUNTIME_DIR: scratch }, timeout: 300_000, maxBuffer: 1 << 26 },
      (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr }));
  });
  const push = await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`, `oci:${image.layout}:r2`, `docker://${ref}`]);
  assert.equal(push.code, 0, push.stderr);
  for (const blob of image.blobs) assert.ok(bucketKeys().includes(blobKey(blob.digest)), `blob ${blob.digest} is in R2`);
  const out = path.join(scratch, 'pulled');
  const pull = await skopeo(['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:r2`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  for (const blob of image.blobs) assert.equal(pulled[blob.digest], blob.size, `blob ${blob.digest}`);
  assert.equal(pulled[image.digest], image.manifestBytes.length);
});

// Last: with a grace period of zero it collects every unreferenced blob the
// tests before left. R2's listing (the binding's list, with cursors) maps
// each key back to its digest; what skopeo's image uses is kept.
test('collectGarbage lists and removes an unreferenced blob through the binding; referenced blobs stay', { timeout: 120_000 }, async () => {
  const file = path.join(scratch, 'orphan.bin');
  const orphan = await randomFile(file, 3000);
  assert.equal((await hold.uploadFile(file, orphan, 5 * MB, pdsTokens(alice))).status, 200);
  const gc = async (body) => hold.call('io.atcr.hold.collectGarbage', {
    token: await pdsTokens(alice)('io.atcr.hold.collectGarbage'), body,
  });

  const kept = await gc({ dryRun: true });
  assert.equal(kept.status, 200, JSON.stringify(kept.body));
  assert.ok(!kept.body.removed.some((g) => g.digest === orphan), 'a new blob is within the default grace period');
  assert.ok(kept.body.kept.withinGrace >= 1);

  const dry = await gc({ dryRun: true, graceSeconds: 0, limit: 500 });
  assert.equal(dry.status, 200, JSON.stringify(dry.body));
  const listed = dry.body.removed.find((g) => g.digest === orphan);
  assert.ok(listed, `the orphan is listed: ${JSON.stringify(dry.body.removed)}`);
  assert.equal(listed.size, 3000);
  assert.ok(bucketKeys().includes(blobKey(orphan)), 'a dry run removes nothing');

  const real = await gc({ dryRun: false, graceSeconds: 0, limit: 500 });
  assert.equal(real.status, 200, JSON.stringify(real.body));
  assert.deepEqual(real.body.removed.map((g) => g.digest).sort(), dry.body.removed.map((g) => g.digest).sort());
  assert.equal(real.body.kept.referenced, dry.body.kept.referenced);
  const keys = bucketKeys();
  for (const { digest } of real.body.removed) assert.ok(!keys.includes(blobKey(digest)), `${digest} left the bucket`);
  assert.equal((await hold.call('io.atcr.hold.statBlob', { params: { digest: orphan } })).status, 404);
  assert.deepEqual((await gc({ dryRun: true, graceSeconds: 0 })).body.removed, [], 'nothing unreferenced is left');
});
