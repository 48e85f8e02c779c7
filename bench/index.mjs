// The index following the network, timed: how many Jetstream events a
// second the appview's consumer applies (bursts applied in one D1 batch),
// and how long a backfill of one account's 1,000 records takes.
//
// Events: `events` records (half io.atcr.manifest, half io.atcr.tag naming
// them, over 10 repositories) are written into bob's PDS with applyWrites
// while the Jetstream test server is paused; the consumer then connects
// from its cursor and gets them all at once, as after an outage. The
// figure is events over the time from its connection to its saved count
// reaching them (saved a second after the last burst at the latest, so
// up to 1 s late).
// Backfill: alice has `records` such records; a second appview with an
// empty D1 reads them through the admin endpoint, at its default pace (100
// records a page, 10 pages a run, 200 ms between runs); timed from the
// request to /health saying done.
//
//   ./dev bench index [events, default 10,000] [records, default 1000]
import crypto from 'node:crypto';
import { startStack } from '../tests/lib/stack.mjs';
import { login, xrpc } from '../tests/lib/atproto.mjs';

const events = Number(process.argv[2] ?? 10_000);
const records = Number(process.argv[3] ?? 1000);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const stack = await startStack({ jetstream: true, log: (m) => process.stderr.write(`${m}\n`) });
try {
  const { alice, bob } = stack.accounts;
  const [aliceJwt, bobJwt] = await Promise.all([login(stack.urls.pds, alice), login(stack.urls.pds, bob)]);
  const health = async (base = stack.urls.appview) => (await fetch(`${base}/health`)).json();
  const until = async (check, what, timeoutMs = 600_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const done = await check();
      if (done) return done;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  await stack.triggerCron();
  await until(() => stack.jetstream.clients() === 1, 'the consumer connects');
  // alice's records, for the backfill; the consumer applies them as they come.
  await write(aliceJwt, alice.did, 0, records);
  await until(async () => (await health()).jetstream?.applied >= records, "alice's records are applied");
  const before = (await health()).jetstream.applied;

  // bob's, while the consumer is cut off: then it gets them all at once.
  stack.jetstream.pause();
  const wrote = performance.now();
  await write(bobJwt, bob.did, 0, events);
  process.stderr.write(`wrote ${events} records in ${((performance.now() - wrote) / 1000).toFixed(1)} s\n`);
  const subscriptions = stack.jetstream.subscriptions.length;
  stack.jetstream.resume();
  await stack.triggerCron();
  await until(() => stack.jetstream.subscriptions.length > subscriptions, 'the consumer connects again');
  const connected = performance.now();
  await until(async () => (await health()).jetstream.applied - before >= events, 'every event is applied');
  const applySeconds = (performance.now() - connected) / 1000;

  const mirror = await stack.startAppview('bench-backfill');
  const started = performance.now();
  const res = await fetch(`${mirror}/admin/backfill`, {
    method: 'POST', headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ did: alice.did }),
  });
  if (res.status !== 202) throw new Error(`admin backfill: ${res.status} ${await res.text()}`);
  const done = await until(async () => {
    const repos = (await health(mirror)).backfill.repos;
    return repos.length && repos.every((r) => r.state !== 'pending') && repos;
  }, 'the backfill ends');
  const backfillSeconds = (performance.now() - started) / 1000;
  const backfilled = done.reduce((n, r) => n + r.records, 0);

  const rows = [
    ['Jetstream events applied (a burst after an outage)', `${events} events in ${applySeconds.toFixed(1)} s`, `${Math.round(events / applySeconds)} events/s`],
    ['backfill of one account (100 a page, 10 pages a run)', `${backfilled} records in ${backfillSeconds.toFixed(1)} s`, `${Math.round(backfilled / backfillSeconds)} records/s`],
  ];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length), ['measure', 'what', 'rate'][i].length));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(['measure', 'what', 'rate']));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
} finally {
  await stack.stop();
}

/** Records `from`..`to` (exclusive): even ones manifests, odd ones tags naming the manifest before them. */
async function write(jwt, did, from, to) {
  const writes = [];
  for (let i = from; i < to; i += 2) {
    const repository = `bench${(i / 2) % 10}`;
    const digest = `sha256:${crypto.createHash('sha256').update(`manifest ${i}`).digest('hex')}`;
    const key = `${repository}:${digest}`;
    const createdAt = new Date().toISOString();
    writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'io.atcr.manifest', rkey: key,
      value: { $type: 'io.atcr.manifest', repository, digest, mediaType: OCI_MANIFEST, schemaVersion: 2, createdAt } });
    if (i + 1 < to) {
      writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'io.atcr.tag', rkey: `${repository}:t${i}`,
        value: { $type: 'io.atcr.tag', repository, tag: `t${i}`, manifest: `at://${did}/io.atcr.manifest/${key}`, createdAt } });
    }
  }
  for (let i = 0; i < writes.length; i += 200) {
    await xrpc(stack.urls.pds, 'com.atproto.repo.applyWrites', { body: { repo: did, writes: writes.slice(i, i + 200) }, token: jwt });
  }
}
