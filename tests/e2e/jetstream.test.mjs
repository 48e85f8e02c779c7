// The index follows the network: records written straight into a PDS with
// the PDS's own API (not through the appview) reach the web UI and the
// catalog through Jetstream, and profiles, holds and crew reach the user
// pages and /holds. The stack runs a Jetstream-compatible server fed by the
// PDS's firehose (tests/lib/jetstream.mjs); the appview's consumer (a
// Durable Object) holds the WebSocket, applies creates, updates and
// deletes, skips and counts malformed records, and resumes from its cursor
// after its connection drops or the appview restarts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStack, queryD1 } from '../lib/stack.mjs';
import { registryToken } from '../lib/registry.mjs';
import { login, putRecord, deleteRecord, xrpc } from '../lib/atproto.mjs';
import { OCI_MANIFEST } from '../lib/image.mjs';

const MANIFEST = 'io.atcr.manifest';
const TAG = 'io.atcr.tag';
const STAR = 'io.atcr.sailor.star';
const PAGE = 'io.atcr.repo.page';
const PROFILE = 'io.atcr.sailor.profile';
const HOLD = 'io.atcr.hold';
const CREW = 'io.atcr.hold.crew';
// A hold alice says she runs; the index takes the record's word for it.
// The stack's shared hold, whose owner is alice: a hold record is indexed
// only when the hold names its author as its owner.
let HOLD_ENDPOINT, HOLD_DID;

let stack, alice, bob, aliceJwt, bobJwt;

before(async () => {
  stack = await startStack({ jetstream: true, log: (m) => process.stderr.write(`${m}\n`) });
  [HOLD_ENDPOINT, HOLD_DID] = [stack.urls.hold, stack.holdDid];
  ({ alice, bob } = stack.accounts);
  aliceJwt = await login(stack.urls.pds, alice);
  bobJwt = await login(stack.urls.pds, bob);
  // The cron trigger starts the consumer; it subscribes to our collections, live.
  await stack.triggerCron();
  await until(() => stack.jetstream.clients() === 1, 'the consumer connects to Jetstream');
  const [first] = stack.jetstream.subscriptions;
  assert.deepEqual(first.wantedCollections, [MANIFEST, TAG, STAR, PAGE, PROFILE, HOLD, CREW]);
  assert.equal(first.cursor, null, 'with no cursor saved yet, the consumer starts live');
});

after(async () => {
  await stack?.stop();
});

/** Polls `check` (truthy when done) every 200 ms; no fixed sleeps. */
async function until(check, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function page(path) {
  const res = await fetch(new URL(path, stack.urls.appview));
  return { status: res.status, text: await res.text() };
}

async function catalog() {
  const token = await registryToken(stack, 'registry:catalog:*');
  const res = await fetch(new URL('/v2/_catalog?n=1000', stack.urls.appview), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return (await res.json()).repositories;
}

async function health() {
  const res = await fetch(new URL('/health', stack.urls.appview));
  return { status: res.status, body: await res.json() };
}

const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const now = () => new Date().toISOString();

/**
 * An image manifest written as the registry writes one, but straight into
 * alice's PDS: its bytes as a PDS blob, its io.atcr.manifest record under
 * `<repository>:<digest>`. Resolves to { digest, uri }.
 */
async function writeManifest(repository, label, { subject } = {}) {
  const blob = (content) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', size: content.length, digest: sha256(content) });
  const config = Buffer.from(`{"architecture":"amd64","os":"linux","label":"${label}"}`);
  const layer = Buffer.from(`layer of ${label}`);
  const bytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { ...blob(config), mediaType: 'application/vnd.oci.image.config.v1+json' },
    layers: [blob(layer)],
    ...(subject ? { subject } : {}),
  }));
  const digest = sha256(bytes);
  const upload = await fetch(new URL('/xrpc/com.atproto.repo.uploadBlob', stack.urls.pds), {
    method: 'POST', headers: { authorization: `Bearer ${aliceJwt}`, 'content-type': OCI_MANIFEST }, body: bytes,
  });
  assert.equal(upload.status, 200, await upload.clone().text());
  const parsed = JSON.parse(bytes);
  const rkey = `${repository.replace(/\//g, '~')}:${digest}`;
  const { uri } = await putRecord(stack.urls.pds, aliceJwt, alice.did, MANIFEST, rkey, {
    repository, digest, mediaType: OCI_MANIFEST, schemaVersion: 2, holdDid: stack.holdDid,
    config: parsed.config, layers: parsed.layers, manifestBlob: (await upload.json()).blob, createdAt: now(),
    ...(subject ? { subject } : {}),
  });
  return { digest, uri };
}

