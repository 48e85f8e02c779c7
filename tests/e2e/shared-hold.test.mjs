// The appview's default hold is shared, as a registry operator's would be:
// every signed-in user may push to it, each within a per-user quota (bytes
// and blobs, kept in the hold's D1), refused with DENIED naming the limit.
// The owner and crew are not limited. alice also has a hold of her own
// (bring your own), which her profile names.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { login, serviceToken, putRecord, deleteRecord, xrpc } from '../lib/atproto.mjs';
import { registryToken, pushBlob, pushImage } from '../lib/registry.mjs';
import { HoldClient, randomFile } from '../lib/hold.mjs';
import { buildImage, layoutBlobs } from '../lib/image.mjs';

const QUOTA_BYTES = '200kB';
const QUOTA_BLOBS = 8;
const CREW_TTL_SECONDS = 2;

let stack, scratch, registry, alice, bob, sharedHold;
before(async () => {
  stack = await startStack({
    log: (m) => process.stderr.write(`${m}\n`),
    hold: { quotaBytes: QUOTA_BYTES, quotaBlobs: QUOTA_BLOBS, crewCacheSeconds: CREW_TTL_SECONDS },
    byoHold: true,
  });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-shared-hold-test-'));
  registry = `127.0.0.1:${stack.ports.appview}`;
  alice = { ...stack.accounts.alice, jwt: await login(stack.urls.pds, stack.accounts.alice) };
  bob = { ...stack.accounts.bob, jwt: await login(stack.urls.pds, stack.accounts.bob) };
  sharedHold = new HoldClient(stack.urls.hold);
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args) => runIn(scratch, cmd, args);
const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const waitForTtl = () => new Promise((r) => setTimeout(r, (CREW_TTL_SECONDS + 1) * 1000));
const v2 = (p) => new URL(`/v2/${p}`, stack.urls.appview);
const bearer = (token) => ({ authorization: `Bearer ${token}` });

const records = async (collection, did) =>
  (await xrpc(stack.urls.pds, 'com.atproto.repo.listRecords', { params: { repo: did, collection, limit: 100 } })).records;

/** Service tokens from the user's own PDS for a hold. */
const pdsTokens = (user, holdDid = stack.holdDid) => (lxm) => serviceToken(stack.urls.pds, user.jwt, holdDid, lxm);

/** What the shared hold says `user` may store and stores. */
async function quotaOf(user) {
  const res = await sharedHold.call('io.atcr.hold.getQuota', { token: await pdsTokens(user)('io.atcr.hold.getQuota') });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** Files left in the shared hold's staging area (refused uploads must leave none). */
function stagingLeftovers() {
  const dir = path.join(stack.dir, 's3', stack.s3.bucket, stack.keyRoot, 'atcr-uploads');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true }).filter((f) => !fs.statSync(path.join(dir, f)).isDirectory());
}

/** Nothing answers for `digest`: not the registry, not the hold, not the bucket. */
async function assertInvisible(name, digest, token) {
  const head = await fetch(v2(`${name}/blobs/${digest}`), { method: 'HEAD', headers: bearer(token) });
  assert.equal(head.status, 404, `HEAD ${digest} after the refusal`);
  const stat = await sharedHold.call('io.atcr.hold.statBlob', { params: { digest } });
  assert.equal(stat.status, 404, `the hold has no ${digest}`);
  const hex = digest.slice('sha256:'.length);
  const object = path.join(stack.dir, 's3', stack.s3.bucket, stack.keyRoot, 'blobs', 'sha256', hex.slice(0, 2), hex);
  assert.equal(fs.existsSync(object), false, 'nothing in the bucket under the digest');
  assert.deepEqual(stagingLeftovers(), [], 'the refused upload\'s staged bytes are gone');
}

/** A chunked upload (POST, PATCH, PUT ?digest=): the digest is known only at the end. */
async function pushChunked(name, bytes, token) {
  const start = await fetch(v2(`${name}/blobs/uploads/`), { method: 'POST', headers: bearer(token) });
  assert.equal(start.status, 202, await start.text());
  const patch = await fetch(new URL(start.headers.get('location'), stack.urls.appview), {
    method: 'PATCH',
    headers: { ...bearer(token), 'content-type': 'application/octet-stream', 'content-range': `0-${bytes.length - 1}` },
    body: bytes,
  });
  assert.equal(patch.status, 202, await patch.text());
  const put = new URL(patch.headers.get('location'), stack.urls.appview);
  put.searchParams.set('digest', sha256(bytes));
  return fetch(put, { method: 'PUT', headers: bearer(token) });
}

