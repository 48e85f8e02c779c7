// Reads of one small repository while its owner's history grows: alice's
// PDS is given 100, then 10,000, then 100,000 manifest records and as many
// tag records of other repositories (imported through the PDS API), and at
// each size the tag list, referrers and manifest GET by digest are timed
// and their subrequests read (ATCR-Subrequests). Flat columns mean the
// cost follows the answer, not the history.
//
// Manifest GETs are asked of a new appview at each size (empty D1, cold
// caches), so its first answer is a real read from the PDS. That appview
// follows a Jetstream and backfills alice on first sight; once her index is
// current (walk done, stream replayed over it, consumer connected) its tag
// list and referrers are read from D1, and are timed as the "index" rows,
// beside the first appview's, which has no Jetstream and reads her PDS.
//
//   ./dev bench history [requests per call, default 50]
import crypto from 'node:crypto';
import { startStack, queryD1 } from '../tests/lib/stack.mjs';
import { startJetstream } from '../tests/lib/jetstream.mjs';
import { login } from '../tests/lib/atproto.mjs';
import { writeRecords } from '../tests/lib/bulk-records.mjs';
import { registryToken, pushBlob, pushImage } from '../tests/lib/registry.mjs';
import { OCI_EMPTY, OCI_MANIFEST } from '../tests/lib/image.mjs';

const requests = Number(process.argv[2] ?? 50);
const SIZES = [100, 10_000, 100_000];

const stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
const jetstream = await startJetstream({ pdsUrl: stack.urls.pds });
try {
  const alice = stack.accounts.alice;
  const small = `${alice.handle}/small`;
  const token = await registryToken(stack, `repository:${small}:pull,push`, alice);
  const image = await pushImage(stack, small, 'v1', token);
  const sbom = await pushSbom(stack, small, token, image.manifest);
  const jwt = await login(stack.urls.pds, alice);

  const rows = [];
  let written = 0;
  for (const size of SIZES) {
    const now = new Date().toISOString();
    const from = written;
    const hex = (i) => (from + i).toString(16).padStart(64, '0');
    const seconds = await writeRecords(stack.urls.pds, jwt, alice.did, [{
      collection: 'io.atcr.manifest', count: size - written,
      keyOf: (i) => `noise:sha256:${hex(i)}`,
      valueOf: (i) => ({ repository: 'noise', digest: `sha256:${hex(i)}`, mediaType: OCI_MANIFEST, schemaVersion: 2, createdAt: now }),
    }, {
      collection: 'io.atcr.tag', count: size - written,
      keyOf: (i) => `noise:t${from + i}`,
      valueOf: (i) => ({ repository: 'noise', tag: `t${from + i}`, manifest: `at://${alice.did}/io.atcr.manifest/noise:sha256:${hex(i)}`, createdAt: now }),
    }]);
    written = size;
    process.stderr.write(`history at ${size} (+${(seconds).toFixed(0)} s to import)\n`);

    const label = `history-${size}`;
    const fresh = await stack.startAppview(label, {
      JETSTREAM_URL: jetstream.url, BACKFILL_PAGES_PER_RUN: '100', BACKFILL_PAUSE_MS: '0',
    });
    await stack.triggerCron(label);
    const freshToken = await registryToken({ urls: { appview: fresh }, ports: { appview: new URL(fresh).port } }, `repository:${small}:pull`);
    const pull = await registryToken(stack, `repository:${small}:pull`);
    const backfillStarted = performance.now();
    const cold = await measure(fresh, `/v2/${small}/manifests/${sbom}`, freshToken, 1);
    rows.push([size, 'manifest GET by digest, cold', ...cold]);
    rows.push([size, 'tags list, PDS', ...await measure(stack.urls.appview, `/v2/${small}/tags/list`, pull, requests)]);
    rows.push([size, 'referrers, PDS', ...await measure(stack.urls.appview, `/v2/${small}/referrers/${image.manifest}`, pull, requests)]);
    const backfilled = await indexCurrent(label, alice.did);
    process.stderr.write(`history at ${size}: ${backfilled.records} records backfilled and replayed over in ${((performance.now() - backfillStarted) / 1000).toFixed(1)} s\n`);
    // Registry tokens last 5 minutes; a backfill of 200,000 records takes longer.
    const indexToken = await registryToken({ urls: { appview: fresh }, ports: { appview: new URL(fresh).port } }, `repository:${small}:pull`);
    // Warm once the backfill that the cold GET started is over (it shares the isolate).
    rows.push([size, 'manifest GET by digest, warm', ...await measure(fresh, `/v2/${small}/manifests/${sbom}`, indexToken, requests)]);
    rows.push([size, 'tags list, index', ...await measure(fresh, `/v2/${small}/tags/list`, indexToken, requests)]);
    rows.push([size, 'referrers, index', ...await measure(fresh, `/v2/${small}/referrers/${image.manifest}`, indexToken, requests)]);
    // The same key-range read the tag list makes, asked of the PDS alone.
    const range = `/xrpc/com.atproto.repo.listRecords?repo=${alice.did}&collection=io.atcr.tag&cursor=small:&reverse=true&limit=100`;
    rows.push([size, 'PDS alone: tag range read', ...await measure(stack.urls.pds, range, null, requests)]);
    for (const r of rows.filter((row) => row[0] === size)) process.stderr.write(`  ${r.join('  ')}\n`);
  }

  console.log(`\none small repository's reads as alice's history grows (records of each kind); ${requests} requests per call, one at a time`);
  console.log('subrequests = fetches the appview made for one request (Workers Free allows 50)');
  console.log('PDS alone = the listRecords page the tag list asks for, timed straight against the PDS');
  console.log("PDS rows: an appview without Jetstream reads alice's records; index rows: one whose index of her is current reads D1\n");
  const fmt = (r) => `${String(r[0]).padStart(8)}  ${r[1].padEnd(30)} ${r[2].padStart(9)} ${r[3].padStart(9)} ${String(r[4]).padStart(12)}`;
  console.log(fmt(['records', 'call', 'p50 ms', 'p90 ms', 'subrequests']));
  for (const r of rows) console.log(fmt(r));
} finally {
  await jetstream.stop();
  await stack.stop();
}

