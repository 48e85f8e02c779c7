// Manifest PUTs that must be refused, each with its OCI error, and nothing
// written to the PDS for them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStack } from '../lib/stack.mjs';
import { xrpc } from '../lib/atproto.mjs';
import { registryToken } from '../lib/registry.mjs';

let stack, alice, name, bearer, config;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  name = `${alice.handle}/refusals`;
  bearer = { authorization: `Bearer ${await registryToken(stack, `repository:${name}:pull,push`, alice)}` };
  // A real config blob, so only the part under test is wrong.
  const bytes = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const digest = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
  const res = await fetch(`${stack.urls.appview}/v2/${name}/blobs/uploads/?digest=${digest}`, { method: 'POST', headers: bearer, body: bytes });
  assert.equal(res.status, 201);
  config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: bytes.length };
}, { timeout: 900_000 });
after(async () => stack?.stop());

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function put(reference, body, contentType = OCI_MANIFEST) {
  const res = await fetch(`${stack.urls.appview}/v2/${name}/manifests/${reference}`, {
    method: 'PUT', headers: { ...bearer, 'content-type': contentType }, body,
  });
  const text = await res.text();
  return { status: res.status, code: text ? JSON.parse(text).errors?.[0]?.code : undefined, message: text && JSON.parse(text).errors?.[0]?.message };
}

const manifestRecords = async () =>
  (await xrpc(stack.urls.pds, 'com.atproto.repo.listRecords', { params: { repo: alice.did, collection: 'io.atcr.manifest' } })).records;

test('a manifest naming a blob that was never pushed is MANIFEST_BLOB_UNKNOWN', async () => {
  const missing = `sha256:${'5'.repeat(64)}`;
  const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: missing, size: 10 }] });
  const res = await put('missing-blob', body);
  assert.equal(res.status, 404);
  assert.equal(res.code, 'MANIFEST_BLOB_UNKNOWN');
  assert.match(res.message, new RegExp(missing));
});

test('malformed JSON, a wrong schema and a mismatched media type are MANIFEST_INVALID', async () => {
  for (const [body, type] of [
    ['{"schemaVersion": 2, "mediaType": ', OCI_MANIFEST],
    [JSON.stringify({ schemaVersion: 1, mediaType: OCI_MANIFEST, config, layers: [] }), OCI_MANIFEST],
    [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] }), 'application/vnd.oci.image.index.v1+json'],
  ]) {
    const res = await put('bad', body, type);
    assert.equal(res.status, 400, body);
    assert.equal(res.code, 'MANIFEST_INVALID', body);
  }
});

test('an oversized manifest is refused with 413 before it is read', async () => {
  const huge = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [], annotations: { pad: 'x'.repeat(5 * 1024 * 1024) } });
  const res = await put('huge', huge);
  assert.equal(res.status, 413);
  assert.equal(res.code, 'SIZE_INVALID');
});

test('a manifest PUT by a digest it does not have is DIGEST_INVALID', async () => {
  const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] });
  const res = await put(`sha256:${'0'.repeat(64)}`, body);
  assert.equal(res.status, 400);
  assert.equal(res.code, 'DIGEST_INVALID');
});

test('none of the refused manifests reached the PDS; a good one does', async () => {
  assert.deepEqual((await manifestRecords()).filter((r) => r.value.repository === 'refusals'), []);
  const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] });
  const res = await put('good', body);
  assert.equal(res.status, 201);
  const records = (await manifestRecords()).filter((r) => r.value.repository === 'refusals');
  assert.equal(records.length, 1);
  const get = await fetch(`${stack.urls.appview}/v2/${name}/manifests/good`, { headers: bearer });
  assert.equal(await get.text(), body);
  assert.equal(get.headers.get('content-length'), String(Buffer.byteLength(body)));
});

test('an unknown tag is MANIFEST_UNKNOWN', async () => {
  const res = await fetch(`${stack.urls.appview}/v2/${name}/manifests/nope`, { headers: bearer });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).errors[0].code, 'MANIFEST_UNKNOWN');
});
