// Server time of the web pages over a full index: the appview's D1 is given
// 1,000 repositories of 50 users, 10,000 tags with their manifests, pulls
// and stars, then the home page, a search matching many repositories and a
// repository page with 200 tags (its first page and a later one) are each
// asked `requests` times, one at a time, after a warm-up. Times are taken at
// the client on loopback (request sent to last byte read): they include
// wrangler dev's local D1 (SQLite) and the HTML rendering, not a network.
//
// The rows are written with `wrangler d1 execute --local --file` into the
// running appview's D1, as the index would hold them; the users, their
// repositories and most manifests have no PDS behind them, which the pages
// never ask for, except the repository page, which reads each listed tag's
// manifest record once (then keeps its facts per isolate): that repository
// belongs to alice, whose tags name manifests really pushed to her PDS. So
// the repository page figures are with those facts cached, as a page viewed
// more than once sees them; the owner's page description is re-read from the
// PDS once a minute.
//
//   ./dev bench pages [requests per page, default 200]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startStack, NODE22, WRANGLER, ROOT } from '../tests/lib/stack.mjs';
import { registryToken, pushImage } from '../tests/lib/registry.mjs';

const requests = Number(process.argv[2] ?? 200);
const WARMUP = 20;
const USERS = 50;
const REPOSITORIES = 1000;
const TAGS = 10_000;
const BIG_TAGS = 200; // the repository page's repository
const BIG_IMAGES = 4; // distinct manifests really pushed for it
const WORDS = ['web', 'api', 'worker', 'db', 'cache', 'proxy', 'auth', 'cli', 'ml', 'queue'];

const stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-bench-pages-'));
try {
  const alice = stack.accounts.alice;
  const big = `${alice.handle}/big`;
  const token = await registryToken(stack, `repository:${big}:pull,push`, alice);
  const pushed = [];
  for (let i = 0; i < BIG_IMAGES; i++) pushed.push((await pushImage(stack, big, `v${i}`, token)).manifest);
  const [aliceRow] = d1(stack, `SELECT did, pds_endpoint FROM users WHERE handle = '${alice.handle}'`);
  const [record] = d1(stack, `SELECT record_uri FROM manifests WHERE owner_did = '${aliceRow.did}' AND digest = '${pushed[0]}'`);
  if (!record) throw new Error('the pushed manifests are not in the index');

  process.stderr.write('seeding D1\n');
  const seconds = seed(stack, tmp, aliceRow.did, pushed);
  const [counts] = d1(stack, `SELECT (SELECT count(*) FROM repositories) AS repositories,
    (SELECT count(*) FROM tags) AS tags, (SELECT count(*) FROM manifests) AS manifests,
    (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM stars) AS stars,
    (SELECT count(*) FROM pulls) AS pulls,
    (SELECT count(*) FROM repository_search WHERE repository_search MATCH '"web"*') AS web`);

  const pages = [
    // What each page must show, so a figure is never of an empty page.
    ['home', '/', '.bench.test'],
    ['search "web"', '/search?q=web', 'web-'],
    ['search "web api"', '/search?q=web%20api', 'web-api-'],
    [`repository (${BIG_TAGS} tags), page 1`, `/r/${big}`, 'build-0'],
    ['repository, page 5 by name', `/r/${big}?sort=name&page=5`, 'build-0'],
  ];
  const rows = [];
  for (const [label, url, shows] of pages) rows.push([label, ...await measure(stack.urls.appview, url, shows, requests)]);

  console.log(`\nweb pages over an index of ${counts.repositories} repositories (${counts.users} users), ${counts.tags} tags, ${counts.manifests} manifests, ${counts.stars} stars, ${counts.pulls} pull counts (seeded in ${seconds.toFixed(0)} s); "web" matches ${counts.web} repositories`);
  console.log(`${requests} requests per page, one at a time, after ${WARMUP} of warm-up; ms from request to last byte at the client on loopback`);
  console.log('(wrangler dev, local D1 in SQLite; subrequests = fetches the appview made for the last request: D1 queries are bindings, not counted)');
  console.log('repository page: manifest facts cached after the warm-up (its tags name 4 manifests in alice\'s PDS); page description re-read each minute\n');
  const fmt = (r) => `${r[0].padEnd(36)} ${String(r[1]).padStart(9)} ${String(r[2]).padStart(9)} ${String(r[3]).padStart(9)} ${String(r[4]).padStart(9)} ${String(r[5]).padStart(12)}`;
  console.log(fmt(['page', 'median ms', 'p95 ms', 'max ms', 'KB', 'subrequests']));
  for (const r of rows) console.log(fmt(r));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
  await stack.stop();
}

/** `n` GETs of `url` (its first answer showing `shows`) after a warm-up: median, p95 and max ms, KB of the body, subrequests of the last. */
async function measure(base, url, shows, n) {
  const times = [];
  let bytes = 0;
  let subrequests = '-';
  for (let i = 0; i < WARMUP + n; i++) {
    const started = performance.now();
    const res = await fetch(new URL(url, base));
    const body = await res.arrayBuffer();
    const ms = performance.now() - started;
    if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
    if (i === 0 && !Buffer.from(body).toString().includes(shows)) throw new Error(`${url} does not show ${shows}`);
    if (i < WARMUP) continue;
    times.push(ms);
    bytes = body.byteLength;
    subrequests = res.headers.get('atcr-subrequests') ?? '-';
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)].toFixed(1);
  return [at(0.5), at(0.95), times.at(-1).toFixed(1), (bytes / 1024).toFixed(0), subrequests];
}

