// The registry side by side with CNCF distribution (Debian's docker-registry)
// on this machine, in one run, twice over: distribution on its filesystem
// storage (bytes served from its own disk), and distribution on the same S3
// server as the hold (s3s-fs), where it answers a blob GET as ours does, with
// a 307 to a presigned URL. Distribution's S3 driver cannot take a push on
// s3s-fs (it resumes each upload with ListMultipartUploads, which s3s-fs
// answers 501), so the S3 one serves what the filesystem one was pushed,
// copied into its bucket object by object. Measured:
//   - push and pull of an image with a 200 MB layer, with skopeo (the pull
//     once on cold caches, then the median of three more); the push also
//     beside the physical limit: the layer's bytes uploaded straight to
//     the S3 server behind the hold in the parts the appview cuts a PATCH
//     into (16 MiB, one in flight while the next is read);
//   - the same layer's two halves on their own, over raw HTTP: its bytes
//     streamed in one PATCH without a length (as Docker sends a layer)
//     against the parts' upload straight to S3, and the PUT that publishes
//     it (storage assembles the parts; the hold reads them back to check the
//     digest, then copies them under it) against S3 assembling the parts;
//     and the same PATCH into a trivial Worker that reads the body as the
//     appview does and drops it (bench/floor-worker): the fastest a body
//     streams through the runtime and the local edge here;
//   - the reads below and the pull, from both distributions;
//   - manifest GET by tag: requests/s, p50 and p99 (after a warm-up);
//   - GET /v2/ the same way: the floor, what the runtime costs before registry work;
//   - blob GET: time to the first answer (our 307, their bytes or 307; warm median), to
//     the blob's first byte (ours following the 307 to storage) and to the last byte.
//
//   ./dev bench registry [layer MB, default 200] [manifest requests, default 2000]
import { execFile, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, freePort, ROOT } from '../tests/lib/stack.mjs';
import { buildImage } from '../tests/lib/image.mjs';
import { PLAN_BODY_LIMITS } from '../tests/lib/edge.mjs';
import { load as loadUrl } from './lib/load.mjs';
import { copyIntoBucket, directS3Upload } from './lib/s3.mjs';
import { registryToken } from '../tests/lib/registry.mjs';
import { Readable } from 'node:stream';