/** A monolithic POST ?digest= (the hold knows digest and size at the start). */
const pushMonolithic = (name, bytes, token) => fetch(v2(`${name}/blobs/uploads/?digest=${sha256(bytes)}`), {
  method: 'POST', headers: { ...bearer(token), 'content-type': 'application/octet-stream' }, body: bytes,
});

/** The response is 403 DENIED; resolves to its message. */
async function denied(res) {
  const text = await res.text();
  assert.equal(res.status, 403, text);
  const { errors } = JSON.parse(text);
  assert.equal(errors[0].code, 'DENIED', text);
  return errors[0].message;
}

test('the hold says it is shared and what each user may store', async () => {
  const info = await (await fetch(stack.urls.hold)).json();
  assert.equal(info.allowAllCrew, true);
  assert.deepEqual(info.quota, { bytes: 200_000, blobs: QUOTA_BLOBS });
  const health = await (await fetch(`${stack.urls.hold}/health`)).json();
  const usage = health.checks.find((c) => c.name === 'usage_db');
  assert.ok(usage?.ok, `the usage database is checked: ${JSON.stringify(health.checks)}`);
});

test('bob\'s first push goes to the shared default hold: records in his PDS, blobs pullable', { timeout: 300_000 }, async () => {
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'etc/hello.txt': 'hello from bob\n' }] });
  const ref = `${registry}/${bob.handle}/first:v1`;
  const push = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${bob.handle}:${bob.appPassword}`, `oci:${image.layout}:v1`, `docker://${ref}`]);
  assert.equal(push.code, 0, push.stderr);

  const manifest = (await records('io.atcr.manifest', bob.did)).find((r) => r.value.digest === image.digest);
  assert.ok(manifest, 'an io.atcr.manifest record in bob\'s PDS');
  assert.equal(manifest.value.holdDid, stack.holdDid, 'the blobs are in the shared hold');
  const tag = (await records('io.atcr.tag', bob.did)).find((r) => r.value.repository === 'first' && r.value.tag === 'v1');
  assert.equal(tag?.value.manifest, manifest.uri);
  const [profile] = await records('io.atcr.sailor.profile', bob.did);
  assert.equal(profile.value.defaultHold, stack.holdDid, 'bob\'s profile names the appview\'s default hold');

  const out = path.join(scratch, 'bob-pulled');
  const pull = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const pulled = layoutBlobs(out);
  for (const blob of image.blobs) assert.equal(pulled[blob.digest], blob.size, `blob ${blob.digest} comes back`);
  assert.equal(pulled[image.digest], image.manifestBytes.length);

  const quota = await quotaOf(bob);
  assert.deepEqual(quota, {
    limited: true, maxBytes: 200_000, maxBlobs: QUOTA_BLOBS,
    usedBytes: image.blobs.reduce((sum, b) => sum + b.size, 0), usedBlobs: image.blobs.length,
  });
});

test('over the byte quota: refused with DENIED naming the limit, nothing visible; a push within it works', { timeout: 300_000 }, async () => {
  const name = `${bob.handle}/big`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, bob);
  const before = await quotaOf(bob);

  // Digest and size known up front: refused before any byte is stored.
  const blob = crypto.randomBytes(250_000);
  const message = await denied(await pushMonolithic(name, blob, token));
  assert.match(message, /storage quota exceeded: bob\.test has used [\d.]+ (bytes|kB) of 200 kB on this hold; this blob is 250 kB/);
  await assertInvisible(name, sha256(blob), token);

  // A real client streaming a layer: refused when the upload completes, its bytes discarded.
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'data/big.bin': crypto.randomBytes(250_000) }] });
  const layer = image.manifest.layers[0];
  const push = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${bob.handle}:${bob.appPassword}`, `oci:${image.layout}:v1`, `docker://${registry}/${name}:v1`]);
  assert.notEqual(push.code, 0, 'the push fails');
  assert.match(push.stderr, /denied/i, push.stderr);
  assert.match(push.stderr, /storage quota exceeded: bob\.test has used [\d.]+ (bytes|kB) of 200 kB on this hold/, push.stderr);
  await assertInvisible(name, layer.digest, token);
  assert.equal((await records('io.atcr.manifest', bob.did)).some((r) => r.value.digest === image.digest), false, 'no manifest record');
  assert.deepEqual(await quotaOf(bob), before, 'refusals cost nothing');

  // Within the quota, pushes still work.
  const fits = buildImage(scratch, { tag: 'v1', layers: [{ 'data/fits.bin': crypto.randomBytes(100_000) }] });
  const ok = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${bob.handle}:${bob.appPassword}`, `oci:${fits.layout}:v1`, `docker://${registry}/${bob.handle}/fits:v1`]);
  assert.equal(ok.code, 0, ok.stderr);
  const after = await quotaOf(bob);
  assert.equal(after.usedBlobs, before.usedBlobs + 2);
  assert.equal(after.usedBytes, before.usedBytes + fits.blobs.reduce((sum, b) => sum + b.size, 0));
});

