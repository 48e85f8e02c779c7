// Garbage in a hold's bucket: the scheduled sweep of abandoned staged
// uploads, and the owner's collection of blobs no io.atcr.manifest record
// names (found through the users' PDSs), with its grace period and dry run.
// The stack's default hold is shared (alice owns it, bob pushes within a
// quota), so the collection must read bob's records too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { login, serviceToken, putRecord, deleteRecord, xrpc } from '../lib/atproto.mjs';
import { registryToken, pushImage } from '../lib/registry.mjs';
import { HoldClient, randomFile, putFile } from '../lib/hold.mjs';

const DAY = 24 * 3600;
const GC = 'io.atcr.hold.collectGarbage';

let stack, scratch, hold, alice, bob;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-hold-gc-test-'));
  hold = new HoldClient(stack.urls.hold);
  alice = { ...stack.accounts.alice, jwt: await login(stack.urls.pds, stack.accounts.alice) };
  bob = { ...stack.accounts.bob, jwt: await login(stack.urls.pds, stack.accounts.bob) };
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const pdsTokens = (user) => (lxm) => serviceToken(stack.urls.pds, user.jwt, stack.holdDid, lxm);
const v2 = (p) => new URL(`/v2/${p}`, stack.urls.appview);
const bucketDir = () => path.join(stack.dir, 's3', stack.s3.bucket);
const blobsDir = () => path.join(bucketDir(), stack.keyRoot, 'blobs');
const stagingDir = () => path.join(bucketDir(), stack.keyRoot, 'atcr-uploads');
const blobFile = (digest) => {
  const hex = digest.slice('sha256:'.length);
  return path.join(blobsDir(), 'sha256', hex.slice(0, 2), hex, 'data');
};
const files = (dir) => (fs.existsSync(dir)
  ? fs.readdirSync(dir, { recursive: true }).map((f) => path.join(dir, f)).filter((f) => fs.statSync(f).isFile())
  : []);
/** Makes a file in the bucket look `seconds` old to storage (s3s-fs reports the mtime). */
const age = (file, seconds) => {
  const t = new Date(Date.now() - seconds * 1000);
  fs.utimesSync(file, t, t);
};

async function collect(user, body) {
  const res = await hold.call(GC, { token: await pdsTokens(user)(GC), body });
  return res;
}

async function manifestRecord(user, digest) {
  const { records } = await xrpc(stack.urls.pds, 'com.atproto.repo.listRecords', {
    params: { repo: user.did, collection: 'io.atcr.manifest', limit: 100 },
  });
  const record = records.find((r) => r.value.digest === digest);
  assert.ok(record, `a manifest record for ${digest}`);
  return { rkey: record.uri.split('/').pop(), value: record.value };
}

async function push(user, repo) {
  const name = `${user.handle}/${repo}`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, user);
  return { name, token, ...(await pushImage(stack, name, 'v1', token)) };
}