const layerMb = Number(process.argv[2] ?? 200);
const requests = Number(process.argv[3] ?? 2000);
const CONCURRENCY = 16;
/** The bucket distribution's S3 peer serves from, beside the hold's on the same s3s-fs. */
const S3_PEER_BUCKET = 'distribution';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-bench-registry-'));
// skopeo sends the layer in one PATCH: the edge in front of the appview
// allows it as an Enterprise plan's does (500 MB).
process.stderr.write('building bench/floor-worker ...\n');
execFileSync('bash', [path.join(ROOT, 'scripts', 'build-worker'), 'bench/floor-worker'], { stdio: 'inherit' });
const stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: PLAN_BODY_LIMITS.enterprise });
const distributions = [];
try {
  const fsRoot = path.join(scratch, 'distribution');
  fs.mkdirSync(fsRoot, { recursive: true });
  const distribution = await startDistribution(`filesystem:\n    rootdirectory: ${fsRoot}`);
  distributions.push(distribution);
  const alice = stack.accounts.alice;
  const ours = { label: 'atcr', host: `127.0.0.1:${stack.ports.appview}`, name: `${alice.handle}/bench`, creds: `${alice.handle}:${alice.appPassword}` };
  const theirs = { label: 'distribution', host: distribution.host, name: 'alice/bench' };

  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'hello.txt': 'hi\n' }, { 'big.bin': crypto.randomBytes(layerMb * 1024 * 1024) }] });
  const rows = [];
  const big = image.blobs[2];
  const bigFile = path.join(image.layout, 'blobs', ...big.digest.split(':'));
  const s3Halves = {};
  const s3Push = await directS3Upload(stack, bigFile, big.size, { partMb: 16, parallel: 1, timings: s3Halves });
  // Other bytes than the image's, which skopeo would otherwise find in place.
  const rawFile = path.join(scratch, 'raw-layer');
  const raw = crypto.randomBytes(big.size);
  fs.writeFileSync(rawFile, raw);
  const halves = await streamedUpload(`${alice.handle}/bench-raw`, rawFile, `sha256:${crypto.createHash('sha256').update(raw).digest('hex')}`);
  const floor = await stack.startWorker('floor', path.join(ROOT, 'bench', 'floor-worker', 'wrangler.toml'));
  const drained = await timed(async () => {
    const res = await fetch(`${floor}/drain`, { method: 'PATCH', body: streamOf(rawFile), duplex: 'half' });
    if (res.status !== 202 || Number(await res.text()) !== big.size) throw new Error(`floor drain: ${res.status}`);
  });
  for (const side of [ours, theirs]) {
    side.push = await timed(() => skopeo(['copy', '--dest-tls-verify=false', ...(side.creds ? ['--dest-creds', side.creds] : []), `oci:${image.layout}:v1`, `docker://${side.host}/${side.name}:v1`]));
  }
  // The same repository, served from the S3 server instead of disk.
  await copyIntoBucket(stack, fsRoot, S3_PEER_BUCKET);
  const onS3 = await startDistribution(s3Storage(S3_PEER_BUCKET));
  distributions.push(onS3);
  const theirsS3 = { label: 'distribution-s3', host: onS3.host, name: theirs.name };
  for (const side of [ours, theirs, theirsS3]) {
    // The first pull, then three more: the first meets cold caches (ours:
    // the hold's presigned URLs; theirs: the blob descriptors), the others
    // show a pull of an image already pulled, and the drift of the machine.
    const pulls = [];
    for (let i = 0; i < 4; i++) {
      const out = path.join(scratch, `pull-${side.label}-${i}`);
      pulls.push(await timed(() => skopeo(['copy', '--src-tls-verify=false', `docker://${side.host}/${side.name}:v1`, `oci:${out}:v1`])));
      fs.rmSync(out, { recursive: true, force: true });
    }
    side.pull = pulls[0];
    side.pullAgain = median(pulls.slice(1));
    side.token = side.creds ? await pullToken(side) : null;
    side.manifest = await load(side, `/v2/${side.name}/manifests/v1`);
    side.base = await load(side, '/v2/');
    side.blob = await blobTimes(side, image.blobs[2].digest);
  }
  const ms = (x) => `${x.toFixed(1)} ms`;
  const s = (x) => `${(x / 1000).toFixed(2)} s`;
  // A row of ours against each distribution that has the figure.
  const line = (what, figure, fmt, lowerIsBetter = true) => {
    const a = figure(ours);
    const cells = [theirs, theirsS3].flatMap((side) => {
      const b = figure(side);
      return b === undefined ? ['', ''] : [fmt(b), `${(lowerIsBetter ? a / b : b / a).toFixed(2)}`];
    });
    rows.push([what, fmt(a), ...cells]);
  };
  line(`skopeo push (${layerMb} MB layer)`, (x) => x.push, s);
  line(`skopeo pull (${layerMb} MB layer), first`, (x) => x.pull, s);
  line('  the same pull again (median of 3)', (x) => x.pullAgain, s);
  const mbps = (ms) => big.size / 1024 / 1024 / (ms / 1000);
  rows.push([`push rate vs direct S3 (${(big.size / 1024 / 1024).toFixed(0)} MiB)`, `${mbps(ours.push).toFixed(0)} MiB/s`, `S3 ${mbps(s3Push).toFixed(0)} MiB/s`, (mbps(ours.push) / mbps(s3Push)).toFixed(2)]);
  const rate = (ms) => `${mbps(ms).toFixed(0)} MiB/s`;
  rows.push(['layer stream: PATCH vs S3 parts', rate(halves.patch), `S3 ${rate(s3Halves.parts)}`, (s3Halves.parts / halves.patch).toFixed(2)]);
  rows.push(['  the same PATCH into a trivial Worker', rate(drained), `S3 ${rate(s3Halves.parts)}`, (s3Halves.parts / drained).toFixed(2)]);
  rows.push(['layer publish: PUT vs S3 complete', ms(halves.put), `S3 ${ms(s3Halves.complete)}`, (halves.put / s3Halves.complete).toFixed(2)]);
  line('manifest GET by tag, requests/s', (x) => x.manifest.rps, (x) => x.toFixed(0), false);
  line('manifest GET by tag, p50', (x) => x.manifest.p50, ms);
  line('manifest GET by tag, p99', (x) => x.manifest.p99, ms);
  line('GET /v2/ (the floor), requests/s', (x) => x.base.rps, (x) => x.toFixed(0), false);
  line('GET /v2/ (the floor), p50', (x) => x.base.p50, ms);
  line('blob GET, first answer (warm)', (x) => x.blob.first, ms);
  line('blob GET, first byte (warm, via the 307)', (x) => x.blob.firstByte, ms);
  line(`blob GET, all ${layerMb} MB`, (x) => x.blob.last, ms);
  console.log(`\natcr (wrangler dev, local PDS, s3s-fs) vs CNCF distribution ${distribution.version}, same machine, one run: on its filesystem, and on the same s3s-fs`);
  console.log(`manifest GETs: ${requests} after 100 warm-up, ${CONCURRENCY} at a time; ratio = time atcr / time distribution (for requests/s: distribution / atcr)`);
  console.log('GET /v2/ is the cheapest authenticated request: what the runtime (here wrangler dev\'s proxy and workerd) costs before any registry work');
  console.log('distribution on S3 answers a blob GET with a 307 to a presigned URL, as ours does; it serves the repository the filesystem one was pushed (its S3 driver cannot take a push on s3s-fs)');
  console.log('push rate vs direct S3: the whole skopeo push through the appview against the big layer alone sent straight to S3 (16 MiB parts, one at a time); ratio = atcr / S3');
  console.log('layer stream and publish: the big layer over raw HTTP, one PATCH without a length then the PUT, against the same direct S3 upload\'s parts and its CompleteMultipartUpload; ratios = rate atcr / S3, time atcr / S3\n');
  const widths = [40, 12, 14, 6, 14, 6];
  const fmtRow = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');
  console.log(fmtRow(['', 'atcr', 'distribution', 'ratio', 'dist. on S3', 'ratio']));
  for (const r of rows) console.log(fmtRow(r));
} finally {
  for (const d of distributions) d.stop();
  await stack.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
}

