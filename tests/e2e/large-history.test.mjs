// Reads that stay cheap and correct however many records a user has: alice
// is given 100,000 manifest records and 100,000 tag records of other
// repositories (imported into her PDS through its API, as an account
// migration would, not through the appview), and the tag list, referrers and manifest GET of one small repository
// still answer right, each within a budget of subrequests the Workers
// report (ATCR-Subrequests). Cloudflare's Free plan allows 50 per request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStack, queryD1 } from '../lib/stack.mjs';
import { login, putRecord } from '../lib/atproto.mjs';
import { writeRecords } from '../lib/bulk-records.mjs';
import { registryToken, pushBlob, pushImage } from '../lib/registry.mjs';
import { OCI_EMPTY, OCI_MANIFEST } from '../lib/image.mjs';

const HISTORY = Number(process.env.ATCR_E2E_HISTORY ?? 100_000);
const READ_BUDGET = 10;
const PUSH_BUDGET = 20;

let stack, alice, jwt, fresh, image, sbom, small;
const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const bearer = (token) => ({ authorization: `Bearer ${token}` });

/** Another appview on the same network with an empty D1 and cold caches: everything it answers comes from the PDS. */
const freshStack = () => ({ urls: { appview: fresh }, ports: { appview: new URL(fresh).port } });

