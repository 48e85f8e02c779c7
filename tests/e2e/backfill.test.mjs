// Backfill and rebuild: the appview's database is only a cache of what PDSs
// hold. A second appview with an empty D1, backfilled from the PDS, lists
// the same repositories, tags, stars, descriptions, profiles, holds and
// crew as the first; an
// account named in a pull on a fresh appview is read on first sight; a
// backfill cut off resumes where it stopped; a rebuild empties the index and
// refills it from the network. The admin endpoints that start them open only
// with the ADMIN_TOKEN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, queryD1 } from '../lib/stack.mjs';
import { registryToken, pushImage } from '../lib/registry.mjs';
import { login, putRecord, listAllRecords } from '../lib/atproto.mjs';

const STAR = 'io.atcr.sailor.star';
const PAGE = 'io.atcr.repo.page';
const HOLD = 'io.atcr.hold';
const CREW = 'io.atcr.hold.crew';
const BACKFILLED = ['io.atcr.manifest', 'io.atcr.tag', PAGE, STAR, 'io.atcr.sailor.profile', HOLD, CREW];
// The stack's shared hold, whose owner is alice (a hold record is indexed
// only when the hold names its author as its owner).
let HOLD_ENDPOINT;

let stack, alice, bob;

before(async () => {
  stack = await startStack({ jetstream: true, log: (m) => process.stderr.write(`${m}\n`) });
  HOLD_ENDPOINT = stack.urls.hold;
  ({ alice, bob } = stack.accounts);
  // The first appview follows the network, so records written straight
  // into the PDS (stars, descriptions) reach it as they would in production.
  await stack.triggerCron();
  await until(() => stack.jetstream.clients() === 1, 'the first appview follows Jetstream');
  const aliceToken = await registryToken(stack, `repository:${alice.handle}/web:pull,push repository:${alice.handle}/team/api:pull,push`, alice);
  const bobToken = await registryToken(stack, `repository:${bob.handle}/tool:pull,push`, bob);
  await pushImage(stack, `${alice.handle}/web`, 'v1', aliceToken);
  await pushImage(stack, `${alice.handle}/web`, 'v2', aliceToken);
  await pushImage(stack, `${alice.handle}/team/api`, '1.0', aliceToken);
  await pushImage(stack, `${bob.handle}/tool`, 'latest', bobToken);
  const now = new Date().toISOString();
  const [aliceJwt, bobJwt] = await Promise.all([login(stack.urls.pds, alice), login(stack.urls.pds, bob)]);
  await putRecord(stack.urls.pds, bobJwt, bob.did, STAR, 'web-star', { subject: { did: alice.did, repository: 'web' }, createdAt: now });
  await putRecord(stack.urls.pds, aliceJwt, alice.did, STAR, 'tool-star', { subject: { did: bob.did, repository: 'tool' }, createdAt: now });
  await putRecord(stack.urls.pds, aliceJwt, alice.did, PAGE, 'web', { repository: 'web', description: 'A capybara-grade web server', createdAt: now });
  // The pushes wrote both profiles; alice also runs a hold, with bob in its crew.
  await putRecord(stack.urls.pds, aliceJwt, alice.did, HOLD, 'own-hold', { endpoint: HOLD_ENDPOINT, owner: alice.did, public: false, createdAt: now });
  await putRecord(stack.urls.pds, aliceJwt, alice.did, CREW, 'bob', { member: bob.did, role: 'crew', addedAt: now });
  await until(async () => {
    const rows = queryD1(stack.appviewStateDir, `SELECT (SELECT COUNT(*) FROM stars) AS stars,
      (SELECT COUNT(*) FROM repositories WHERE description LIKE '%capybara%') AS described,
      (SELECT COUNT(*) FROM profiles) AS profiles, (SELECT COUNT(*) FROM holds) AS holds, (SELECT COUNT(*) FROM crew) AS crew`)[0];
    return rows.stars === 2 && rows.described === 1 && rows.profiles === 2 && rows.holds === 1 && rows.crew === 1;
  }, 'the first appview indexed the stars, the description, the profiles, the hold and its crew');
});

after(async () => {
  await stack?.stop();
});

