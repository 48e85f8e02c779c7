// Faults and races. A service that goes down in the middle of a push or a
// pull gives the client an OCI error with a 5xx status naming what is down,
// quickly, and the same push succeeds once it is back. Many clients at once
// on one repository leave the records consistent: every tag names a manifest
// record that exists, every manifest record names blobs the hold has, and
// every pull gets the bytes pushed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStack } from '../lib/stack.mjs';
import { registryToken, pushBlob, pushImage, digestOf } from '../lib/registry.mjs';
import { listAllRecords } from '../lib/atproto.mjs';

let stack, alice, name, bearer, token;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  name = `${alice.handle}/races`;
  token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  bearer = { authorization: `Bearer ${token}` };
}, { timeout: 900_000 });
after(async () => stack?.stop());

const registry = (p) => new URL(p, stack.urls.appview);

/** Every record of `collection` in alice's repository. */
const records = (collection) => listAllRecords(stack.urls.pds, alice.did, collection);

/** Tag records name manifest records that exist; manifest records name blobs the registry has. */
async function assertConsistent() {
  const manifests = await records('io.atcr.manifest');
  const byUri = new Map(manifests.map((m) => [m.uri, m.value]));
  for (const tag of await records('io.atcr.tag')) {
    assert.ok(byUri.has(tag.value.manifest), `tag ${tag.value.repository}:${tag.value.tag} names ${tag.value.manifest}, which exists`);
  }
  for (const m of manifests.filter((r) => r.value.repository === 'races')) {
    for (const blob of [m.value.config, ...(m.value.layers ?? [])].filter(Boolean)) {
      const head = await fetch(registry(`/v2/${name}/blobs/${blob.digest}`), { method: 'HEAD', headers: bearer });
      assert.equal(head.status, 200, `${m.value.digest} names ${blob.digest}, which the hold has`);
    }
  }
}

test('20 concurrent pushes of different images to one tag: the tag names one of them, and the records stay consistent', { timeout: 300_000 }, async () => {
  const pushed = await Promise.all(Array.from({ length: 20 }, () => pushImage(stack, name, 'contended', token)));
  const res = await fetch(registry(`/v2/${name}/manifests/contended`), { headers: { ...bearer, accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(res.status, 200);
  const served = digestOf('sha256', Buffer.from(await res.arrayBuffer()));
  assert.ok(pushed.some((p) => p.manifest === served), 'the tag names one of the pushed manifests');
  assert.equal(res.headers.get('docker-content-digest'), served);
  // Every one of them stays pullable by digest.
  for (const p of pushed) {
    const byDigest = await fetch(registry(`/v2/${name}/manifests/${p.manifest}`), { method: 'HEAD', headers: bearer });
    assert.equal(byDigest.status, 200, p.manifest);
  }
  const tags = (await records('io.atcr.tag')).filter((t) => t.value.repository === 'races' && t.value.tag === 'contended');
  assert.equal(tags.length, 1, 'one tag record');
  await assertConsistent();
});

test('two concurrent pushes sharing layers both succeed', { timeout: 300_000 }, async () => {
  const shared = crypto.randomBytes(6 * 1024 * 1024);
  const config = (arch) => Buffer.from(JSON.stringify({ architecture: arch, os: 'linux' }));
  const push = async (arch) => {
    const [layer, cfg] = await Promise.all([pushBlob(stack, name, shared, token), pushBlob(stack, name, config(arch), token)]);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: config(arch).length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer, size: shared.length }],
    }));
    const res = await fetch(registry(`/v2/${name}/manifests/${arch}`), {
      method: 'PUT', headers: { ...bearer, 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest,
    });
    assert.equal(res.status, 201, await res.text());
    return layer;
  };
  const [a, b] = await Promise.all([push('amd64'), push('arm64')]);
  assert.equal(a, b);
  const get = await fetch(registry(`/v2/${name}/blobs/${a}`), { headers: bearer, redirect: 'manual' });
  const bytes = Buffer.from(await (await fetch(get.headers.get('location'))).arrayBuffer());
  assert.ok(bytes.equals(shared));
  await assertConsistent();
});

test('200 concurrent pulls of one image all get its bytes', { timeout: 300_000 }, async () => {
  const image = await pushImage(stack, name, 'popular', token);
  const pull = async () => {
    const m = await fetch(registry(`/v2/${name}/manifests/popular`), { headers: { ...bearer, accept: 'application/vnd.oci.image.manifest.v1+json' } });
    if (m.status !== 200) return `manifest ${m.status}`;
    const manifest = JSON.parse(Buffer.from(await m.arrayBuffer()));
    const blob = await fetch(registry(`/v2/${name}/blobs/${manifest.layers[0].digest}`), { headers: bearer, redirect: 'manual' });
    if (blob.status !== 307) return `blob ${blob.status}`;
    const bytes = Buffer.from(await (await fetch(blob.headers.get('location'))).arrayBuffer());
    return digestOf('sha256', bytes) === image.layer ? 'ok' : 'wrong bytes';
  };
  const outcomes = await Promise.all(Array.from({ length: 200 }, pull));
  const failed = outcomes.filter((o) => o !== 'ok');
  assert.deepEqual(failed, [], `${failed.length} of 200 pulls failed`);
});