before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  small = `${alice.handle}/small`;
  const token = await registryToken(stack, `repository:${small}:pull,push`, alice);
  image = await pushImage(stack, small, 'v1', token);
  sbom = await pushReferrer(token, image.manifest, 'application/spdx+json');
  jwt = await login(stack.urls.pds, alice);

  // Other repositories' records on both sides of small's key range, and
  // TID-keyed ones, naming small's image as their subject: none may leak in.
  const now = new Date().toISOString();
  const hex = (i) => i.toString(16).padStart(64, '0');
  const noise = (i) => ['aa-noise', 'zz-noise', 'tid-noise'][i % 3];
  const keyOf = (i, rest) => (i % 3 === 2 ? tidLike(i) : `${noise(i)}:${rest}`);
  const subject = { mediaType: OCI_MANIFEST, digest: image.manifest, size: 1 };
  const started = performance.now();
  await writeRecords(stack.urls.pds, jwt, alice.did, [{
    collection: 'io.atcr.manifest', count: HISTORY,
    keyOf: (i) => keyOf(i, `sha256:${hex(i)}`),
    valueOf: (i) => ({ repository: noise(i), digest: `sha256:${hex(i)}`, mediaType: OCI_MANIFEST, schemaVersion: 2, subject, createdAt: now }),
  }, {
    collection: 'io.atcr.tag', count: HISTORY,
    keyOf: (i) => keyOf(i, `t${i}`),
    valueOf: (i) => ({ repository: noise(i), tag: `t${i}`, manifest: `at://${alice.did}/io.atcr.manifest/x`, createdAt: now }),
  }]);
  process.stderr.write(`wrote ${HISTORY} manifest and ${HISTORY} tag records in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  fresh = await stack.startAppview('fresh-appview');
}, { timeout: 3_600_000 });
after(async () => { await stack?.stop(); });

/** A record key shaped like a TID (13 base32-sortable characters). */
function tidLike(i) {
  const alphabet = '234567abcdefghijklmnopqrstuvwxyz';
  let s = '';
  for (let n = i; s.length < 12; n = Math.floor(n / 32)) s = alphabet[n % 32] + s;
  return `3${s}`;
}

/** Pushes an artifact (e.g. an SBOM) whose subject is `subject`, by digest; resolves to its digest. */
async function pushReferrer(token, subject, artifactType) {
  const empty = Buffer.from('{}');
  const layer = crypto.randomBytes(512);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType,
    config: { mediaType: OCI_EMPTY, digest: await pushBlob(stack, small, empty, token), size: empty.length },
    layers: [{ mediaType: artifactType, digest: await pushBlob(stack, small, layer, token), size: layer.length }],
    subject: { mediaType: OCI_MANIFEST, digest: subject, size: 1 },
  }));
  const digest = sha256(manifest);
  const res = await fetch(new URL(`/v2/${small}/manifests/${digest}`, stack.urls.appview), {
    method: 'PUT', headers: { ...bearer(token), 'content-type': OCI_MANIFEST }, body: manifest,
  });
  assert.equal(res.status, 201, await res.text());
  return digest;
}

/** GET `path` from `appview`; the answer, its body and the subrequests it cost. */
async function read(appview, path, token, accept = OCI_MANIFEST) {
  const res = await fetch(new URL(path, appview), { headers: { ...bearer(token), accept } });
  const body = Buffer.from(await res.arrayBuffer());
  const subrequests = Number(res.headers.get('atcr-subrequests'));
  assert.ok(res.headers.has('atcr-subrequests'), `${path} reports its subrequests`);
  return { res, body, subrequests };
}

async function readBoth(path, check) {
  for (const [label, appview, source] of [['this appview', stack.urls.appview, stack], ['a fresh appview', fresh, freshStack()]]) {
    const token = await registryToken(source, `repository:${small}:pull`);
    const answer = await read(appview, path, token);
    assert.ok(answer.subrequests <= READ_BUDGET, `${label}: ${path} cost ${answer.subrequests} subrequests (budget ${READ_BUDGET})`);
    check(answer, label);
  }
}

test(`tags list of a small repository among ${HISTORY} tag records: right, within ${READ_BUDGET} subrequests, and paginated`, async () => {
  await readBoth(`/v2/${small}/tags/list`, ({ res, body }, label) => {
    assert.equal(res.status, 200, `${label}: ${body}`);
    assert.deepEqual(JSON.parse(body).tags, ['v1'], label);
  });
  const token = await registryToken(stack, `repository:${small}:push,pull`, alice);
  for (const tag of ['v2', 'v3']) {
    const put = await fetch(new URL(`/v2/${small}/manifests/${tag}`, stack.urls.appview), {
      method: 'PUT', headers: { ...bearer(token), 'content-type': OCI_MANIFEST },
      body: (await read(stack.urls.appview, `/v2/${small}/manifests/v1`, token)).body,
    });
    assert.equal(put.status, 201, await put.text());
  }
  const first = await read(fresh, `/v2/${small}/tags/list?n=2`, await registryToken(freshStack(), `repository:${small}:pull`));
  assert.deepEqual(JSON.parse(first.body).tags, ['v1', 'v2']);
  assert.equal(first.res.headers.get('link'), `</v2/${small}/tags/list?n=2&last=v2>; rel="next"`);
  const rest = await read(fresh, `/v2/${small}/tags/list?n=2&last=v2`, await registryToken(freshStack(), `repository:${small}:pull`));
  assert.deepEqual(JSON.parse(rest.body).tags, ['v3']);
  assert.equal(rest.res.headers.get('link'), null);
  const bad = await read(fresh, `/v2/${small}/tags/list?n=lots`, await registryToken(freshStack(), `repository:${small}:pull`));
  assert.equal(bad.res.status, 400);
  assert.equal(JSON.parse(bad.body).errors[0].code, 'PAGINATION_NUMBER_INVALID');
});

test(`referrers among ${HISTORY} manifest records naming the same subject: only the repository's, within ${READ_BUDGET} subrequests`, async () => {
  await readBoth(`/v2/${small}/referrers/${image.manifest}`, ({ res, body }, label) => {
    assert.equal(res.status, 200, `${label}: ${body}`);
    assert.deepEqual(JSON.parse(body).manifests.map((m) => m.digest), [sbom], label);
  });
});

test('manifest GET by digest reads one record by its key, within the budget, even where no index knows it', async () => {
  await readBoth(`/v2/${small}/manifests/${sbom}`, ({ res, body }, label) => {
    assert.equal(res.status, 200, `${label}: ${body}`);
    assert.equal(sha256(body), sbom, label);
  });
  await readBoth(`/v2/${small}/manifests/${sha256(Buffer.from('never pushed'))}`, ({ res, body }, label) => {
    assert.equal(res.status, 404, label);
    assert.equal(JSON.parse(body).errors[0].code, 'MANIFEST_UNKNOWN', label);
  });
});