/** Polls `check` (truthy when done) every 250 ms until `timeoutMs`; no fixed sleeps. */
async function until(check, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const done = await check();
    if (done) return done;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** An anonymous registry token from the appview at `base`. */
async function anonymousToken(base, scope) {
  const url = new URL('/auth/token', base);
  url.searchParams.set('service', new URL(base).host);
  url.searchParams.set('scope', scope);
  const res = await fetch(url);
  assert.equal(res.status, 200, `token for ${scope} from ${base}`);
  return (await res.json()).token;
}

async function registry(base, path, scope) {
  const token = await anonymousToken(base, scope);
  return fetch(new URL(path, base), { headers: { authorization: `Bearer ${token}` } });
}

async function catalog(base) {
  const res = await registry(base, '/v2/_catalog?n=1000', 'registry:catalog:*');
  assert.equal(res.status, 200);
  return (await res.json()).repositories.sort();
}

async function text(base, path) {
  const res = await fetch(new URL(path, base));
  assert.equal(res.status, 200, `${path} on ${base}`);
  return res.text();
}

/** The holds table of a page, as text without tags. */
const holdTable = (html) => (html.match(/<table class="holds stacked">[\s\S]*?<\/table>/)?.[0] ?? '')
  .replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();

/** What an appview shows: the catalog, each repository's tags and stars, user pages, /holds, and the index's rows. */
async function listing(base, stateDir) {
  const repositories = await catalog(base);
  const tags = {};
  const starsShown = {};
  for (const repo of repositories) {
    const res = await registry(base, `/v2/${repo}/tags/list`, `repository:${repo}:pull`);
    assert.equal(res.status, 200);
    tags[repo] = (await res.json()).tags.sort();
    starsShown[repo] = (await text(base, `/r/${repo}`)).match(/(\d+) stars?\b/)?.[1];
  }
  const userPages = {};
  for (const { handle } of [alice, bob]) {
    const html = await text(base, `/u/${handle}`);
    userPages[handle] = {
      links: [...new Set(html.match(/href="\/r\/[^"]+"/g) ?? [])].sort(),
      defaultHold: html.match(/<p class="meta default-hold">.*?<\/p>/)?.[0],
      holds: holdTable(html),
    };
  }
  const holdsPage = holdTable(await text(base, '/holds'));
  const rows = queryD1(stateDir, `SELECT u.handle, r.name, r.description,
      (SELECT COUNT(*) FROM stars s WHERE s.owner_did = r.owner_did AND s.repository = r.name) AS stars,
      (SELECT COUNT(*) FROM manifests m WHERE m.owner_did = r.owner_did AND m.repository = r.name) AS manifests,
      (SELECT group_concat(t.tag || '=' || t.digest, ' ') FROM (SELECT * FROM tags ORDER BY tag) t
         WHERE t.owner_did = r.owner_did AND t.repository = r.name) AS tags
    FROM repositories r JOIN users u ON u.did = r.owner_did ORDER BY u.handle, r.name`);
  const starRows = queryD1(stateDir, 'SELECT starrer_did, owner_did, repository, record_uri FROM stars ORDER BY starrer_did, owner_did, repository');
  const profileRows = queryD1(stateDir, 'SELECT * FROM profiles ORDER BY did');
  const holdRows = queryD1(stateDir, 'SELECT * FROM holds ORDER BY record_uri');
  const crewRows = queryD1(stateDir, 'SELECT * FROM crew ORDER BY record_uri');
  return { repositories, tags, starsShown, userPages, holdsPage, rows, starRows, profileRows, holdRows, crewRows };
}

/** Counts of the index's rows, and of what a rebuild leaves alone. */
function rowCounts(stateDir) {
  return queryD1(stateDir, `SELECT
    (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM repositories) AS repositories,
    (SELECT COUNT(*) FROM manifests) AS manifests, (SELECT COUNT(*) FROM tags) AS tags,
    (SELECT COUNT(*) FROM stars) AS stars, (SELECT COUNT(*) FROM profiles) AS profiles,
    (SELECT COUNT(*) FROM holds) AS holds, (SELECT COUNT(*) FROM crew) AS crew,
    (SELECT COUNT(*) FROM pds_sessions) AS sessions`)[0];
}

async function admin(base, method, path, { token = stack.adminToken, body } = {}) {
  const headers = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const res = await fetch(new URL(path, base), { method, headers, body: body && JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** The backfill as /health reports it: done when no PDS is being listed and no account is pending. */
async function backfillDone(base) {
  const res = await fetch(new URL('/health', base));
  const { backfill } = await res.json();
  const pending = backfill.repos.some((r) => r.state === 'pending') || backfill.hosts.some((h) => h.state === 'listing');
  return !pending && backfill.repos.some((r) => r.state === 'done') && backfill;
}

/** How many records of the collections a backfill reads `account` has in the PDS. */
async function recordsOf(account) {
  let total = 0;
  for (const collection of BACKFILLED) total += (await listAllRecords(stack.urls.pds, account.did, collection)).length;
  return total;
}

let fresh;

test('the admin endpoints refuse a request without the token, with a wrong one, and are off without ADMIN_TOKEN', async () => {
  const missing = await admin(stack.urls.appview, 'POST', '/admin/backfill', { token: null });
  assert.equal(missing.status, 401);
  assert.match(missing.body.error, /Bearer <ADMIN_TOKEN>/);
  const wrong = await admin(stack.urls.appview, 'POST', '/admin/rebuild', { token: `${stack.adminToken}x` });
  assert.equal(wrong.status, 403);
  assert.match(wrong.body.error, /not this appview's ADMIN_TOKEN/);
  assert.equal((await admin(stack.urls.appview, 'GET', '/admin/backfill', { token: 'short' })).status, 403);
  assert.ok(rowCounts(stack.appviewStateDir).tags > 0, 'nothing was emptied');
  // An appview without ADMIN_TOKEN has no admin endpoints.
  fresh = await stack.startAppview('fresh', { ADMIN_TOKEN: '' });
  const off = await admin(fresh, 'POST', '/admin/rebuild');
  assert.equal(off.status, 404);
  assert.match(off.body.error, /admin endpoints are off: set the ADMIN_TOKEN secret/);
});

test("first sight: a pull of alice's image from a fresh appview works, and all her repositories then appear", async () => {
  assert.deepEqual(await catalog(fresh), [], 'the fresh appview starts empty');
  const res = await registry(fresh, `/v2/${alice.handle}/web/manifests/v1`, `repository:${alice.handle}/web:pull`);
  assert.equal(res.status, 200, 'the pull is answered at once, from the PDS');
  const hers = (await catalog(stack.urls.appview)).filter((r) => r.startsWith(`${alice.handle}/`));
  assert.equal(hers.length, 2);
  await until(async () => JSON.stringify(await catalog(fresh)) === JSON.stringify(hers), "alice's repositories appear on the fresh appview");
  const page = await text(fresh, `/r/${alice.handle}/web`);
  assert.match(page, /capybara-grade/, 'with her description');
  assert.ok(page.includes(`href="/r/${alice.handle}/web/v2"`), 'and her tags');
  // The profile, holds and crew come after the repositories' records.
  await until(() => backfillDone(fresh), 'the read of her account ends');
  assert.ok((await text(fresh, `/u/${alice.handle}`)).includes(HOLD_ENDPOINT), 'her page lists the hold she runs');
  const [row] = queryD1(stack.stateDirs.fresh, `SELECT state, records FROM backfill_repos WHERE did = '${alice.did}'`);
  assert.equal(row.state, 'done');
  assert.equal(row.records, await recordsOf(alice));
});

test('a second appview with an empty D1, backfilled from the PDS, lists what the first does', async () => {
  const mirror = await stack.startAppview('mirror');
  assert.deepEqual(await catalog(mirror), []);
  const started = Date.now();
  const asked = await admin(mirror, 'POST', '/admin/backfill', { body: { pds: stack.urls.pds } });
  assert.equal(asked.status, 202, JSON.stringify(asked.body));
  assert.deepEqual(asked.body.queued.pds, [stack.urls.pds]);
  const done = await until(() => backfillDone(mirror), 'the backfill of the PDS ends');
  process.stderr.write(`backfill of the PDS took ${Date.now() - started} ms\n`);
  assert.deepEqual(done.hosts.map((h) => [h.pds, h.state]), [[stack.urls.pds, 'listed']]);
  const [first, second] = [await listing(stack.urls.appview, stack.appviewStateDir), await listing(mirror, stack.stateDirs.mirror)];
  assert.deepEqual(second, first);
  // What the listing holds, so equality is not of two empty lists.
  assert.deepEqual(first.repositories, [`${alice.handle}/team/api`, `${alice.handle}/web`, `${bob.handle}/tool`].sort());
  assert.deepEqual(first.tags[`${alice.handle}/web`], ['v1', 'v2']);
  assert.equal(first.starsShown[`${alice.handle}/web`], '1');
  assert.equal(first.starsShown[`${bob.handle}/tool`], '1');
  assert.ok(first.rows.some((r) => r.name === 'web' && /capybara/.test(r.description)));
  assert.ok(first.userPages[bob.handle].links.includes(`href="/r/${alice.handle}/web"`), "bob's page lists what he starred");
  assert.deepEqual(first.profileRows.map((p) => [p.did, p.default_hold]).sort(),
    [[alice.did, stack.holdDid], [bob.did, stack.holdDid]].sort(), 'both profiles, naming the hold their pushes went to');
  assert.match(first.userPages[alice.handle].defaultHold, new RegExp(stack.holdDid.replace(/[.%]/g, '\\$&')));
  assert.match(first.holdsPage, new RegExp(`^Hold Owner Access Crew Registered ${HOLD_ENDPOINT.replace(/\./g, '\\.')} ${stack.holdDid.replace(/\./g, '\\.')}( · this registry's default)? ${alice.handle.replace(/\./g, '\\.')} private 1 `));
  assert.equal(first.userPages[alice.handle].holds.includes(HOLD_ENDPOINT), true, "alice's page lists the hold she runs");
  assert.deepEqual(first.crewRows.map((c) => [c.owner_did, c.member_did, c.permissions]), [[alice.did, bob.did, '[]']]);
});

test('a backfill cut off resumes where it stopped: its place is in D1, the next run goes on from there', async () => {
  // One record a page, one page a run, 1.5 s apart: slow enough to stop it midway.
  const slow = await stack.startAppview('slow', { BACKFILL_PAGE_SIZE: '1', BACKFILL_PAGES_PER_RUN: '1', BACKFILL_PAUSE_MS: '1500' });
  const total = await recordsOf(alice);
  assert.ok(total >= 6, `alice has ${total} records`);
  const asked = await admin(slow, 'POST', '/admin/backfill', { body: { did: alice.did } });
  assert.equal(asked.status, 202, JSON.stringify(asked.body));
  const progress = () => queryD1(stack.stateDirs.slow, `SELECT state, collection, cursor, records FROM backfill_repos WHERE did = '${alice.did}'`)[0];
  await until(() => progress()?.records >= 2, 'the backfill has read two records');
  await stack.stopService('slow');
  const cut = progress();
  assert.equal(cut.state, 'pending', 'stopped midway');
  assert.ok(cut.records < total, `stopped after ${cut.records} of ${total} records`);
  assert.ok(cut.collection, 'its place is saved');
  await stack.startService('slow', `${stack.urls.slow}/health`);
  await stack.triggerCron('slow');
  await until(() => progress().state === 'done', 'the backfill goes on to its end', 90_000);
  // Counted once each: it went on from its place instead of starting over.
  assert.equal(progress().records, total);
  const hers = (await catalog(stack.urls.appview)).filter((r) => r.startsWith(`${alice.handle}/`));
  assert.deepEqual(await catalog(stack.urls.slow), hers);
});

test('a rebuild empties the index tables and refills them from the network, then the consumer replays from its start; sessions stay', async () => {
  const before = rowCounts(stack.appviewStateDir);
  const shown = await listing(stack.urls.appview, stack.appviewStateDir);
  assert.ok(before.sessions > 0, 'pushes left PDS sessions');
  const subscriptions = stack.jetstream.subscriptions.length;
  const rebuilt = await admin(stack.urls.appview, 'POST', '/admin/rebuild');
  assert.equal(rebuilt.status, 202, JSON.stringify(rebuilt.body));
  const { sessions, ...indexRows } = before;
  assert.deepEqual(rebuilt.body.emptied, indexRows, 'every index row was emptied');
  assert.deepEqual(rebuilt.body.queued.pds, [stack.urls.pds], 'the PDS the index knew of is read again');
  await until(() => backfillDone(stack.urls.appview), 'the rebuild ends');
  // Then the consumer replays the network from the rebuild's start, over what the backfill read.
  const replay = await until(() => stack.jetstream.subscriptions.length > subscriptions && stack.jetstream.subscriptions.at(-1),
    "the consumer connects again to replay from the rebuild's start");
  assert.ok(replay.cursor <= rebuilt.body.started_at * 1000, `it replays from ${replay.cursor}, before the rebuild (${rebuilt.body.started_at} ms)`);
  await until(() => stack.jetstream.clients() === 1, 'the consumer follows the network again');
  assert.deepEqual(rowCounts(stack.appviewStateDir), before, 'the same rows again, the sessions untouched');
  assert.deepEqual(await listing(stack.urls.appview, stack.appviewStateDir), shown);
});