async function writeTag(repository, tag, manifestUri) {
  const rkey = `${repository.replace(/\//g, '~')}:${tag}`;
  await putRecord(stack.urls.pds, aliceJwt, alice.did, TAG, rkey, {
    repository, tag, manifest: manifestUri, createdAt: now(), updatedAt: now(),
  });
  return rkey;
}

const tagLink = (repository, tag) => `href="/r/${alice.handle}/${repository}/${tag}"`;

test('a manifest, a tag and a star written straight into PDSs appear in the web UI and the catalog', async () => {
  const { digest, uri } = await writeManifest('netapp', 'one');
  await writeTag('netapp', 'v1', uri);
  await putRecord(stack.urls.pds, bobJwt, bob.did, STAR, 'netapp-star', {
    subject: { did: alice.did, repository: 'netapp' }, createdAt: now(),
  });
  const started = Date.now();
  await until(async () => (await catalog()).includes(`${alice.handle}/netapp`), 'the catalog lists alice.test/netapp');
  const shown = await until(async () => {
    const p = await page(`/r/${alice.handle}/netapp`);
    return p.status === 200 && p.text.includes(tagLink('netapp', 'v1')) && /1 star\b/.test(p.text) && p;
  }, 'the repository page shows tag v1 and one star');
  assert.ok(shown.text.includes(digest), 'the tag names the manifest written');
  process.stderr.write(`network records indexed ${Date.now() - started} ms after they were written\n`);
  // bob's page lists what he starred.
  await until(async () => (await page(`/u/${bob.handle}`)).text.includes('netapp'), "bob's page lists the repository he starred");
});

test('deleting the tag record removes the tag; deleting the star removes it', async () => {
  await deleteRecord(stack.urls.pds, aliceJwt, alice.did, TAG, 'netapp:v1');
  await deleteRecord(stack.urls.pds, bobJwt, bob.did, STAR, 'netapp-star');
  await until(async () => {
    const p = await page(`/r/${alice.handle}/netapp`);
    return p.status === 200 && !p.text.includes(tagLink('netapp', 'v1')) && /0 stars\b/.test(p.text);
  }, 'the repository page shows neither the tag nor the star');
});

test('a changed io.atcr.repo.page changes the description search finds', async () => {
  const search = async (word) => (await page(`/search?q=${word}`)).text.includes(`/r/${alice.handle}/netapp`);
  await putRecord(stack.urls.pds, aliceJwt, alice.did, PAGE, 'netapp', {
    repository: 'netapp', description: 'A quokka-shaped web server', createdAt: now(),
  });
  await until(() => search('quokka'), 'search finds the repository by its description');
  await putRecord(stack.urls.pds, aliceJwt, alice.did, PAGE, 'netapp', {
    repository: 'netapp', description: 'A wombat-shaped web server', createdAt: now(), updatedAt: now(),
  });
  await until(async () => (await search('wombat')) && !(await search('quokka')), 'search follows the changed description');
});

