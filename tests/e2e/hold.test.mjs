// The hold, end to end: real PDS records for access, real S3 (s3s-fs, which
// verifies signatures) behind presigned URLs, the hold Worker under wrangler.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { login, serviceToken, putRecord, deleteRecord } from '../lib/atproto.mjs';
import { startIssuer } from '../lib/issuer.mjs';
import { HoldClient, randomFile, fetchDigest, putFile } from '../lib/hold.mjs';

const CREW_TTL_SECONDS = 2;
const READ_URL_SECONDS = 4;
const MB = 1024 * 1024;

let stack, issuer, hold, alice, bob, scratch;
before(async () => {
  issuer = await startIssuer();
  stack = await startStack({
    log: (m) => process.stderr.write(`${m}\n`),
    // A bring-your-own hold: its owner's crew records decide who writes (the
    // stack's default, a shared hold anyone may push to, is in shared-hold.test.mjs).
    hold: { trustedAppviews: [issuer.did], crewCacheSeconds: CREW_TTL_SECONDS, readUrlSeconds: READ_URL_SECONDS, allowAllCrew: false },
  });
  hold = new HoldClient(stack.urls.hold);
  alice = { ...stack.accounts.alice, jwt: await login(stack.urls.pds, stack.accounts.alice) };
  bob = { ...stack.accounts.bob, jwt: await login(stack.urls.pds, stack.accounts.bob) };
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-hold-test-'));
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  await issuer?.close();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** Tokens from the user's own PDS, one per call. */
const pdsTokens = (user) => (lxm) => serviceToken(stack.urls.pds, user.jwt, stack.holdDid, lxm);
const waitForTtl = () => new Promise((r) => setTimeout(r, (CREW_TTL_SECONDS + 1) * 1000));


function stagingLeftovers() {
  const dir = path.join(stack.dir, 's3', stack.s3.bucket, stack.keyRoot, 'atcr-uploads');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true }).filter((f) => !fs.statSync(path.join(dir, f)).isDirectory());
}

test('a 300 MB blob goes up in parts and comes down through presigned URLs, byte for byte', { timeout: 600_000 }, async () => {
  const file = path.join(scratch, 'big.bin');
  const size = 300 * MB;
  const digest = await randomFile(file, size);
  const wasmBefore = await hold.wasmMemoryBytes();

  const done = await hold.uploadFile(file, digest, 64 * MB, pdsTokens(alice));
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.digest, digest);
  assert.equal(done.body.size, size);
  assert.equal(done.body.verifiedBy, 'holdHash', 'S3 keeps no whole-object SHA-256 for multipart uploads: the hold hashed it');
  process.stderr.write(`hold verified ${size / MB} MB in ${done.body.verifyMs} ms\n`);

  // The blob sits where CNCF distribution would put it, under the hold's key prefix.
  const hex = digest.slice('sha256:'.length);
  const onDisk = path.join(stack.dir, 's3', stack.s3.bucket, stack.keyRoot, 'blobs/sha256', hex.slice(0, 2), hex, 'data');
  assert.equal(fs.statSync(onDisk).size, size);
  assert.deepEqual(stagingLeftovers(), []);

  const stat = await hold.call('io.atcr.hold.statBlob', { params: { digest } });
  assert.equal(stat.status, 200);
  assert.equal(stat.body.size, size);

  const url = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  assert.equal(url.status, 200);
  assert.ok(url.body.url.startsWith(stack.urls.s3), 'the URL points at storage, not at the hold');
  const pulled = await fetchDigest(url.body.url);
  assert.equal(pulled.status, 200);
  assert.equal(pulled.size, size);
  assert.equal(pulled.digest, digest);

  // WebAssembly memory never shrinks: had the blob's bytes passed through
  // the hold's code (the verification reads all 300 MB), it would show.
  const wasm = await hold.wasmMemoryBytes();
  assert.equal(wasm, wasmBefore, 'verifying 300 MB did not grow the hold\'s wasm memory');
  assert.ok(wasm < 16 * MB, `the hold's wasm memory reached ${wasm} bytes`);
  fs.rmSync(file);
});

