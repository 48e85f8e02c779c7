// The registry side by side with CNCF distribution (Debian's docker-registry,
// filesystem storage) on this machine, in one run:
//   - push and pull of an image with a 200 MB layer, with skopeo; the push
//     also beside the physical limit: the layer's bytes uploaded straight to
//     the S3 server behind the hold in the parts the appview cuts a PATCH
//     into (16 MiB, one in flight while the next is read);
//   - manifest GET by tag: requests/s, p50 and p99 (after a warm-up);
//   - GET /v2/ the same way: the floor, what the runtime costs before registry work;
//   - blob GET: time to the first answer (our 307, their bytes; warm median), to
//     the blob's first byte (ours following the 307 to storage) and to the last byte.
//
//   ./dev bench registry [layer MB, default 200] [manifest requests, default 2000]
import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, freePort } from '../tests/lib/stack.mjs';
import { buildImage } from '../tests/lib/image.mjs';
import { PLAN_BODY_LIMITS } from '../tests/lib/edge.mjs';
import { load as loadUrl } from './lib/load.mjs';
import { directS3Upload } from './lib/s3.mjs';

const layerMb = Number(process.argv[2] ?? 200);
const requests = Number(process.argv[3] ?? 2000);
const CONCURRENCY = 16;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-bench-registry-'));
// skopeo sends the layer in one PATCH: the edge in front of the appview
// allows it as an Enterprise plan's does (500 MB).
const stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: PLAN_BODY_LIMITS.enterprise });
let distribution;
try {
  distribution = await startDistribution();
  const alice = stack.accounts.alice;
  const ours = { label: 'atcr', host: `127.0.0.1:${stack.ports.appview}`, name: `${alice.handle}/bench`, creds: `${alice.handle}:${alice.appPassword}` };
  const theirs = { label: 'distribution', host: distribution.host, name: 'alice/bench' };

  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'hello.txt': 'hi\n' }, { 'big.bin': crypto.randomBytes(layerMb * 1024 * 1024) }] });
  const rows = [];
  const big = image.blobs[2];
  const bigFile = path.join(image.layout, 'blobs', ...big.digest.split(':'));
  const s3Push = await directS3Upload(stack, bigFile, big.size, { partMb: 16, parallel: 1 });
  for (const side of [ours, theirs]) {
    side.push = await timed(() => skopeo(['copy', '--dest-tls-verify=false', ...(side.creds ? ['--dest-creds', side.creds] : []), `oci:${image.layout}:v1`, `docker://${side.host}/${side.name}:v1`]));
    const out = path.join(scratch, `pull-${side.label}`);
    side.pull = await timed(() => skopeo(['copy', '--src-tls-verify=false', `docker://${side.host}/${side.name}:v1`, `oci:${out}:v1`]));
    side.token = side.creds ? await pullToken(side) : null;
    side.manifest = await load(side, `/v2/${side.name}/manifests/v1`);
    side.base = await load(side, '/v2/');
    side.blob = await blobTimes(side, image.blobs[2].digest);
  }
  const ms = (x) => `${x.toFixed(1)} ms`;
  const s = (x) => `${(x / 1000).toFixed(2)} s`;
  const line = (what, a, b, fmt, lowerIsBetter = true) =>
    rows.push([what, fmt(a), fmt(b), `${(lowerIsBetter ? a / b : b / a).toFixed(2)}`]);
  line(`skopeo push (${layerMb} MB layer)`, ours.push, theirs.push, s);
  line(`skopeo pull (${layerMb} MB layer)`, ours.pull, theirs.pull, s);
  const mbps = (ms) => big.size / 1024 / 1024 / (ms / 1000);
  rows.push([`push rate vs direct S3 (${(big.size / 1024 / 1024).toFixed(0)} MiB)`, `${mbps(ours.push).toFixed(0)} MiB/s`, `S3 ${mbps(s3Push).toFixed(0)} MiB/s`, (mbps(ours.push) / mbps(s3Push)).toFixed(2)]);
  line('manifest GET by tag, requests/s', ours.manifest.rps, theirs.manifest.rps, (x) => x.toFixed(0), false);
  line('manifest GET by tag, p50', ours.manifest.p50, theirs.manifest.p50, ms);
  line('manifest GET by tag, p99', ours.manifest.p99, theirs.manifest.p99, ms);
  line('GET /v2/ (the floor), requests/s', ours.base.rps, theirs.base.rps, (x) => x.toFixed(0), false);
  line('GET /v2/ (the floor), p50', ours.base.p50, theirs.base.p50, ms);
  line('blob GET, first answer (warm)', ours.blob.first, theirs.blob.first, ms);
  line('blob GET, first byte (warm, via the 307)', ours.blob.firstByte, theirs.blob.firstByte, ms);
  line(`blob GET, all ${layerMb} MB`, ours.blob.last, theirs.blob.last, ms);
  console.log(`\natcr (wrangler dev, local PDS, s3s-fs) vs CNCF distribution ${distribution.version} (filesystem), same machine, one run`);
  console.log(`manifest GETs: ${requests} after 100 warm-up, ${CONCURRENCY} at a time; ratio = time atcr / time distribution (for requests/s: distribution / atcr)`);
  console.log('GET /v2/ is the cheapest authenticated request: what the runtime (here wrangler dev\'s proxy and workerd) costs before any registry work');
  console.log('push rate vs direct S3: the whole skopeo push through the appview against the big layer alone sent straight to S3 (16 MiB parts, one at a time); ratio = atcr / S3\n');
  const widths = [34, 14, 14, 8];
  const fmtRow = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');
  console.log(fmtRow(['', 'atcr', 'distribution', 'ratio']));
  for (const r of rows) console.log(fmtRow(r));
} finally {
  distribution?.stop();
  await stack.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
}

