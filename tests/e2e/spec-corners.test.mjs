// Corners of the OCI distribution and image specs, each from the spec's own
// words: sha512 manifests, manifests up to 4 MiB, non-distributable layers,
// blob DELETE, out-of-order chunks and recovery, range requests on blobs,
// and sha512 blobs by every upload method (here on the S3-backed hold;
// hold-r2.test.mjs does the same on R2).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStack } from '../lib/stack.mjs';
import { registryToken, pushBlob, uploadClient, digestOf, checkSha512Uploads } from '../lib/registry.mjs';
import { login, serviceToken, xrpc } from '../lib/atproto.mjs';
import { HoldClient } from '../lib/hold.mjs';

let stack, alice, name, other, bearer, up;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  name = `${alice.handle}/corners`;
  other = `${alice.handle}/corners-other`;
  const token = await registryToken(stack, `repository:${name}:pull,push,delete repository:${other}:pull,push,delete`, alice);
  bearer = { authorization: `Bearer ${token}` };
  up = uploadClient(stack, bearer);
}, { timeout: 900_000 });
after(async () => stack?.stop());

const MB = 1024 * 1024;
const registry = (p) => new URL(p, stack.urls.appview);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function ociError(res, status, code) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.equal(JSON.parse(text).errors[0].code, code, text);
}

const startUpload = (repo = name) => up.start(repo);
const patch = (location, chunk, opts) => up.patch(location, chunk, opts);
const withQuery = (location, query) => up.withQuery(location, query);
const assertPullable = (digest, bytes, repo = name) => up.assertPullable(repo, digest, bytes);

async function putManifest(repo, reference, bytes, mediaType = OCI_MANIFEST) {
  return fetch(registry(`/v2/${repo}/manifests/${reference}`), {
    method: 'PUT', headers: { ...bearer, 'content-type': mediaType }, body: bytes,
  });
}

async function assertManifest(repo, reference, bytes) {
  const res = await fetch(registry(`/v2/${repo}/manifests/${reference}`), { headers: { ...bearer, accept: OCI_MANIFEST } });
  assert.equal(res.status, 200, await res.clone().text());
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), `manifest ${repo}:${reference} byte-identical`);
}

test('sha512 blobs go up by every upload method and come back whole; a mismatching sha512 is refused', { timeout: 300_000 }, async () => {
  // "Registries SHOULD support sha512": monolithic POST, POST then PUT, chunked, streamed, mount.
  await checkSha512Uploads(stack, bearer, name, other);
});

test('a manifest pushed by its sha512 digest is stored and served under it', async () => {
  // "Registries SHOULD support sha512" (image spec, digests).
  const token = bearer.authorization.slice(7);
  const config = Buffer.from('{}');
  const layer = crypto.randomBytes(1500);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, name, config, token), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, name, layer, token), size: layer.length }],
  }));
  const md = digestOf('sha512', manifest);
  const pushed = await putManifest(name, md, manifest);
  assert.equal(pushed.status, 201, await pushed.clone().text());
  assert.equal(pushed.headers.get('docker-content-digest'), md);
  assert.equal(pushed.headers.get('location'), `/v2/${name}/manifests/${md}`);
  await assertManifest(name, md, manifest);
  // The wrong sha512 for these bytes is refused.
  const wrong = digestOf('sha512', Buffer.from('other bytes'));
  await ociError(await putManifest(name, wrong, manifest), 400, 'DIGEST_INVALID');
});

/** A valid image manifest carrying `count` annotations of `size` bytes. */
async function bigManifest(count, size) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
  const layer = crypto.randomBytes(1000);
  const token = bearer.authorization.slice(7);
  const annotations = {};
  for (let i = 0; i < count; i++) annotations[`org.example.note.${i}`] = crypto.randomBytes(size / 2).toString('hex');
  return Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, name, config, token), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, name, layer, token), size: layer.length }],
    annotations,
  }));
}