/** Pulls name:v1 through the appview: manifest and every blob, each matching its digest. */
async function assertPullsWhole(image) {
  const auth = { authorization: `Bearer ${image.token}` };
  const manifest = await fetch(v2(`${image.name}/manifests/v1`), {
    headers: { ...auth, accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(manifest.status, 200, `manifest of ${image.name}`);
  assert.equal(sha256(Buffer.from(await manifest.arrayBuffer())), image.manifest);
  for (const digest of [image.config, image.layer]) {
    const redirect = await fetch(v2(`${image.name}/blobs/${digest}`), { headers: auth, redirect: 'manual' });
    assert.equal(redirect.status, 307, `blob ${digest} of ${image.name}`);
    const bytes = Buffer.from(await (await fetch(redirect.headers.get('location'))).arrayBuffer());
    assert.equal(sha256(bytes), digest, `bytes of ${digest}`);
  }
}

async function quotaOf(user) {
  const res = await hold.call('io.atcr.hold.getQuota', { token: await pdsTokens(user)('io.atcr.hold.getQuota') });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** Starts a single-PUT upload and sends its bytes, but never completes it: a staged object. */
async function stageAbandoned(user, size) {
  const file = path.join(scratch, `staged-${crypto.randomUUID()}.bin`);
  const digest = await randomFile(file, size);
  const before = new Set(files(stagingDir()));
  const start = await hold.call('io.atcr.hold.startUpload', {
    token: await pdsTokens(user)('io.atcr.hold.startUpload'), body: { digest, size },
  });
  assert.equal(start.status, 200, JSON.stringify(start.body));
  assert.ok(start.body.singlePut, 'a small blob of known digest goes in one PUT');
  const put = await putFile(start.body.singlePut.url, start.body.singlePut.headers, file);
  assert.equal(put.status, 200, put.text);
  const added = files(stagingDir()).filter((f) => !before.has(f));
  assert.equal(added.length, 1, 'the PUT left one staged object');
  return added[0];
}

test('the scheduled sweep deletes staged uploads abandoned for more than a day, and only those', { timeout: 120_000 }, async () => {
  const stale = await stageAbandoned(alice, 1000);
  const fresh = await stageAbandoned(alice, 1000);
  age(stale, DAY + 3600);
  age(fresh, 3600); // an upload in flight (sessions live six hours)

  const res = await fetch(new URL('/__scheduled?cron=17+*+*+*+*', stack.urls.hold));
  assert.equal(res.status, 200, await res.text());
  const deadline = Date.now() + 10_000;
  while (fs.existsSync(stale) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.equal(fs.existsSync(stale), false, 'the day-old staged upload is gone');
  assert.equal(fs.existsSync(fresh), true, 'the hour-old one stays');
});

test('collectGarbage removes exactly the unreferenced blobs past the grace period; images still pull', { timeout: 300_000 }, async () => {
  const keep = await push(alice, 'gc-keep');
  const drop = await push(alice, 'gc-drop');
  const bobKeep = await push(bob, 'gc-keep');
  const bobDrop = await push(bob, 'gc-drop');
  // Every pushImage config is the same bytes: shared, and still referenced.
  assert.equal(drop.config, keep.config);

  // An orphan straight to the hold: no manifest ever names it.
  const orphanFile = path.join(scratch, 'orphan.bin');
  const orphan = await randomFile(orphanFile, 3000);
  assert.equal((await hold.uploadFile(orphanFile, orphan, 5 * 1024 * 1024, pdsTokens(alice))).status, 200);

  // Manifest records deleted: their layers are named by nothing now.
  for (const [user, image] of [[alice, drop], [bob, bobDrop]]) {
    const { rkey, value } = await manifestRecord(user, image.manifest);
    assert.equal(value.holdDid, stack.holdDid);
    assert.equal(value.layers[0].digest, image.layer);
    await deleteRecord(stack.urls.pds, user.jwt, user.did, 'io.atcr.manifest', rkey);
  }

  // Everything so far is two days old; one more orphan arrives now, as a
  // push in flight would (its manifest not written yet).
  for (const f of files(blobsDir())) age(f, 2 * DAY);
  const youngFile = path.join(scratch, 'young.bin');
  const young = await randomFile(youngFile, 1500);
  assert.equal((await hold.uploadFile(youngFile, young, 5 * 1024 * 1024, pdsTokens(alice))).status, 200);

  const garbage = [drop.layer, bobDrop.layer, orphan].sort();
  const kept = [keep.config, keep.layer, bobKeep.layer, young];
  const bobBefore = await quotaOf(bob);

  // Dry run: lists exactly the unreferenced old blobs, removes nothing.
  const dry = await collect(alice, { dryRun: true });
  assert.equal(dry.status, 200, JSON.stringify(dry.body));
  assert.equal(dry.body.dryRun, true);
  assert.equal(dry.body.graceSeconds, DAY, 'the default grace period is a day');
  assert.deepEqual(dry.body.removed.map((g) => g.digest).sort(), garbage);
  for (const g of dry.body.removed) {
    assert.ok(g.ageSeconds >= 2 * DAY - 60, `${g.digest} is ${g.ageSeconds}s old`);
    assert.equal(g.size, g.digest === orphan ? 3000 : 2048);
  }
  assert.equal(dry.body.removedBytes, 3000 + 2 * 2048);
  assert.deepEqual(dry.body.kept, { referenced: 3, withinGrace: 1, unrecognized: 0 });
  assert.ok(dry.body.users.includes(alice.did) && dry.body.users.includes(bob.did),
    `the owner and the shared hold's users were read: ${dry.body.users}`);
  assert.equal(dry.body.truncated, false);
  for (const digest of [...garbage, ...kept]) assert.ok(fs.existsSync(blobFile(digest)), `dry run kept ${digest}`);

  // A grace period of zero would take the young orphan too.
  const eager = await collect(alice, { dryRun: true, graceSeconds: 0 });
  assert.equal(eager.status, 200, JSON.stringify(eager.body));
  assert.deepEqual(eager.body.removed.map((g) => g.digest).sort(), [...garbage, young].sort());

  // Only the owner may collect: bob (a user of the shared hold) and nobody are refused.
  const asBob = await collect(bob, { dryRun: true });
  assert.equal(asBob.status, 403, JSON.stringify(asBob.body));
  assert.match(asBob.body.message, /only the hold's owner/);
  const anonymous = await hold.call(GC, { body: { dryRun: true } });
  assert.equal(anonymous.status, 401);

  // The real run removes them: gone from the bucket, statBlob 404.
  const real = await collect(alice, { dryRun: false });
  assert.equal(real.status, 200, JSON.stringify(real.body));
  assert.deepEqual(real.body.removed.map((g) => g.digest).sort(), garbage);
  for (const digest of garbage) {
    assert.equal(fs.existsSync(blobFile(digest)), false, `${digest} left the bucket`);
    const stat = await hold.call('io.atcr.hold.statBlob', { params: { digest } });
    assert.equal(stat.status, 404, `statBlob ${digest}`);
  }
  for (const digest of kept) {
    assert.ok(fs.existsSync(blobFile(digest)), `${digest} stays`);
    assert.equal((await hold.call('io.atcr.hold.statBlob', { params: { digest } })).status, 200);
  }

  // bob is no longer charged for his removed layer.
  const bobAfter = await quotaOf(bob);
  assert.equal(bobAfter.usedBlobs, bobBefore.usedBlobs - 1);
  assert.equal(bobAfter.usedBytes, bobBefore.usedBytes - 2048);

  // Both kept images pull whole; the records of the kept ones are untouched.
  await assertPullsWhole(keep);
  await assertPullsWhole(bobKeep);
  await manifestRecord(alice, keep.manifest);
  await manifestRecord(bob, bobKeep.manifest);

  // Nothing left to collect.
  const again = await collect(alice, { dryRun: true });
  assert.deepEqual(again.body.removed, []);
});

test('collectGarbage removes nothing when a crew member\'s records cannot be read', { timeout: 120_000 }, async () => {
  const file = path.join(scratch, 'orphan2.bin');
  const orphan = await randomFile(file, 1000);
  assert.equal((await hold.uploadFile(file, orphan, 5 * 1024 * 1024, pdsTokens(alice))).status, 200);
  age(blobFile(orphan), 2 * DAY);
  // A crew member whose DID resolves to nothing (no PDS answers for it).
  const ghost = 'did:web:localhost%3A9';
  await putRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'ghost', {
    hold: stack.holdDid, member: ghost, role: 'writer', createdAt: new Date().toISOString(),
  });
  try {
    const res = await collect(alice, { dryRun: false });
    assert.equal(res.status, 502, JSON.stringify(res.body));
    assert.match(res.body.message, new RegExp(`${ghost}.*nothing was removed`));
    assert.ok(fs.existsSync(blobFile(orphan)), 'the orphan stays while the crew cannot be read');
  } finally {
    await deleteRecord(stack.urls.pds, alice.jwt, alice.did, 'io.atcr.hold.crew', 'ghost');
  }
  const res = await collect(alice, { dryRun: false });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.removed.map((g) => g.digest), [orphan]);
  assert.equal(fs.existsSync(blobFile(orphan)), false);
});