test("an identity event (a new handle) updates the user's handle in the index", async () => {
  const handleOf = () => queryD1(stack.appviewStateDir, `SELECT handle FROM users WHERE did = '${bob.did}'`)[0]?.handle;
  assert.equal(handleOf(), bob.handle, 'bob is in the index (he starred a repository)');
  await xrpc(stack.urls.pds, 'com.atproto.identity.updateHandle', { body: { handle: 'robert.test' }, token: bobJwt });
  await until(() => handleOf() === 'robert.test', "the index follows bob's new handle");
});

test('a malformed io.atcr.manifest record is skipped and counted; the UI stays up', async () => {
  const before = (await health()).body.jetstream?.skipped ?? 0;
  await putRecord(stack.urls.pds, aliceJwt, alice.did, MANIFEST, 'broken:sha256:nothex', {
    repository: 'broken', digest: 'sha256:nothex', mediaType: OCI_MANIFEST, schemaVersion: 'two', createdAt: now(),
  });
  // A good record after it is still applied.
  const { uri } = await writeManifest('afterbroken', 'two');
  await writeTag('afterbroken', 'v2', uri);
  await until(async () => (await page(`/r/${alice.handle}/afterbroken`)).text.includes(tagLink('afterbroken', 'v2')),
    'the record after the malformed one is applied');
  const { status, body } = await until(async () => {
    const h = await health();
    return h.body.jetstream?.skipped > before && h;
  }, '/health counts the skipped record');
  assert.equal(status, 200);
  assert.match(body.jetstream.last_skip, /io\.atcr\.manifest.*broken/);
  assert.equal(typeof body.jetstream.cursor, 'number');
  assert.equal(typeof body.jetstream.lag_ms, 'number');
  assert.ok(body.checks.some((c) => c.name === 'jetstream' && c.ok), JSON.stringify(body.checks));
  assert.ok(!(await catalog()).includes(`${alice.handle}/broken`), 'the malformed manifest is not indexed');
  assert.equal((await page('/')).status, 200);
  assert.equal((await page(`/r/${alice.handle}/netapp`)).status, 200);
});

test('the connection drops, events happen, the consumer reconnects by itself from its cursor: nothing missed', async () => {
  const subscriptions = stack.jetstream.subscriptions.length;
  stack.jetstream.pause();
  const { uri } = await writeManifest('whiledropped', 'three');
  await writeTag('whiledropped', 'v3', uri);
  stack.jetstream.resume();
  // No poke: the consumer's own alarm connects again.
  await until(() => stack.jetstream.clients() === 1, 'the consumer reconnects', 60_000);
  const again = stack.jetstream.subscriptions.at(-1);
  assert.ok(stack.jetstream.subscriptions.length > subscriptions);
  assert.equal(typeof again.cursor, 'number', 'it resumes from its cursor');
  await until(async () => (await page(`/r/${alice.handle}/whiledropped`)).text.includes(tagLink('whiledropped', 'v3')),
    'what happened while it was cut off is indexed');
});

test('the appview restarts, events happen meanwhile, the cron starts the consumer from its saved cursor: nothing missed', async () => {
  const { cursor: saved, skipped } = (await health()).body.jetstream;
  await stack.stopService('appview');
  await until(() => stack.jetstream.clients() === 0, 'the consumer is gone with the appview');
  const { uri } = await writeManifest('whiledown', 'four');
  await writeTag('whiledown', 'v4', uri);
  await deleteRecord(stack.urls.pds, aliceJwt, alice.did, TAG, 'afterbroken:v2');
  await stack.startService('appview', `${stack.urls.appview}/health`);
  await stack.triggerCron();
  await until(() => stack.jetstream.clients() === 1, 'the consumer connects again');
  const resumed = stack.jetstream.subscriptions.at(-1);
  assert.ok(resumed.cursor <= saved && resumed.cursor >= saved - 10_000_000,
    `it resumes a few seconds before the cursor it saved (${resumed.cursor} vs ${saved})`);
  await until(async () => {
    const [down, after] = await Promise.all([page(`/r/${alice.handle}/whiledown`), page(`/r/${alice.handle}/afterbroken`)]);
    return down.text.includes(tagLink('whiledown', 'v4')) && after.status === 200 && !after.text.includes(tagLink('afterbroken', 'v2'));
  }, 'the writes and the deletion made while the appview was down are indexed');
  // Replayed events are applied again harmlessly (one row each) and counted once.
  assert.equal((await catalog()).filter((r) => r === `${alice.handle}/whiledown`).length, 1);
  assert.equal((await health()).body.jetstream.skipped, skipped, 'a replayed malformed record is not counted again');
});