test('a referrer another client writes into the PDS afterwards is listed and served', async () => {
  // Written as another ATCR appview would: the exact bytes as a blob, the
  // record under the key '<repository>:<digest>'.
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.dev.sigstore.bundle+json',
    config: { mediaType: OCI_EMPTY, digest: sha256(Buffer.from('{}')), size: 2 },
    layers: [],
    subject: { mediaType: OCI_MANIFEST, digest: image.manifest, size: 1 },
  }));
  const digest = sha256(manifest);
  const { blob } = await uploadBlob(manifest);
  await putRecord(stack.urls.pds, jwt, alice.did, 'io.atcr.manifest', `small:${digest}`, {
    repository: 'small', digest, mediaType: OCI_MANIFEST, schemaVersion: 2,
    artifactType: 'application/vnd.dev.sigstore.bundle+json', subject: { mediaType: OCI_MANIFEST, digest: image.manifest, size: 1 },
    manifestBlob: blob, createdAt: new Date().toISOString(),
  });
  await readBoth(`/v2/${small}/referrers/${image.manifest}`, ({ body }, label) => {
    assert.deepEqual(JSON.parse(body).manifests.map((m) => m.digest).sort(), [sbom, digest].sort(), label);
  });
  await readBoth(`/v2/${small}/manifests/${digest}`, ({ res, body }, label) => {
    assert.equal(res.status, 200, label);
    assert.ok(body.equals(manifest), label);
  });
});

test('a manifest record under an older TID key stays readable through the index', async () => {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_EMPTY, digest: sha256(Buffer.from('{}')), size: 2 }, layers: [] }));
  const digest = sha256(manifest);
  const { blob } = await uploadBlob(manifest);
  const rkey = tidLike(7_777_777);
  const written = await putRecord(stack.urls.pds, jwt, alice.did, 'io.atcr.manifest', rkey, {
    repository: 'small', digest, mediaType: OCI_MANIFEST, schemaVersion: 2, manifestBlob: blob, createdAt: new Date().toISOString(),
  });
  // As an earlier version of this appview indexed it when it was pushed.
  queryD1(stack.appviewStateDir, `INSERT INTO manifests (owner_did, repository, digest, media_type, size, record_uri, created_at)
    VALUES ('${alice.did}', 'small', '${digest}', '${OCI_MANIFEST}', ${manifest.length}, '${written.uri}', 0)`);
  const token = await registryToken(stack, `repository:${small}:pull`);
  const { res, body, subrequests } = await read(stack.urls.appview, `/v2/${small}/manifests/${digest}`, token);
  assert.equal(res.status, 200, body.toString());
  assert.ok(body.equals(manifest));
  assert.ok(subrequests <= READ_BUDGET, `${subrequests} subrequests`);
});

test(`a 100-layer image pushes with at most ${PUSH_BUDGET} subrequests for its manifest PUT`, { timeout: 600_000 }, async () => {
  const name = `${alice.handle}/layered`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layers = [];
  for (let i = 0; i < 100; i++) {
    const bytes = crypto.randomBytes(256);
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, name, bytes, token), size: bytes.length });
  }
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, name, config, token), size: config.length },
    layers,
  }));
  const put = await fetch(new URL(`/v2/${name}/manifests/v1`, stack.urls.appview), {
    method: 'PUT', headers: { ...bearer(token), 'content-type': OCI_MANIFEST }, body: manifest,
  });
  assert.equal(put.status, 201, await put.text());
  const cost = Number(put.headers.get('atcr-subrequests'));
  assert.ok(cost <= PUSH_BUDGET, `the manifest PUT cost ${cost} subrequests (budget ${PUSH_BUDGET})`);
  process.stderr.write(`a 100-layer manifest PUT cost ${cost} subrequests\n`);
  const back = await read(fresh, `/v2/${name}/manifests/v1`, await registryToken(freshStack(), `repository:${name}:pull`));
  assert.ok(back.body.equals(manifest));

  // One layer missing: refused with the layer named, nothing written.
  const missing = sha256(crypto.randomBytes(64));
  const broken = Buffer.from(JSON.stringify({ ...JSON.parse(manifest), layers: [...layers.slice(0, 99), { ...layers[0], digest: missing }] }));
  const refused = await fetch(new URL(`/v2/${name}/manifests/v2`, stack.urls.appview), {
    method: 'PUT', headers: { ...bearer(token), 'content-type': OCI_MANIFEST }, body: broken,
  });
  assert.equal(refused.status, 404);
  const error = (await refused.json()).errors[0];
  assert.equal(error.code, 'MANIFEST_BLOB_UNKNOWN');
  assert.match(error.message, new RegExp(missing));
  const tag = await read(stack.urls.appview, `/v2/${name}/manifests/v2`, token);
  assert.equal(tag.res.status, 404);
});

async function uploadBlob(bytes) {
  const res = await fetch(new URL('/xrpc/com.atproto.repo.uploadBlob', stack.urls.pds), {
    method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/octet-stream' }, body: bytes,
  });
  assert.equal(res.status, 200);
  return res.json();
}
