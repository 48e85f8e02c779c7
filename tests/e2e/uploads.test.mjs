// Blob uploads through the registry API (OCI distribution "pushing blobs"),
// with the bytes going to the owner's hold and verified there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStack, queryD1 } from '../lib/stack.mjs';
import { registryToken } from '../lib/registry.mjs';
import { fetchDigest } from '../lib/hold.mjs';

let stack, alice, name, bearer;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  name = `${alice.handle}/uploads`;
  bearer = { authorization: `Bearer ${await token(`repository:${name}:pull,push`, alice)}` };
}, { timeout: 900_000 });
after(async () => stack?.stop());

const token = (scope, account) => registryToken(stack, scope, account);

const MB = 1024 * 1024;
const sha256 = (buf) => `sha256:${crypto.createHash('sha256').update(buf).digest('hex')}`;
const registry = (p) => new URL(p, stack.urls.appview);

async function startUpload() {
  const res = await fetch(registry(`/v2/${name}/blobs/uploads/`), { method: 'POST', headers: bearer });
  assert.equal(res.status, 202, await res.clone().text());
  assert.equal(res.headers.get('range'), '0-0');
  assert.ok(res.headers.get('docker-upload-uuid'));
  return res.headers.get('location');
}

async function assertBlob(digest, bytes) {
  const head = await fetch(registry(`/v2/${name}/blobs/${digest}`), { method: 'HEAD', headers: bearer });
  assert.equal(head.status, 200, `HEAD ${digest}`);
  assert.equal(head.headers.get('content-length'), String(bytes.length));
  const get = await fetch(registry(`/v2/${name}/blobs/${digest}`), { headers: bearer, redirect: 'manual' });
  assert.equal(get.status, 307);
  const pulled = await fetchDigest(get.headers.get('location'));
  assert.equal(pulled.digest, digest);
  assert.equal(pulled.size, bytes.length);
}