test('over the blob-count quota: refused with DENIED naming the limit; a blob already charged is free', { timeout: 120_000 }, async () => {
  const name = `${bob.handle}/many`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, bob);
  const { usedBlobs } = await quotaOf(bob);
  const small = () => crypto.randomBytes(100);
  let last;
  for (let i = usedBlobs; i < QUOTA_BLOBS; i++) {
    last = small();
    await pushBlob(stack, name, last, token);
  }
  assert.equal((await quotaOf(bob)).usedBlobs, QUOTA_BLOBS, 'bob is at the limit');

  // The same digest again, even in another repository, is not a new blob.
  const again = await pushMonolithic(`${bob.handle}/other`, last, await registryToken(stack, `repository:${bob.handle}/other:pull,push`, bob));
  assert.equal(again.status, 201, await again.text());
  assert.equal((await quotaOf(bob)).usedBlobs, QUOTA_BLOBS, 'charged once per distinct blob');

  const expected = /blob quota exceeded: bob\.test has stored 8 of the 8 blobs allowed on this hold/;
  const early = small();
  assert.match(await denied(await pushMonolithic(name, early, token)), expected);
  await assertInvisible(name, sha256(early), token);
  const late = small();
  assert.match(await denied(await pushChunked(name, late, token)), expected);
  await assertInvisible(name, sha256(late), token);
  assert.equal((await quotaOf(bob)).usedBlobs, QUOTA_BLOBS);
});

test('crew members are not limited; removed from the crew, the quota applies again', { timeout: 120_000 }, async () => {
  const name = `${bob.handle}/crew`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, bob);
  await putRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'bob', {
    member: bob.did, role: 'writer', permissions: ['blob:read', 'blob:write'], addedAt: new Date().toISOString(),
  });
  try {
    await waitForTtl();
    const big = crypto.randomBytes(250_000);
    const res = await pushChunked(name, big, token);
    assert.equal(res.status, 201, await res.text());
    assert.equal((await quotaOf(bob)).limited, false);
  } finally {
    await deleteRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'bob');
  }
  await waitForTtl();
  assert.equal((await quotaOf(bob)).limited, true);
  assert.match(await denied(await pushMonolithic(name, crypto.randomBytes(100), token)), /blob quota exceeded/);
});

test('alice, the shared hold\'s owner, is not limited', { timeout: 120_000 }, async () => {
  assert.deepEqual(await quotaOf(alice), { limited: false, maxBytes: 0, maxBlobs: 0, usedBytes: 0, usedBlobs: 0 });
  const tokens = pdsTokens(alice);
  for (let i = 0; i <= QUOTA_BLOBS; i++) {
    const file = path.join(scratch, `owner-${i}.bin`);
    const digest = await randomFile(file, i === 0 ? 300_000 : 100);
    const { start, complete } = await sharedHold.uploadSingle(file, digest, tokens);
    assert.equal(start.status, 200, JSON.stringify(start.body));
    assert.equal(complete.status, 200, JSON.stringify(complete.body));
  }
});

test('alice\'s own hold: her profile names it, her pushes land in her bucket, bob cannot write there', { timeout: 120_000 }, async () => {
  const [profile] = await records('io.atcr.sailor.profile', alice.did);
  assert.equal(profile.value.defaultHold, stack.byoHoldDid);
  const name = `${alice.handle}/own`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  const pushed = await pushImage(stack, name, 'v1', token);
  const manifest = (await records('io.atcr.manifest', alice.did)).find((r) => r.value.digest === pushed.manifest);
  assert.equal(manifest.value.holdDid, stack.byoHoldDid);

  const blob = await fetch(v2(`${name}/blobs/${pushed.layer}`), { headers: bearer(token), redirect: 'manual' });
  assert.equal(blob.status, 307);
  assert.match(blob.headers.get('location'), new RegExp(`/${stack.s3.bucket}-alice/`), 'served from her own bucket');
  assert.equal(sha256(Buffer.from(await (await fetch(blob.headers.get('location'))).arrayBuffer())), pushed.layer);

  const own = new HoldClient(stack.urls.byoHold);
  const refused = await own.call('io.atcr.hold.startUpload', {
    token: await pdsTokens(bob, stack.byoHoldDid)('io.atcr.hold.startUpload'), body: { digest: pushed.layer },
  });
  assert.equal(refused.status, 403);
  assert.match(refused.body.message, /is not crew of this hold/);
});