/** The row of a hold table (a user page's, /holds) that names `endpoint`, as text without tags. */
function holdRow(html, endpoint) {
  const table = html.match(/<table class="holds stacked">[\s\S]*?<\/table>/)?.[0] ?? '';
  const row = table.split('<tr>').find((r) => r.includes(endpoint));
  return row?.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
}

/** alice's rows in profiles, holds and crew (one wrangler run: each takes seconds). */
function holdRows() {
  const [row] = queryD1(stack.appviewStateDir, `SELECT
    (SELECT json_group_array(json_object('default_hold', default_hold)) FROM profiles WHERE did = '${alice.did}') AS profile,
    (SELECT json_group_array(json_object('record_uri', record_uri, 'hold_did', hold_did, 'endpoint', endpoint, 'public', public))
       FROM holds WHERE owner_did = '${alice.did}') AS holds,
    (SELECT json_group_array(json_object('member_did', member_did, 'role', role, 'permissions', permissions))
       FROM crew WHERE owner_did = '${alice.did}') AS crew`);
  return Object.fromEntries(Object.entries(row).map(([table, rows]) => [table, JSON.parse(rows)]));
}

test('a profile, a hold and a crew record written straight into the PDS reach D1, the user page and /holds', async () => {
  const written = now();
  await putRecord(stack.urls.pds, aliceJwt, alice.did, PROFILE, 'self', { defaultHold: HOLD_DID, createdAt: written, updatedAt: written });
  await putRecord(stack.urls.pds, aliceJwt, alice.did, HOLD, 'own-hold', { endpoint: HOLD_ENDPOINT, owner: alice.did, public: true, createdAt: written });
  await putRecord(stack.urls.pds, aliceJwt, alice.did, CREW, 'bob', { member: bob.did, role: 'crew', permissions: ['blob:write'], addedAt: written });
  const started = Date.now();
  const user = await until(async () => {
    const p = await page(`/u/${alice.handle}`);
    return p.text.includes(`Default hold: <code class="hold">${HOLD_DID}</code>`) && / public 1 /.test(holdRow(p.text, HOLD_ENDPOINT)) && p;
  }, "alice's page shows her default hold and the hold she runs, with its crew");
  process.stderr.write(`profile, hold and crew shown ${Date.now() - started} ms after they were written\n`);
  assert.deepEqual(holdRows(), {
    profile: [{ default_hold: HOLD_DID }],
    holds: [{ record_uri: `at://${alice.did}/${HOLD}/own-hold`, hold_did: HOLD_DID, endpoint: HOLD_ENDPOINT, public: 1 }],
    crew: [{ member_did: bob.did, role: 'crew', permissions: '["blob:write"]' }],
  });
  assert.match(holdRow(user.text, HOLD_ENDPOINT), new RegExp(`^${HOLD_ENDPOINT.replace(/\./g, '\\.')} ${HOLD_DID}( · this registry's default)? public 1 \\d{4}-`));
  const holds = await until(async () => {
    const p = await page('/holds');
    return p.status === 200 && holdRow(p.text, HOLD_ENDPOINT) && p;
  }, '/holds lists her hold');
  assert.match(holdRow(holds.text, HOLD_ENDPOINT), new RegExp(` ${alice.handle.replace(/\./g, '\\.')} public 1 `));
  assert.ok(holds.text.includes(`href="/u/${alice.handle}"`), 'with a link to its owner');
});