async function startDistribution() {
  const port = await freePort();
  const dir = path.join(scratch, 'distribution');
  fs.mkdirSync(dir, { recursive: true });
  const config = path.join(scratch, 'distribution.yml');
  fs.writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`http://${host}/v2/`)).status === 200) break; } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  const version = await new Promise((resolve) => execFile('docker-registry', ['--version'], (e, out) => resolve((out || '').trim().split(/\s+/).pop() || '?')));
  return { host, version, stop: () => child.kill('SIGTERM') };
}

function skopeo(args) {
  return new Promise((resolve, reject) => {
    execFile('skopeo', args, { env: { ...process.env, HOME: scratch }, maxBuffer: 1 << 26 }, (err, _out, stderr) => (err ? reject(new Error(stderr)) : resolve()));
  });
}

async function timed(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function pullToken(side) {
  const url = new URL(`http://${side.host}/auth/token`);
  url.searchParams.set('service', side.host);
  url.searchParams.set('scope', `repository:${side.name}:pull`);
  return (await (await fetch(url)).json()).token;
}

function headers(side) {
  return {
    accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json',
    ...(side.token ? { authorization: `Bearer ${side.token}` } : {}),
  };
}

/** `requests` GETs of `path`, CONCURRENCY at a time, after a warm-up. */
function load(side, path) {
  return loadUrl(`http://${side.host}${path}`, { headers: headers(side), requests, concurrency: CONCURRENCY });
}

function median(xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

async function blobTimes(side, digest) {
  const url = `http://${side.host}/v2/${side.name}/blobs/${digest}`;
  /** The blob's bytes as a response: ours after following the 307 to storage. */
  const open = async (res) => {
    if (res.status !== 307) return res;
    await res.arrayBuffer();
    return fetch(res.headers.get('location'));
  };
  // Warm medians (the first request warms caches) of the time to the first
  // answer (our 307, their 200) and to the blob's first byte (for us,
  // after following the 307 to storage).
  const firsts = [];
  const firstBytes = [];
  for (let i = 0; i < 21; i++) {
    const t = performance.now();
    const res = await fetch(url, { headers: headers(side), redirect: 'manual' });
    firsts.push(performance.now() - t);
    const reader = (await open(res)).body.getReader();
    await reader.read();
    firstBytes.push(performance.now() - t);
    await reader.cancel();
  }
  const t = performance.now();
  const body = await open(await fetch(url, { headers: headers(side), redirect: 'manual' }));
  for await (const _chunk of body.body) { /* drain */ }
  return { first: median(firsts.slice(1)), firstByte: median(firstBytes.slice(1)), last: performance.now() - t };
}