/**
 * Uploads `file` into our `name` over raw HTTP: POST, one PATCH streaming
 * the file without a length, PUT with its digest. Resolves to the PATCH's
 * and the PUT's milliseconds.
 */
async function streamedUpload(name, file, digest) {
  const token = await registryToken(stack, `repository:${name}:pull,push`, stack.accounts.alice);
  const auth = { authorization: `Bearer ${token}` };
  const at = (location) => new URL(location, stack.urls.appview);
  const post = await fetch(at(`/v2/${name}/blobs/uploads/`), { method: 'POST', headers: auth });
  if (post.status !== 202) throw new Error(`upload POST: ${post.status} ${await post.text()}`);
  let t = performance.now();
  const patch = await fetch(at(post.headers.get('location')), {
    method: 'PATCH', headers: { ...auth, 'content-type': 'application/octet-stream' },
    body: streamOf(file), duplex: 'half',
  });
  if (patch.status !== 202) throw new Error(`upload PATCH: ${patch.status} ${await patch.text()}`);
  const patchMs = performance.now() - t;
  const location = patch.headers.get('location');
  t = performance.now();
  const put = await fetch(at(`${location}${location.includes('?') ? '&' : '?'}digest=${digest}`), { method: 'PUT', headers: auth });
  if (put.status !== 201) throw new Error(`upload PUT: ${put.status} ${await put.text()}`);
  return { patch: patchMs, put: performance.now() - t };
}

/** `file` as a request body of unknown length (sent chunked). */
function streamOf(file) {
  return Readable.toWeb(fs.createReadStream(file, { highWaterMark: 1 << 20 }));
}

/** Distribution's `storage:` for the stack's S3 server, `bucket` in it. */
function s3Storage(bucket) {
  const { accessKey, secretKey, region } = stack.s3;
  return `s3:\n    accesskey: ${accessKey}\n    secretkey: ${secretKey}\n    region: ${region}\n`
    + `    regionendpoint: ${stack.urls.s3}\n    bucket: ${bucket}\n    secure: false\n    v4auth: true`;
}

/** Starts docker-registry on a free port with `storage` (YAML under `storage:`). */
async function startDistribution(storage) {
  const port = await freePort();
  const config = path.join(scratch, `distribution-${port}.yml`);
  // The blob descriptor cache is on, as in the package's own config.yml.
  fs.writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  ${storage}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  // The AWS SDK in it refuses to start when AWS_CA_BUNDLE names a bundle
  // its HTTP transport cannot load; the S3 server is plain HTTP.
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore', env });
  const host = `127.0.0.1:${port}`;
  const stop = () => child.kill('SIGTERM');
  for (let i = 0; ; i++) {
    try { if ((await fetch(`http://${host}/v2/`)).status === 200) break; } catch { /* starting */ }
    if (i === 100 || child.exitCode !== null) {
      stop();
      throw new Error(`docker-registry with ${storage.split(':')[0]} storage did not start`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const version = await new Promise((resolve) => execFile('docker-registry', ['--version'], (e, out) => resolve((out || '').trim().split(/\s+/).pop() || '?')));
  return { host, version, stop };
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
