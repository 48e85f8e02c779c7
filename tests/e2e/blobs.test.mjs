// Blob pulls through the registry: the appview answers 307 to a URL the
// owner's hold presigned, and the bytes come straight from S3.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { registryToken } from '../lib/registry.mjs';
import { login, serviceToken, putRecord } from '../lib/atproto.mjs';
import { HoldClient, randomFile, fetchDigest } from '../lib/hold.mjs';

let stack, scratch, alice, digest, size;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), hold: { crewCacheSeconds: 1 } });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-blobs-test-'));
  alice = { ...stack.accounts.alice, jwt: await login(stack.urls.pds, stack.accounts.alice) };
  // A layer alice pushed to her hold.
  const file = path.join(scratch, 'layer.bin');
  size = 12 * 1024 * 1024 + 7;
  digest = await randomFile(file, size);
  const hold = new HoldClient(stack.urls.hold);
  const done = await hold.uploadFile(file, digest, 8 * 1024 * 1024, (lxm) => serviceToken(stack.urls.pds, alice.jwt, stack.holdDid, lxm));
  assert.equal(done.status, 200, JSON.stringify(done.body));
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const token = (scope, account) => registryToken(stack, scope, account);

const blobUrl = (name, d) => `${stack.urls.appview}/v2/${name}/blobs/${d}`;

test('HEAD answers the size and digest; GET answers 307 to storage and the bytes match', async () => {
  const name = `${alice.handle}/app`;
  const bearer = { authorization: `Bearer ${await token(`repository:${name}:pull`)}` };
  const head = await fetch(blobUrl(name, digest), { method: 'HEAD', headers: bearer });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(size));
  assert.equal(head.headers.get('docker-content-digest'), digest);

  const get = await fetch(blobUrl(name, digest), { headers: bearer, redirect: 'manual' });
  assert.equal(get.status, 307);
  const location = get.headers.get('location');
  assert.ok(location.startsWith(`${stack.urls.s3}/`), `redirects to storage: ${location}`);
  assert.match(location, /X-Amz-Signature=/);
  const pulled = await fetchDigest(location);
  assert.equal(pulled.status, 200);
  assert.equal(pulled.size, size);
  assert.equal(pulled.digest, digest);
});

test('the DID form of the name reaches the same blob', async () => {
  const name = `${alice.did.replaceAll(':', '-')}/app`;
  const bearer = { authorization: `Bearer ${await token(`repository:${name}:pull`)}` };
  const head = await fetch(blobUrl(name, digest), { method: 'HEAD', headers: bearer });
  assert.equal(head.status, 200);
});

test('a missing blob is BLOB_UNKNOWN and an unknown owner NAME_UNKNOWN', async () => {
  const missing = `sha256:${'0'.repeat(64)}`;
  const name = `${alice.handle}/app`;
  const bearer = { authorization: `Bearer ${await token(`repository:${name}:pull`)}` };
  const res = await fetch(blobUrl(name, missing), { headers: bearer, redirect: 'manual' });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).errors[0].code, 'BLOB_UNKNOWN');

  const ghost = 'ghost.test/app';
  const res2 = await fetch(blobUrl(ghost, digest), { headers: { authorization: `Bearer ${await token(`repository:${ghost}:pull`)}` }, redirect: 'manual' });
  assert.equal(res2.status, 404);
  assert.equal((await res2.json()).errors[0].code, 'NAME_UNKNOWN');
});

test('a malformed digest is DIGEST_INVALID', async () => {
  const name = `${alice.handle}/app`;
  const res = await fetch(blobUrl(name, 'sha256:xyz'), { headers: { authorization: `Bearer ${await token(`repository:${name}:pull`)}` } });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).errors[0].code, 'DIGEST_INVALID');
});

test('from a private hold, the appview pulls for the signed-in owner and refuses strangers', async () => {
  await putRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold', 'self', {
    endpoint: stack.urls.hold, owner: alice.did, public: false, createdAt: new Date().toISOString(),
  });
  await new Promise((r) => setTimeout(r, 2000));
  const name = `${alice.handle}/app`;
  const anonymous = await fetch(blobUrl(name, digest), { headers: { authorization: `Bearer ${await token(`repository:${name}:pull`)}` }, redirect: 'manual' });
  assert.equal(anonymous.status, 403);
  assert.equal((await anonymous.json()).errors[0].code, 'DENIED');
  const bob = await fetch(blobUrl(name, digest), { headers: { authorization: `Bearer ${await token(`repository:${name}:pull`, stack.accounts.bob)}` }, redirect: 'manual' });
  assert.equal(bob.status, 403);
  const owner = await fetch(blobUrl(name, digest), { headers: { authorization: `Bearer ${await token(`repository:${name}:pull`, stack.accounts.alice)}` }, redirect: 'manual' });
  assert.equal(owner.status, 307);
});