test('a 3.9 MB manifest is stored whole in the PDS blob and served byte-identical; the record keeps what fits', async () => {
  // "Registries SHOULD accept manifests of at least 4 MiB."
  const manifest = await bigManifest(390, 10_000);
  assert.ok(manifest.length > 3.9e6 && manifest.length <= 4 * MB, `${manifest.length} bytes`);
  const res = await putManifest(name, 'big', manifest);
  assert.equal(res.status, 201, await res.clone().text());
  const digest = digestOf('sha256', manifest);
  assert.equal(res.headers.get('docker-content-digest'), digest);
  await assertManifest(name, 'big', manifest);
  await assertManifest(name, digest, manifest);

  const body = await xrpc(stack.urls.pds, 'com.atproto.repo.listRecords', { params: { repo: alice.did, collection: 'io.atcr.manifest', limit: 100 } });
  const record = body.records.find((r) => r.value.digest === digest);
  assert.ok(record, 'manifest record in the PDS');
  assert.equal(record.value.annotations, undefined, 'annotations left to the blob');
  assert.equal(record.value.layers.length, 1);
  assert.equal(record.value.manifestBlob.size, manifest.length);

  // Over 4 MiB: 413 SIZE_INVALID, nothing written.
  const tooBig = await bigManifest(430, 10_000);
  assert.ok(tooBig.length > 4 * MB);
  await ociError(await putManifest(name, 'too-big', tooBig), 413, 'SIZE_INVALID');
  await ociError(await fetch(registry(`/v2/${name}/manifests/too-big`), { headers: bearer }), 404, 'MANIFEST_UNKNOWN');
});

test('layers that are non-distributable or name urls need not be uploaded, and come back byte-identical', async () => {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'windows' }));
  const local = crypto.randomBytes(500);
  const token = bearer.authorization.slice(7);
  const never = () => `sha256:${crypto.randomBytes(32).toString('hex')}`;
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, name, config, token), size: config.length },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', digest: never(), size: 123456, urls: ['https://example.com/base.tar.gz'] },
      { mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar', digest: never(), size: 42 },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: never(), size: 77, urls: ['https://mirror.example.com/l.tgz'] },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, name, local, token), size: local.length },
    ],
  }));
  const res = await putManifest(name, 'foreign', manifest);
  assert.equal(res.status, 201, await res.clone().text());
  await assertManifest(name, 'foreign', manifest);

  // An ordinary layer that was never uploaded is still refused.
  const missing = JSON.parse(manifest);
  missing.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: never(), size: 5 });
  await ociError(await putManifest(name, 'missing', Buffer.from(JSON.stringify(missing))), 404, 'MANIFEST_BLOB_UNKNOWN');
});