test('a malformed io.atcr.hold record is skipped and counted; deleting the crew record removes it', async () => {
  const before = (await health()).body.jetstream?.skipped ?? 0;
  await putRecord(stack.urls.pds, aliceJwt, alice.did, HOLD, 'broken-hold', {
    endpoint: 'somewhere', owner: alice.did, public: 'yes', createdAt: now(),
  });
  await deleteRecord(stack.urls.pds, aliceJwt, alice.did, CREW, 'bob');
  await until(async () => / public 0 /.test(` ${holdRow((await page('/holds')).text, HOLD_ENDPOINT)} `),
    '/holds shows her crew empty');
  assert.deepEqual(holdRows().crew, [], 'the crew row is gone');
  const { body } = await until(async () => {
    const h = await health();
    return h.body.jetstream?.skipped > before && h;
  }, '/health counts the skipped hold');
  assert.match(body.jetstream.last_skip, /io\.atcr\.hold record .*broken-hold/);
  assert.deepEqual(holdRows().holds.map((h) => h.record_uri), [`at://${alice.did}/${HOLD}/own-hold`], 'the malformed hold is not indexed');
  assert.ok(!(await page('/holds')).text.includes('somewhere'));

  // bob claims alice's hold: the hold names alice as its owner, so the claim is not listed.
  await putRecord(stack.urls.pds, bobJwt, bob.did, HOLD, 'claimed', { endpoint: HOLD_ENDPOINT, owner: bob.did, public: true, createdAt: now() });
  const claimed = await until(async () => {
    const h = await health();
    return /claimed not indexed: the hold .* names did:plc:\w+ as its owner, not did:plc:/.test(h.body.jetstream?.last_skip) && h;
  }, '/health counts the claim skipped, naming the owner the hold gives');
  assert.ok(claimed.body.jetstream.last_skip.includes(alice.did));
  assert.deepEqual(holdRows().holds.map((h) => h.record_uri), [`at://${alice.did}/${HOLD}/own-hold`], "bob's claim is not indexed");
});

test('an account deactivated on its PDS leaves the pages, search and the catalog; activated again, it is back', async () => {
  const shown = async () => {
    const [listed, user, repo, search, holds] = await Promise.all([
      catalog(), page(`/u/${alice.handle}`), page(`/r/${alice.handle}/netapp`), page('/search?q=wombat'), page('/holds'),
    ]);
    return {
      catalog: listed.includes(`${alice.handle}/netapp`),
      userPage: user.status,
      repositoryPage: repo.status,
      search: search.text.includes(`/r/${alice.handle}/netapp`),
      holds: holds.text.includes(HOLD_ENDPOINT),
    };
  };
  const visible = { catalog: true, userPage: 200, repositoryPage: 200, search: true, holds: true };
  assert.deepEqual(await shown(), visible);
  await xrpc(stack.urls.pds, 'com.atproto.server.deactivateAccount', { body: {}, token: aliceJwt });
  const hidden = { catalog: false, userPage: 404, repositoryPage: 404, search: false, holds: false };
  await until(async () => JSON.stringify(await shown()) === JSON.stringify(hidden), 'alice is hidden everywhere');
  assert.equal((await page('/')).status, 200);
  // A procedure without input: a POST with no body.
  const activated = await fetch(new URL('/xrpc/com.atproto.server.activateAccount', stack.urls.pds), {
    method: 'POST', headers: { authorization: `Bearer ${aliceJwt}` },
  });
  assert.equal(activated.status, 200, await activated.clone().text());
  await until(async () => JSON.stringify(await shown()) === JSON.stringify(visible), 'alice is shown again');
});