/** Rows for the index beside alice's: returns the seconds the writes took. */
function seed(stack, dir, aliceDid, pushed) {
  const now = Date.now();
  const q = (s) => (s == null ? 'NULL' : `'${String(s).replaceAll("'", "''")}'`);
  const hex = (n) => n.toString(16).padStart(64, '0');
  const statements = [];
  // Multi-row INSERTs, a few hundred rows each.
  const insert = (table, columns, values, verb = 'INSERT') => {
    for (let i = 0; i < values.length; i += 200) {
      statements.push(`${verb} INTO ${table} (${columns}) VALUES\n${values.slice(i, i + 200).map((v) => `(${v.map(q).join(', ')})`).join(',\n')};`);
    }
  };
  const users = Array.from({ length: USERS }, (_, i) => ({ did: `did:plc:benchuser${String(i).padStart(15, '0')}`, handle: `user${i}.bench.test` }));
  insert('users', 'did, handle, pds_endpoint, updated_at', users.map((u) => [u.did, u.handle, 'http://127.0.0.1:9/', now]));

  // alice already has `big`; the rest are spread over the seeded users.
  const repos = [];
  for (let i = 0; i < REPOSITORIES - 1; i++) {
    const owner = users[i % USERS].did;
    const a = WORDS[i % WORDS.length];
    const b = WORDS[Math.floor(i / WORDS.length) % WORDS.length];
    repos.push({ owner, name: `${a}-${b}-${i}`, description: `A ${a} service with ${b} support, build ${i}.`, at: now - i * 60_000 });
  }
  insert('repositories', 'owner_did, name, description, created_at, updated_at', repos.map((r) => [r.owner, r.name, r.description, r.at, r.at]));

  // The other tags over the seeded repositories, each with its own manifest.
  const manifests = [];
  const tags = [];
  const rest = TAGS - BIG_TAGS;
  for (let i = 0; i < rest; i++) {
    const r = repos[i % repos.length];
    const digest = `sha256:${hex(i + 1)}`;
    const at = r.at - Math.floor(i / repos.length) * 3_600_000;
    manifests.push([r.owner, r.name, digest, 'application/vnd.oci.image.manifest.v1+json', null, null, 4096, null,
      `at://${r.owner}/io.atcr.manifest/${r.name}:${digest}`, null, at]);
    tags.push([r.owner, r.name, `t${Math.floor(i / repos.length)}`, digest, `at://${r.owner}/io.atcr.tag/${r.name}:t${i}`, at]);
  }
  // alice's `big`: 200 tags over the manifests really pushed (v0..v3 exist already).
  for (let i = BIG_IMAGES; i < BIG_TAGS; i++) {
    tags.push([aliceDid, 'big', `build-${String(i).padStart(4, '0')}`, pushed[i % pushed.length], `at://${aliceDid}/io.atcr.tag/big:build-${i}`, now - i * 60_000]);
  }
  insert('manifests', 'owner_did, repository, digest, media_type, artifact_type, subject, size, hold_did, record_uri, platforms, created_at', manifests);
  insert('tags', 'owner_did, repository, tag, digest, record_uri, updated_at', tags);

  // Pulls on most repositories, stars by the seeded users on some.
  insert('pulls', 'owner_did, repository, count, last_pull', repos.filter((_, i) => i % 4 !== 3).map((r, i) => [r.owner, r.name, (i * 7919) % 5000 + 1, now]));
  const stars = [];
  users.forEach((u, ui) => {
    for (let k = 0; k < 40; k++) {
      const r = repos[(ui * 37 + k * 13) % repos.length];
      stars.push([u.did, r.owner, r.name, `at://${u.did}/io.atcr.sailor.star/${ui}-${k}`, now - k * 1000]);
    }
  });
  insert('stars', 'starrer_did, owner_did, repository, record_uri, created_at', stars.filter((s, i, all) => all.findIndex((o) => o[0] === s[0] && o[2] === s[2] && o[1] === s[1]) === i));
  insert('pulls', 'owner_did, repository, count, last_pull', [[aliceDid, 'big', 12345, now]], 'INSERT OR REPLACE');

  const file = path.join(dir, 'seed.sql');
  fs.writeFileSync(file, statements.join('\n'));
  const started = performance.now();
  run(['d1', 'execute', 'DB', '--local', '--persist-to', stack.appviewStateDir,
    '--config', path.join(ROOT, 'wrangler.toml'), '--yes', '--file', file]);
  return (performance.now() - started) / 1000;
}

/** Rows of `sql` from the appview's local D1. */
function d1(stack, sql) {
  const out = run(['d1', 'execute', 'DB', '--local', '--persist-to', stack.appviewStateDir,
    '--config', path.join(ROOT, 'wrangler.toml'), '--json', '--command', sql]);
  return JSON.parse(out)[0].results;
}

function run(args) {
  const res = spawnSync(NODE22, [WRANGLER, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  if (res.status !== 0) throw new Error(`wrangler ${args.join(' ')} failed (${res.status}):\n${res.stdout}\n${res.stderr}`);
  return res.stdout;
}