/**
 * Waits until the appview `label` holds `did`'s index current: its walk done
 * and replayed over, and its consumer marked as following the network now
 * (the mark is set by the consumer's periodic check, which the cron pokes).
 */
async function indexCurrent(label, did) {
  const stateDir = stack.stateDirs[label];
  for (let polls = 1; ; polls++) {
    const [row] = queryD1(stateDir, `SELECT state, records, replayed, error FROM backfill_repos WHERE did = '${did}'`);
    if (row?.state === 'failed') throw new Error(`the backfill of ${did} failed: ${row.error}`);
    if (row?.state === 'done' && row.replayed === 1) {
      const [alive] = queryD1(stateDir, `SELECT alive_at FROM jetstream_cursor WHERE consumer = 'jetstream' AND alive_at >= ${Date.now() - 60_000}`);
      if (alive) return row;
      if (polls % 5 === 0) await stack.triggerCron(label);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** `n` GETs of `path`, one at a time: p50 and p90 in ms, and the subrequests of the last. */
async function measure(appview, path, token, n) {
  const times = [];
  let subrequests;
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const headers = token ? { authorization: `Bearer ${token}`, accept: OCI_MANIFEST } : {};
    const res = await fetch(new URL(path, appview), { headers });
    await res.arrayBuffer();
    times.push(performance.now() - started);
    if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
    subrequests = res.headers.get('atcr-subrequests') ?? '-';
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(1);
  return [at(0.5), at(0.9), subrequests];
}

async function pushSbom(stack, name, token, subject) {
  const empty = Buffer.from('{}');
  const layer = crypto.randomBytes(256);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/spdx+json',
    config: { mediaType: OCI_EMPTY, digest: await pushBlob(stack, name, empty, token), size: empty.length },
    layers: [{ mediaType: 'application/spdx+json', digest: await pushBlob(stack, name, layer, token), size: layer.length }],
    subject: { mediaType: OCI_MANIFEST, digest: subject, size: 1 },
  }));
  const digest = `sha256:${crypto.createHash('sha256').update(manifest).digest('hex')}`;
  const res = await fetch(new URL(`/v2/${name}/manifests/${digest}`, stack.urls.appview), {
    method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': OCI_MANIFEST }, body: manifest,
  });
  if (res.status !== 201) throw new Error(`SBOM push: ${res.status} ${await res.text()}`);
  return digest;
}