// Reads that trust the index: once alice's records were backfilled and the
// consumer replayed the stream over that walk, and while the consumer is
// connected, tag lists and referrers come from D1 (no listRecords on her
// PDS, whatever her history); records written elsewhere reach them through
// Jetstream. Cut off from Jetstream, the appview reads her PDS again.
test("while alice's index is current, tag lists and referrers come from it; cut off from Jetstream, from her PDS", async () => {
  const token = await registryToken(stack, `repository:${alice.handle}/current:pull`, alice);
  const get = async (path) => {
    const res = await fetch(new URL(path, stack.urls.appview), { headers: { authorization: `Bearer ${token}` } });
    assert.ok(res.headers.has('atcr-subrequests'), `${path} reports its subrequests`);
    return { status: res.status, body: await res.json(), subrequests: Number(res.headers.get('atcr-subrequests')) };
  };
  const tags = () => get(`/v2/${alice.handle}/current/tags/list`);
  const { digest, uri } = await writeManifest('current', 'five');
  await writeTag('current', 'v5', uri);
  // Her first pull through this appview queues her backfill; when it ends the
  // consumer replays the stream over it.
  await until(async () => (await tags()).status === 200, 'the tag is listed');
  const current = () => queryD1(stack.appviewStateDir, `SELECT b.replayed AS replayed, j.alive_at AS alive
    FROM backfill_repos b, jetstream_cursor j WHERE b.did = '${alice.did}' AND b.state = 'done'`)[0];
  await until(() => current()?.replayed === 1, 'her walk is done and replayed over', 30_000);
  // Marked alive by a check (its alarm every 30 s, or the cron's poke) once
  // caught up with the stream: poked here rather than waited for.
  const poked = async (check) => { await stack.triggerCron(); return check(); };
  await until(() => poked(() => current().alive > Date.now() - 90_000), 'the consumer is marked alive', 60_000);

  const listed = await tags();
  assert.deepEqual(listed.body.tags, ['v5']);
  assert.equal(listed.subrequests, 0, 'the tag list is read from the index: no subrequest');

  // A tag written straight into her PDS is listed once its event is applied;
  // deleted, it goes; each read costs no subrequest.
  const rkey = await writeTag('current', 'v6', uri);
  await until(async () => JSON.stringify((await tags()).body.tags) === '["v5","v6"]', 'the new tag is listed');
  await deleteRecord(stack.urls.pds, aliceJwt, alice.did, TAG, rkey);
  await until(async () => JSON.stringify((await tags()).body.tags) === '["v5"]', 'the deleted tag goes');
  assert.equal((await tags()).subrequests, 0);
  const page = await get(`/v2/${alice.handle}/current/tags/list?n=1&last=`);
  assert.deepEqual(page.body.tags, ['v5']);

  // A referrer written straight into her PDS: named by the index, its record read by key.
  const subject = { mediaType: OCI_MANIFEST, digest, size: 1 };
  const referrer = await writeManifest('current', 'sbom', { subject });
  const referrers = () => get(`/v2/${alice.handle}/current/referrers/${digest}`);
  await until(async () => (await referrers()).body.manifests.length === 1, 'the referrer is listed');
  const found = await referrers();
  assert.equal(found.body.manifests[0].digest, referrer.digest);
  assert.equal(found.subrequests, 1, 'one record read, for the one referrer');

  // Cut off: the consumer's socket closes, the index is no longer trusted,
  // and a tag written meanwhile is listed at once, from her PDS.
  stack.jetstream.pause();
  await until(() => current().alive === null, 'the consumer is marked down');
  await writeTag('current', 'v7', uri);
  const fallback = await tags();
  assert.deepEqual(fallback.body.tags, ['v5', 'v7'], 'read from her PDS: the tag written while cut off is there');
  assert.ok(fallback.subrequests >= 1, 'her PDS was asked');
  stack.jetstream.resume();
  await stack.triggerCron(); // the cron's poke reconnects it before its own alarm would
  await until(() => stack.jetstream.clients() === 1, 'the consumer reconnects');
  // Trusted again only once the replay of what it missed is applied.
  await until(() => poked(async () => (await tags()).subrequests === 0), 'the index is trusted again', 60_000);
  assert.deepEqual((await tags()).body.tags, ['v5', 'v7'], 'it caught up first');
});