// The runtime's own buffers (DigestStream hashing in the verification read)
// lift workerd's resident memory to a plateau on the first big transfer;
// freed buffers stay with the allocator. Another 300 MB must not raise it.
test('another 300 MB upload leaves the hold\'s workerd memory where it was', { timeout: 600_000 }, async () => {
  const file = path.join(scratch, 'again.bin');
  const digest = await randomFile(file, 300 * MB);
  const before = stack.workerdRssKb('hold');
  const done = await hold.uploadFile(file, digest, 64 * MB, pdsTokens(alice));
  assert.equal(done.status, 200, JSON.stringify(done.body));
  const after = stack.workerdRssKb('hold');
  assert.ok(before && after, 'could not find the hold\'s workerd processes');
  process.stderr.write(`hold workerd RSS: ${before} kB before, ${after} kB after another 300 MB\n`);
  assert.ok(after - before < 64 * 1024, `hold memory grew by ${after - before} kB`);
  fs.rmSync(file);
});

test('a HEAD URL is presigned for HEAD only', async () => {
  const file = path.join(scratch, 'small.bin');
  const digest = await randomFile(file, 1000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  const head = await hold.call('io.atcr.hold.getBlob', { params: { digest, method: 'HEAD' } });
  const res = await fetch(head.body.url, { method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-length'), '1000');
  const misuse = await fetch(head.body.url); // GET on a HEAD signature
  assert.equal(misuse.status, 403);
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
  assert.deepEqual(stagingLeftovers(), []);
});

test('the digest may be named only at completion, and is verified the same way', async () => {
  const file = path.join(scratch, 'late.bin');
  const digest = await randomFile(file, 7 * MB);
  const ok = await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice), { digestAtEnd: true });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.digest, digest);
  const wrong = `sha256:${'12'.repeat(32)}`;
  const refused = await hold.uploadFile(file, wrong, 5 * MB, pdsTokens(alice), { digestAtEnd: true });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error, 'DigestMismatch');
  assert.deepEqual(stagingLeftovers(), []);
});

test('a blob of known digest and size goes up in one PUT that storage checksums: no read-back', { timeout: 300_000 }, async () => {
  const file = path.join(scratch, 'single.bin');
  const size = 40 * MB;
  const digest = await randomFile(file, size);
  const { start, put, complete } = await hold.uploadSingle(file, digest, pdsTokens(alice));
  assert.ok(start.body.singlePut, JSON.stringify(start.body));
  assert.equal(start.body.singlePut.headers['x-amz-checksum-sha256'], Buffer.from(digest.slice(7), 'hex').toString('base64'));
  assert.equal(put.status, 200, put.text);
  assert.equal(complete.status, 200, JSON.stringify(complete.body));
  assert.equal(complete.body.verifiedBy, 'storageChecksum');
  assert.equal(complete.body.size, size);
  const url = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  const pulled = await fetchDigest(url.body.url);
  assert.equal(pulled.digest, digest);
  assert.deepEqual(stagingLeftovers(), []);
  const parts = await hold.call('io.atcr.hold.getUploadPartUrl', {
    token: await pdsTokens(alice)('io.atcr.hold.getUploadPartUrl'), body: { session: start.body.session, partNumber: 1 },
  });
  assert.equal(parts.status, 400, 'a single-PUT session has no parts');
  fs.rmSync(file);
});

test('storage refuses a checksummed PUT of other bytes, or without the signed checksum', async () => {
  const file = path.join(scratch, 'claimed.bin');
  const other = path.join(scratch, 'other.bin');
  const digest = await randomFile(file, 2 * MB);
  await randomFile(other, 2 * MB);
  const { put, complete } = await hold.uploadSingle(file, digest, pdsTokens(alice), { bytesFrom: other });
  assert.equal(put.status, 400);
  assert.match(put.text, /BadDigest/);
  // Storage may or may not have kept the refused bytes: either way nothing is published.
  assert.ok(['DigestMismatch', 'UploadNotFound'].includes(complete.body.error), JSON.stringify(complete.body));
  assert.equal((await hold.call('io.atcr.hold.statBlob', { params: { digest } })).status, 404);
  assert.deepEqual(stagingLeftovers(), []);

  const start = await hold.call('io.atcr.hold.startUpload', { token: await pdsTokens(alice)('io.atcr.hold.startUpload'), body: { digest, size: 2 * MB } });
  const unsigned = await putFile(start.body.singlePut.url, {}, file, { expectContinue: true });
  assert.equal(unsigned.status, 403, 'the checksum header is part of the signature');
});