test('blob DELETE unlinks the blob from the repository (202), even while a manifest uses it; the bytes stay for other repositories until garbage collection', async () => {
  const token = bearer.authorization.slice(7);
  const used = crypto.randomBytes(700);
  const usedDigest = await pushBlob(stack, name, used, token);
  const config = Buffer.from('{"os":"linux","architecture":"arm64"}');
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, other, config, token), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, other, used, token), size: used.length }],
  }));
  assert.equal((await putManifest(other, 'uses-it', manifest)).status, 201);

  const del = await fetch(registry(`/v2/${name}/blobs/${usedDigest}`), { method: 'DELETE', headers: bearer });
  assert.equal(del.status, 202, await del.clone().text());
  await ociError(await fetch(registry(`/v2/${name}/blobs/${usedDigest}`), { method: 'GET', headers: bearer, redirect: 'manual' }), 404, 'BLOB_UNKNOWN');
  const head = await fetch(registry(`/v2/${name}/blobs/${usedDigest}`), { method: 'HEAD', headers: bearer });
  assert.equal(head.status, 404);
  // Deleting it again: it is unknown here now.
  await ociError(await fetch(registry(`/v2/${name}/blobs/${usedDigest}`), { method: 'DELETE', headers: bearer }), 404, 'BLOB_UNKNOWN');
  // A manifest pushed here may not name it any more ...
  const here = Buffer.from(manifest.toString());
  await ociError(await putManifest(name, 'uses-deleted', here), 404, 'MANIFEST_BLOB_UNKNOWN');
  // ... but the other repository's manifest keeps its bytes.
  await assertPullable(usedDigest, used, other);
  // Pushing it again brings it back.
  await pushBlob(stack, name, used, token);
  await assertPullable(usedDigest, used);

  // A blob no manifest uses leaves the hold at its next garbage collection.
  const unused = crypto.randomBytes(300);
  const unusedDigest = await pushBlob(stack, name, unused, token);
  await pushBlob(stack, other, unused, token);
  const gone = await fetch(registry(`/v2/${name}/blobs/${unusedDigest}`), { method: 'DELETE', headers: bearer });
  assert.equal(gone.status, 202, await gone.clone().text());
  const headElsewhere = () => fetch(registry(`/v2/${other}/blobs/${unusedDigest}`), { method: 'HEAD', headers: bearer });
  assert.equal((await headElsewhere()).status, 200, 'the bytes wait for garbage collection');
  const GC = 'io.atcr.hold.collectGarbage';
  const jwt = await login(stack.urls.pds, alice);
  const collected = await new HoldClient(stack.urls.hold).call(GC, {
    token: await serviceToken(stack.urls.pds, jwt, stack.holdDid, GC), body: { dryRun: false, graceSeconds: 0 },
  });
  assert.equal(collected.status, 200, JSON.stringify(collected.body));
  const removed = collected.body.removed.map((g) => g.digest);
  assert.ok(removed.includes(unusedDigest), JSON.stringify(removed));
  assert.ok(!removed.includes(usedDigest), 'a blob a manifest names stays');
  assert.equal((await headElsewhere()).status, 404, 'the bytes left the hold');
});

test('an out-of-order chunk is refused with 416, and GET of the upload URL tells where to resume', async () => {
  const blob = crypto.randomBytes(3 * 5 * MB - 5);
  const digest = digestOf('sha256', blob);
  const chunk = 5 * MB;
  let location = await startUpload();
  // Skipping ahead before any byte arrived.
  await ociError(await patch(location, blob.subarray(chunk, 2 * chunk), { offset: chunk }), 416, 'BLOB_UPLOAD_INVALID');
  let status = await fetch(registry(location), { headers: bearer });
  assert.equal(status.status, 204, await status.clone().text());
  assert.equal(status.headers.get('range'), '0-0');
  location = status.headers.get('location');

  const first = await patch(location, blob.subarray(0, chunk));
  assert.equal(first.status, 202, await first.clone().text());
  location = first.headers.get('location');
  // Back to the beginning, then skipping ahead: both 416, nothing appended.
  await ociError(await patch(location, blob.subarray(0, chunk), { offset: 0 }), 416, 'BLOB_UPLOAD_INVALID');
  await ociError(await patch(location, blob.subarray(2 * chunk), { offset: 2 * chunk }), 416, 'BLOB_UPLOAD_INVALID');
  status = await fetch(registry(location), { headers: bearer });
  assert.equal(status.status, 204, await status.clone().text());
  assert.equal(status.headers.get('range'), `0-${chunk - 1}`);
  location = status.headers.get('location');

  const second = await patch(location, blob.subarray(chunk, 2 * chunk), { offset: chunk });
  assert.equal(second.status, 202, await second.clone().text());
  // The last chunk out of order on the closing PUT: 416 too.
  const badPut = await fetch(withQuery(second.headers.get('location'), `digest=${digest}`), {
    method: 'PUT', headers: { ...bearer, 'content-type': 'application/octet-stream', 'content-range': `0-${blob.length - 2 * chunk - 1}` }, body: blob.subarray(2 * chunk),
  });
  await ociError(badPut, 416, 'BLOB_UPLOAD_INVALID');
  const done = await fetch(withQuery(second.headers.get('location'), `digest=${digest}`), {
    method: 'PUT', headers: { ...bearer, 'content-type': 'application/octet-stream', 'content-range': `${2 * chunk}-${blob.length - 1}` }, body: blob.subarray(2 * chunk),
  });
  assert.equal(done.status, 201, await done.clone().text());
  await assertPullable(digest, blob);
});