/** An OCI error with a 5xx status whose message matches `names`, answered within 30 s. */
async function assertFault(request, names) {
  const started = Date.now();
  const res = await request();
  const text = await res.text();
  assert.ok(res.status >= 500 && res.status < 600, `${res.status} ${text}`);
  assert.match(JSON.parse(text).errors[0].message, names, text);
  assert.ok(Date.now() - started < 30_000, `answered after ${Date.now() - started} ms`);
}

test('S3 down mid-push: uploads fail with a 5xx naming storage, nothing becomes visible, and the same push succeeds once S3 is back', { timeout: 300_000 }, async () => {
  const blob = crypto.randomBytes(4096);
  const digest = digestOf('sha256', blob);
  const upload = () => fetch(registry(`/v2/${name}/blobs/uploads/?digest=${digest}`), {
    method: 'POST', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body: blob,
  });
  await stack.stopService('s3s-fs');
  try {
    await assertFault(upload, /storage/i);
    // A pull asks the hold, which asks storage: the same kind of answer.
    await assertFault(() => fetch(registry(`/v2/${name}/blobs/${digest}`), { headers: bearer, redirect: 'manual' }), /storage|hold/i);
  } finally {
    await stack.startService('s3s-fs', `http://127.0.0.1:${stack.ports.s3}/`);
  }
  const missing = await fetch(registry(`/v2/${name}/blobs/${digest}`), { method: 'HEAD', headers: bearer });
  assert.equal(missing.status, 404, 'nothing is visible under the digest');
  const again = await upload();
  assert.equal(again.status, 201, await again.text());
  const get = await fetch(registry(`/v2/${name}/blobs/${digest}`), { headers: bearer, redirect: 'manual' });
  const bytes = Buffer.from(await (await fetch(get.headers.get('location'))).arrayBuffer());
  assert.ok(bytes.equals(blob));
});

test('the hold down mid-pull: blob requests fail with a 5xx naming the hold, manifests still come from the PDS, and pulls work once it is back', { timeout: 300_000 }, async () => {
  const image = await pushImage(stack, name, 'while-hold-down', token);
  await stack.stopService('hold');
  try {
    const manifest = await fetch(registry(`/v2/${name}/manifests/while-hold-down`), { headers: { ...bearer, accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(manifest.status, 200, 'the manifest lives in the PDS');
    await assertFault(() => fetch(registry(`/v2/${name}/blobs/${image.layer}`), { headers: bearer, redirect: 'manual' }), /hold/i);
    // A push needs the hold too: refused the same way, and no record is written.
    const before = (await records('io.atcr.manifest')).length;
    await assertFault(() => fetch(registry(`/v2/${name}/blobs/uploads/`), { method: 'POST', headers: bearer }), /hold/i);
    assert.equal((await records('io.atcr.manifest')).length, before);
  } finally {
    await stack.startService('hold', `${stack.urls.hold}/`);
  }
  const get = await fetch(registry(`/v2/${name}/blobs/${image.layer}`), { headers: bearer, redirect: 'manual' });
  assert.equal(get.status, 307);
  assert.equal(digestOf('sha256', Buffer.from(await (await fetch(get.headers.get('location'))).arrayBuffer())), image.layer);
  await pushImage(stack, name, 'after-hold-back', token);
  await assertConsistent();
});

/** A one-layer manifest over blobs already pushed to `name`. */
async function manifestOver(blobs) {
  const [config, layer] = await Promise.all(blobs.map((b) => pushBlob(stack, name, b, token)));
  return Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: blobs[0].length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer, size: blobs[1].length }],
  }));
}

/**
 * A push whose blobs are in and whose manifest PUT meets `service` down:
 * refused with a 5xx whose message matches `names` (as is each of `alsoDown`'s
 * requests), no tag or manifest record written, and the same PUT succeeds,
 * byte-identical, once the service is back.
 */