test('malformed digests are refused with a clear error', async () => {
  const res = await hold.call('io.atcr.hold.statBlob', { params: { digest: 'sha256:../../etc' } });
  assert.equal(res.status, 400);
  assert.equal(res.body.error, 'InvalidRequest');
  assert.match(res.body.message, /not a valid digest/);
});

test('statBlobs answers for up to 40 digests at once; more, or a method the hold lacks, are refused clearly', async () => {
  const absent = Array.from({ length: 40 }, (_, i) => `sha256:${i.toString(16).padStart(64, 'e')}`);
  const some = await hold.call('io.atcr.hold.statBlobs', { body: { digests: absent } });
  assert.equal(some.status, 200, JSON.stringify(some.body));
  assert.deepEqual(some.body.blobs, [], 'absent blobs are left out');
  const many = await hold.call('io.atcr.hold.statBlobs', { body: { digests: [...absent, `sha256:${'f'.repeat(64)}`] } });
  assert.equal(many.status, 400);
  assert.match(many.body.message, /at most 40 digests, not 41/);
  const unknown = await hold.call('io.atcr.hold.noSuchMethod', {});
  assert.equal(unknown.status, 501);
  assert.equal(unknown.body.error, 'MethodNotImplemented');
});

test('expired, tampered, misdirected and wrong-method tokens are refused', async () => {
  const body = { digest: `sha256:${'cd'.repeat(32)}` };
  const method = 'io.atcr.hold.startUpload';
  const cases = {
    expired: issuer.token({ aud: stack.holdDid, sub: alice.did, lxm: method, iat: Math.floor(Date.now() / 1000) - 300, exp: Math.floor(Date.now() / 1000) - 60 }),
    tampered: (() => {
      const [h, p, s] = issuer.token({ aud: stack.holdDid, sub: bob.did, lxm: method }).split('.');
      const claims = JSON.parse(Buffer.from(p, 'base64url'));
      claims.sub = alice.did;
      return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    })(),
    'for another hold': await serviceToken(stack.urls.pds, alice.jwt, 'did:web:other-hold.example.com', method),
    'for another method': await serviceToken(stack.urls.pds, alice.jwt, stack.holdDid, 'io.atcr.hold.deleteBlob'),
    'too long-lived': issuer.token({ aud: stack.holdDid, sub: alice.did, lxm: method, exp: Math.floor(Date.now() / 1000) + 3600 }),
    'alg none': `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: issuer.did, aud: stack.holdDid, sub: alice.did, lxm: method, exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.`,
  };
  const expected = { expired: /expired/, tampered: /signature/, 'for another hold': /not for this service/, 'for another method': /method/, 'too long-lived': /at most 120 seconds/, 'alg none': /./ };
  for (const [name, token] of Object.entries(cases)) {
    const res = await hold.call(method, { token, body });
    assert.equal(res.status, 401, `${name}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error, 'InvalidToken', name);
    assert.match(res.body.message, expected[name], `${name}: ${res.body.message}`);
  }
});

test('a trusted appview acts for its user; an untrusted signer is just a stranger', async () => {
  const file = path.join(scratch, 'via-appview.bin');
  const digest = await randomFile(file, 2000);
  const viaAppview = (lxm) => issuer.token({ aud: stack.holdDid, sub: alice.did, lxm });
  const done = await hold.uploadFile(file, digest, 5 * MB, viaAppview);
  assert.equal(done.status, 200, JSON.stringify(done.body));

  // The same user's token from a second, untrusted signer: the signer is the caller.
  const stranger = await startIssuer();
  try {
    const res = await hold.call('io.atcr.hold.startUpload', {
      token: stranger.token({ aud: stack.holdDid, sub: alice.did, lxm: 'io.atcr.hold.startUpload' }),
      body: { digest },
    });
    assert.equal(res.status, 403);
    assert.match(res.body.message, new RegExp(`${stranger.did.replace(/[.%]/g, '\\$&')} is not crew`));
  } finally {
    await stranger.close();
  }
});

test('crew added or removed in the owner\'s PDS changes write access within the cache TTL', async () => {
  const file = path.join(scratch, 'crew.bin');
  const digest = await randomFile(file, 3000);
  const refused = await hold.uploadFile(file, digest, 5 * MB, pdsTokens(bob));
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error, 'Forbidden');
  assert.match(refused.body.message, /is not crew/);

  await putRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'bob', {
    member: bob.did, role: 'writer', permissions: ['blob:read', 'blob:write'], addedAt: new Date().toISOString(),
  });
  await waitForTtl();
  const allowed = await hold.uploadFile(file, digest, 5 * MB, pdsTokens(bob));
  assert.equal(allowed.status, 200, JSON.stringify(allowed.body));

  // Crew may write, but only the owner deletes.
  const del = await hold.call('io.atcr.hold.deleteBlob', { token: await pdsTokens(bob)('io.atcr.hold.deleteBlob'), body: { digest } });
  assert.equal(del.status, 403);

  await deleteRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'bob');
  await waitForTtl();
  const again = await hold.uploadFile(file, digest, 5 * MB, pdsTokens(bob));
  assert.equal(again.status, 403);
});

test('sessions belong to whoever opened them', async () => {
  const start = await hold.call('io.atcr.hold.startUpload', {
    token: await pdsTokens(alice)('io.atcr.hold.startUpload'), body: { digest: `sha256:${'ef'.repeat(32)}` },
  });
  assert.equal(start.status, 200);
  const stolen = await hold.call('io.atcr.hold.getUploadPartUrl', {
    token: issuer.token({ aud: stack.holdDid, sub: bob.did, lxm: 'io.atcr.hold.getUploadPartUrl' }),
    body: { session: start.body.session, partNumber: 1 },
  });
  assert.equal(stolen.status, 403);
  const aborted = await hold.call('io.atcr.hold.abortUpload', {
    token: await pdsTokens(alice)('io.atcr.hold.abortUpload'), body: { session: start.body.session },
  });
  assert.equal(aborted.status, 200, JSON.stringify(aborted.body));
});

test('the owner deletes a blob and it is gone', async () => {
  const file = path.join(scratch, 'doomed.bin');
  const digest = await randomFile(file, 4000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  const del = await hold.call('io.atcr.hold.deleteBlob', { token: await pdsTokens(alice)('io.atcr.hold.deleteBlob'), body: { digest } });
  assert.equal(del.status, 200);
  assert.equal((await hold.call('io.atcr.hold.statBlob', { params: { digest } })).status, 404);
});

test('a presigned URL used after it expired is refused by S3 itself', { timeout: 60_000 }, async () => {
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

// Runs last: it makes the hold private.
test('a private hold refuses strangers and serves its owner and crew', async () => {
  const file = path.join(scratch, 'private.bin');
  const digest = await randomFile(file, 5000);
  assert.equal((await hold.uploadFile(file, digest, 5 * MB, pdsTokens(alice))).status, 200);
  assert.equal((await hold.call('io.atcr.hold.getBlob', { params: { digest } })).status, 200, 'public at first');

  await putRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold', 'self', {
    endpoint: stack.urls.hold, owner: alice.did, public: false, createdAt: new Date().toISOString(),
  });
  await waitForTtl();
  const anonymous = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.body.error, 'AuthRequired');
  const stranger = await hold.call('io.atcr.hold.getBlob', { params: { digest }, token: await pdsTokens(bob)('io.atcr.hold.getBlob') });
  assert.equal(stranger.status, 403);
  assert.match(stranger.body.message, /not crew of this private hold/);
  const owner = await hold.call('io.atcr.hold.getBlob', { params: { digest }, token: await pdsTokens(alice)('io.atcr.hold.getBlob') });
  assert.equal(owner.status, 200);

  await putRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'bob-reader', {
    member: bob.did, role: 'reader', permissions: ['blob:read'], addedAt: new Date().toISOString(),
  });
  await waitForTtl();
  const crew = await hold.call('io.atcr.hold.getBlob', { params: { digest }, token: await pdsTokens(bob)('io.atcr.hold.getBlob') });
  assert.equal(crew.status, 200);
  const readerWrites = await hold.call('io.atcr.hold.startUpload', { token: await pdsTokens(bob)('io.atcr.hold.startUpload'), body: { digest } });
  assert.equal(readerWrites.status, 403, 'a read-only crew member may not write');
});