test('a chunked upload of several PATCHes, then PUT, makes the blob pullable', async () => {
  const blob = crypto.randomBytes(15 * MB + 123);
  const digest = sha256(blob);
  let location = await startUpload();
  const chunks = [blob.subarray(0, 6 * MB), blob.subarray(6 * MB, 12 * MB), blob.subarray(12 * MB)];
  let offset = 0;
  for (const chunk of chunks) {
    const res = await fetch(registry(location), {
      method: 'PATCH',
      headers: { ...bearer, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}` },
      body: chunk,
    });
    assert.equal(res.status, 202, await res.clone().text());
    offset += chunk.length;
    assert.equal(res.headers.get('range'), `0-${offset - 1}`);
    location = res.headers.get('location');
  }
  const status = await fetch(registry(location), { headers: bearer });
  assert.equal(status.status, 204);
  assert.equal(status.headers.get('range'), `0-${blob.length - 1}`);

  const done = await fetch(registry(`${location}${location.includes('?') ? '&' : '?'}digest=${digest}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201, await done.clone().text());
  assert.equal(done.headers.get('docker-content-digest'), digest);
  assert.equal(done.headers.get('location'), `/v2/${name}/blobs/${digest}`);
  await assertBlob(digest, blob);
});

test('the upload URL does not grow with its parts: their ETags wait in D1 until the upload completes or is cancelled', async () => {
  const partsOf = (id) => queryD1(stack.appviewStateDir, `SELECT part_number FROM upload_parts WHERE upload_id = '${id}' ORDER BY part_number`)
    .map((r) => r.part_number);
  const chunk = 5 * MB; // OCI-Chunk-Min-Length: every chunk becomes one part
  const blob = crypto.randomBytes(6 * chunk);
  const digest = sha256(blob);
  let location = await startUpload();
  const lengths = [];
  let id;
  for (let offset = 0; offset < blob.length; offset += chunk) {
    const res = await fetch(registry(location), {
      method: 'PATCH',
      headers: { ...bearer, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk - 1}` },
      body: blob.subarray(offset, offset + chunk),
    });
    assert.equal(res.status, 202, await res.clone().text());
    location = res.headers.get('location');
    id = res.headers.get('docker-upload-uuid');
    lengths.push(location.length);
  }
  // Only the numbers in it (offset, part count) may gain a digit; an ETag
  // would add some 80 characters a part.
  assert.ok(Math.max(...lengths) - lengths[0] <= 8, `Location lengths after each part: ${lengths.join(' ')}`);
  assert.deepEqual(partsOf(id), [1, 2, 3, 4, 5, 6]);
  const done = await fetch(registry(`${location}?digest=${digest}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201, await done.clone().text());
  await assertBlob(digest, blob);
  assert.deepEqual(partsOf(id), [], 'a completed upload leaves no parts behind');

  const cancelled = await startUpload();
  const sent = await fetch(registry(cancelled), { method: 'PATCH', headers: { ...bearer, 'content-range': `0-${chunk - 1}` }, body: blob.subarray(0, chunk) });
  assert.equal(sent.status, 202);
  const cancelledId = sent.headers.get('docker-upload-uuid');
  assert.deepEqual(partsOf(cancelledId), [1]);
  assert.equal((await fetch(registry(sent.headers.get('location')), { method: 'DELETE', headers: bearer })).status, 204);
  assert.deepEqual(partsOf(cancelledId), [], 'a cancelled upload leaves no parts behind');
});

test('a streamed PATCH without Content-Length is cut into parts', async () => {
  const blob = crypto.randomBytes(40 * MB + 5);
  const digest = sha256(blob);
  const location = await startUpload();
  const body = new ReadableStream({
    start(controller) {
      for (let i = 0; i < blob.length; i += MB) controller.enqueue(blob.subarray(i, i + MB));
      controller.close();
    },
  });
  const res = await fetch(registry(location), { method: 'PATCH', headers: bearer, body, duplex: 'half' });
  assert.equal(res.status, 202, await res.clone().text());
  assert.equal(res.headers.get('range'), `0-${blob.length - 1}`);
  const done = await fetch(registry(`${res.headers.get('location')}?digest=${digest}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201, await done.clone().text());
  await assertBlob(digest, blob);
});

test('streamed PATCHes of sizes at the edges of a part and of its first read arrive whole', async () => {
  // The appview reads a part's first 64 KiB, then the rest of its 16 MiB;
  // chunks of an odd size cross both edges.
  const KIB = 1024;
  for (const size of [1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 16 * MB, 16 * MB + 1]) {
    const blob = crypto.randomBytes(size);
    const digest = sha256(blob);
    const location = await startUpload();
    const body = new ReadableStream({
      start(controller) {
        for (let i = 0; i < blob.length; i += 7777) controller.enqueue(blob.subarray(i, i + 7777));
        controller.close();
      },
    });
    const res = await fetch(registry(location), { method: 'PATCH', headers: bearer, body, duplex: 'half' });
    assert.equal(res.status, 202, `${size} bytes: ${await res.clone().text()}`);
    assert.equal(res.headers.get('range'), `0-${blob.length - 1}`, `${size} bytes`);
    const done = await fetch(registry(`${res.headers.get('location')}?digest=${digest}`), { method: 'PUT', headers: bearer });
    assert.equal(done.status, 201, `${size} bytes: ${await done.clone().text()}`);
    await assertBlob(digest, blob);
  }
});

test('monolithic uploads: POST with ?digest= and a body, and POST then PUT with the body', async () => {
  const one = crypto.randomBytes(300_000);
  const res = await fetch(registry(`/v2/${name}/blobs/uploads/?digest=${sha256(one)}`), {
    method: 'POST', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body: one,
  });
  assert.equal(res.status, 201, await res.clone().text());
  await assertBlob(sha256(one), one);

  const two = crypto.randomBytes(200_000);
  const location = await startUpload();
  const put = await fetch(registry(`${location}?digest=${sha256(two)}`), {
    method: 'PUT', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body: two,
  });
  assert.equal(put.status, 201, await put.clone().text());
  await assertBlob(sha256(two), two);
});

test('an empty blob uploads too', async () => {
  const empty = Buffer.alloc(0);
  const location = await startUpload();
  const put = await fetch(registry(`${location}?digest=${sha256(empty)}`), { method: 'PUT', headers: bearer });
  assert.equal(put.status, 201, await put.clone().text());
  const head = await fetch(registry(`/v2/${name}/blobs/${sha256(empty)}`), { method: 'HEAD', headers: bearer });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), '0');
});

test('a wrong digest is DIGEST_INVALID and nothing becomes visible under it', async () => {
  const blob = crypto.randomBytes(100_000);
  const claimed = sha256(Buffer.from('something else'));
  const location = await startUpload();
  const put = await fetch(registry(`${location}?digest=${claimed}`), { method: 'PUT', headers: bearer, body: blob });
  assert.equal(put.status, 400);
  const [error] = (await put.json()).errors;
  assert.equal(error.code, 'DIGEST_INVALID');
  // The whole blob came in one request, so storage itself checked the checksum.
  assert.match(error.message, /do not have the digest named; nothing was stored/);
  const head = await fetch(registry(`/v2/${name}/blobs/${claimed}`), { method: 'HEAD', headers: bearer });
  assert.equal(head.status, 404);
});

test('a chunk below OCI-Chunk-Min-Length may only be the last one', async () => {
  const res = await fetch(registry(`/v2/${name}/blobs/uploads/`), { method: 'POST', headers: bearer });
  const min = Number(res.headers.get('oci-chunk-min-length'));
  assert.equal(min, 5 * MB);
  const small = crypto.randomBytes(1000);
  const first = await fetch(registry(res.headers.get('location')), { method: 'PATCH', headers: bearer, body: small });
  assert.equal(first.status, 202);
  const second = await fetch(registry(first.headers.get('location')), { method: 'PATCH', headers: bearer, body: small });
  assert.equal(second.status, 416);
  const body = await second.json();
  assert.equal(body.errors[0].code, 'BLOB_UPLOAD_INVALID');
  assert.match(body.errors[0].message, /at least 5242880 bytes/);
  // A small last chunk is fine: finish after the first.
  const done = await fetch(registry(`${first.headers.get('location')}?digest=${sha256(small)}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201);
});

test('an out-of-order chunk is refused with 416', async () => {
  const location = await startUpload();
  const res = await fetch(registry(location), {
    method: 'PATCH', headers: { ...bearer, 'content-range': '100-199' }, body: crypto.randomBytes(100),
  });
  assert.equal(res.status, 416);
  assert.equal((await res.json()).errors[0].code, 'BLOB_UPLOAD_INVALID');
});

test('a cancelled upload and an altered upload id are BLOB_UPLOAD_UNKNOWN', async () => {
  const location = await startUpload();
  const del = await fetch(registry(location), { method: 'DELETE', headers: bearer });
  assert.equal(del.status, 204);
  const after = await fetch(registry(location), { method: 'PATCH', headers: bearer, body: crypto.randomBytes(10) });
  const afterBody = await after.json();
  assert.equal(after.status, 404, JSON.stringify(afterBody));
  assert.equal(afterBody.errors[0].code, 'BLOB_UPLOAD_UNKNOWN');

  const fresh = await startUpload();
  // Flip the last character of the seal (the HMAC tag).
  const altered = fresh.slice(0, -1) + (fresh.endsWith('A') ? 'B' : 'A');
  const res = await fetch(registry(altered), { headers: bearer });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).errors[0].code, 'BLOB_UPLOAD_UNKNOWN');
});

test('mounting a blob the owner\'s hold already has answers 201 without an upload', async () => {
  const blob = crypto.randomBytes(1000);
  const digest = sha256(blob);
  const res = await fetch(registry(`/v2/${name}/blobs/uploads/?digest=${digest}`), { method: 'POST', headers: bearer, body: blob });
  assert.equal(res.status, 201);
  const other = `${alice.handle}/other`;
  const otherBearer = { authorization: `Bearer ${await token(`repository:${other}:pull,push repository:${name}:pull`, alice)}` };
  const mount = await fetch(registry(`/v2/${other}/blobs/uploads/?mount=${digest}&from=${name}`), { method: 'POST', headers: otherBearer });
  assert.equal(mount.status, 201);
  assert.equal(mount.headers.get('location'), `/v2/${other}/blobs/${digest}`);
  const missing = await fetch(registry(`/v2/${other}/blobs/uploads/?mount=sha256:${'9'.repeat(64)}&from=${name}`), { method: 'POST', headers: otherBearer });
  assert.equal(missing.status, 202, 'an unknown blob falls back to a fresh upload');
});

test('bob cannot upload into alice\'s repository', async () => {
  const bobBearer = { authorization: `Bearer ${await token(`repository:${name}:pull,push`, stack.accounts.bob)}` };
  const res = await fetch(registry(`/v2/${name}/blobs/uploads/`), { method: 'POST', headers: bobBearer });
  assert.equal(res.status, 403);
  assert.equal((await res.json()).errors[0].code, 'DENIED');
  assert.match(res.headers.get('www-authenticate'), /insufficient_scope/);
});