async function assertPushSurvives(service, tag, names, alsoDown = []) {
  const manifest = await manifestOver([Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', down: service })), crypto.randomBytes(3000)]);
  const digest = digestOf('sha256', manifest);
  const put = () => fetch(registry(`/v2/${name}/manifests/${tag}`), {
    method: 'PUT', headers: { ...bearer, 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest,
  });
  await stack.stopService(service);
  try {
    await assertFault(put, names);
    for (const request of alsoDown) await assertFault(request, names);
  } finally {
    await stack.startService(service);
  }
  assert.ok(!(await records('io.atcr.tag')).some((t) => t.value.repository === 'races' && t.value.tag === tag), 'no tag record');
  assert.ok(!(await records('io.atcr.manifest')).some((m) => m.value.digest === digest), 'no manifest record');
  const missing = await fetch(registry(`/v2/${name}/manifests/${tag}`), { method: 'HEAD', headers: bearer });
  assert.equal(missing.status, 404);

  const again = await put();
  assert.equal(again.status, 201, await again.text());
  const served = await fetch(registry(`/v2/${name}/manifests/${tag}`), { headers: { ...bearer, accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.ok(Buffer.from(await served.arrayBuffer()).equals(manifest), 'the manifest comes back byte-identical');
  await assertConsistent();
}

test('the PDS down mid-push: the manifest PUT fails with a 5xx naming the PDS, no record or tag appears, and the same push succeeds once it is back', { timeout: 300_000 }, async () => {
  // Reading the repository's tags needs the PDS too.
  await assertPushSurvives('pds', 'while-pds-down', /PDS/, [() => fetch(registry(`/v2/${name}/tags/list`), { headers: bearer })]);
});

test('the PDS down mid-pull: what needs it fails with a 5xx naming the PDS, what was read answers whole, and blobs still come from the hold', { timeout: 300_000 }, async () => {
  const image = await pushImage(stack, name, 'pulled-while-pds-down', token);
  const accept = { ...bearer, accept: 'application/vnd.oci.image.manifest.v1+json' };
  await stack.stopService('pds');
  try {
    // A manifest by digest is either whole (cached) or refused, never partial.
    const byDigest = await fetch(registry(`/v2/${name}/manifests/${image.manifest}`), { headers: accept });
    const body = Buffer.from(await byDigest.arrayBuffer());
    if (byDigest.status === 200) assert.equal(digestOf('sha256', body), image.manifest);
    else assert.match(JSON.parse(body).errors[0].message, /PDS/, `${byDigest.status} ${body}`);
    // A tag never read before must be read from the PDS.
    await assertFault(() => fetch(registry(`/v2/${name}/manifests/never-read-${crypto.randomUUID()}`), { headers: accept }), /PDS/);
    // Blob bytes live in the hold, which answers without the PDS.
    const blob = await fetch(registry(`/v2/${name}/blobs/${image.layer}`), { headers: bearer, redirect: 'manual' });
    assert.equal(blob.status, 307, await blob.text());
    assert.equal(digestOf('sha256', Buffer.from(await (await fetch(blob.headers.get('location'))).arrayBuffer())), image.layer);
  } finally {
    await stack.startService('pds');
  }
  const byTag = await fetch(registry(`/v2/${name}/manifests/pulled-while-pds-down`), { headers: accept });
  assert.equal(byTag.status, 200);
  assert.equal(digestOf('sha256', Buffer.from(await byTag.arrayBuffer())), image.manifest);
});

test('D1 down mid-push: the manifest PUT fails with a 5xx naming the database, nothing is written, and the same push succeeds once it is back', { timeout: 300_000 }, async () => {
  await assertPushSurvives('d1', 'while-d1-down', /database|D1/);
});

test('D1 down mid-pull: manifests still come from the PDS, blob requests fail with a 5xx naming the database, and pulls work once it is back', { timeout: 300_000 }, async () => {
  const image = await pushImage(stack, name, 'pulled-while-d1-down', token);
  const accept = { ...bearer, accept: 'application/vnd.oci.image.manifest.v1+json' };
  await stack.stopService('d1');
  try {
    const byTag = await fetch(registry(`/v2/${name}/manifests/pulled-while-d1-down`), { headers: accept });
    assert.equal(byTag.status, 200, 'the manifest lives in the PDS');
    assert.equal(digestOf('sha256', Buffer.from(await byTag.arrayBuffer())), image.manifest);
    // Whether a blob was deleted from this repository is known only to D1: no answer without it.
    await assertFault(() => fetch(registry(`/v2/${name}/blobs/${image.layer}`), { headers: bearer, redirect: 'manual' }), /database|D1/);
  } finally {
    await stack.startService('d1');
  }
  const blob = await fetch(registry(`/v2/${name}/blobs/${image.layer}`), { headers: bearer, redirect: 'manual' });
  assert.equal(blob.status, 307);
  assert.equal(digestOf('sha256', Buffer.from(await (await fetch(blob.headers.get('location'))).arrayBuffer())), image.layer);
});