test('range requests: 206 with Content-Range for satisfiable ranges, 416 for the rest, never storage\'s own error', async () => {
  const blob = crypto.randomBytes(2000);
  const digest = await pushBlob(stack, name, blob, bearer.authorization.slice(7));
  const ranged = async (range) => {
    const res = await fetch(registry(`/v2/${name}/blobs/${digest}`), { headers: { ...bearer, range } });
    return { status: res.status, contentRange: res.headers.get('content-range'), body: Buffer.from(await res.arrayBuffer()) };
  };
  for (const [range, first, last] of [['bytes=500-1499', 500, 1499], ['bytes=500-', 500, 1999], ['bytes=-500', 1500, 1999], ['bytes=1500-5000', 1500, 1999]]) {
    const r = await ranged(range);
    assert.equal(r.status, 206, `${range}: ${r.body}`);
    assert.equal(r.contentRange, `bytes ${first}-${last}/2000`, range);
    assert.ok(r.body.equals(blob.subarray(first, last + 1)), `${range} bytes`);
  }
  for (const range of ['bytes=500-0', 'bytes=5000-10000', 'bytes=0-1,5-6', 'items=0-5']) {
    const res = await fetch(registry(`/v2/${name}/blobs/${digest}`), { headers: { ...bearer, range }, redirect: 'manual' });
    assert.equal(res.status, 416, range);
    assert.equal(res.headers.get('content-range'), 'bytes */2000', range);
    assert.match(res.headers.get('content-type'), /json/, `${range}: an OCI error, not storage XML`);
  }
});

test('URLs and headers far beyond any registry request are refused with 414 and 431', async () => {
  const longName = `${alice.handle}/${'a'.repeat(9000)}`;
  const url = await fetch(registry(`/v2/${longName}/tags/list`), { headers: bearer });
  await ociError(url, 414, 'UNSUPPORTED');
  const headers = await fetch(registry('/v2/'), { headers: { ...bearer, 'x-padding': 'p'.repeat(40 * 1024) } });
  await ociError(headers, 431, 'UNSUPPORTED');
  // Ordinary requests are untouched.
  assert.equal((await fetch(registry('/v2/'), { headers: bearer })).status, 200);
});

test('a PATCH whose body ends before its Content-Length appends nothing; the upload resumes from where it stood', async () => {
  const net = await import('node:net');
  const blob = crypto.randomBytes(6 * MB);
  const digest = digestOf('sha256', blob);
  const location = await startUpload();
  const { hostname, port } = new URL(stack.urls.appview);
  // Raw HTTP: declare 6 MiB, send 1 MiB, then hang up.
  const answer = await new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write([
        `PATCH ${location} HTTP/1.1`, `Host: ${hostname}:${port}`, `Authorization: ${bearer.authorization}`,
        'Content-Type: application/octet-stream', `Content-Length: ${blob.length}`, `Content-Range: 0-${blob.length - 1}`, '', '',
      ].join('\r\n'));
      socket.write(blob.subarray(0, MB), () => socket.end());
    });
    let text = '';
    socket.on('data', (d) => { text += d; });
    socket.on('close', () => resolve(text));
    socket.on('error', () => resolve(text));
  });
  // Whatever the connection said (if anything), it was not success.
  assert.doesNotMatch(answer.split('\r\n')[0] ?? '', / 202 /, answer.slice(0, 200));
  const status = await fetch(registry(location), { headers: bearer });
  assert.equal(status.status, 204, await status.clone().text());
  assert.equal(status.headers.get('range'), '0-0', 'nothing was appended');
  const resumed = await patch(status.headers.get('location'), blob);
  assert.equal(resumed.status, 202, await resumed.clone().text());
  const done = await fetch(withQuery(resumed.headers.get('location'), `digest=${digest}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201, await done.clone().text());
  await assertPullable(digest, blob);
});
