// Client side of the registry: its token service, as Docker clients use it,
// and pushes over raw HTTP for tests that need content in place.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

/** A registry token for `scope` (space-separated scopes allowed), as `account` or anonymously. */
export async function registryToken(stack, scope, account) {
  const url = new URL('/auth/token', stack.urls.appview);
  url.searchParams.set('service', `127.0.0.1:${stack.ports.appview}`);
  for (const s of scope.split(' ')) url.searchParams.append('scope', s);
  const headers = account ? { authorization: `Basic ${Buffer.from(`${account.handle}:${account.appPassword}`).toString('base64')}` } : {};
  const res = await fetch(url, { headers });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`token for ${scope}: ${res.status} ${JSON.stringify(body)}`);
  return body.token;
}

const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

/** Uploads `bytes` as one monolithic POST; resolves to their digest. */
export async function pushBlob(stack, name, bytes, token) {
  const res = await fetch(new URL(`/v2/${name}/blobs/uploads/?digest=${sha256(bytes)}`, stack.urls.appview), {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: bytes,
  });
  if (res.status !== 201) throw new Error(`blob upload to ${name}: ${res.status} ${await res.text()}`);
  return sha256(bytes);
}

/**
 * A one-layer image (2 KiB of random bytes) pushed over raw HTTP as
 * `name:tag`; resolves to the digests and sizes of its parts.
 */
export async function pushImage(stack, name, tag, token) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = crypto.randomBytes(2048);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, name, config, token), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, name, layer, token), size: layer.length }],
  }));
  const res = await fetch(new URL(`/v2/${name}/manifests/${tag}`, stack.urls.appview), {
    method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest,
  });
  if (res.status !== 201) throw new Error(`manifest PUT ${name}:${tag}: ${res.status} ${await res.text()}`);
  return { config: sha256(config), layer: sha256(layer), manifest: sha256(manifest), size: config.length + layer.length };
}

/**
 * Raw-HTTP blob uploads into `name` with `bearer` headers, as the
 * distribution spec describes them (POST, PATCH with Content-Range, PUT),
 * and a check that a blob comes back whole.
 */
export function uploadClient(stack, bearer) {
  const url = (p) => new URL(p, stack.urls.appview);
  return {
    url,
    /** `location` with `query` appended. */
    withQuery: (location, query) => url(`${location}${location.includes('?') ? '&' : '?'}${query}`),
    async start(name) {
      const res = await fetch(url(`/v2/${name}/blobs/uploads/`), { method: 'POST', headers: bearer });
      if (res.status !== 202) throw new Error(`upload POST to ${name}: ${res.status} ${await res.text()}`);
      return res.headers.get('location');
    },
    patch(location, chunk, { range = true, offset = 0 } = {}) {
      const headers = { ...bearer, 'content-type': 'application/octet-stream' };
      if (range) headers['content-range'] = `${offset}-${offset + chunk.length - 1}`;
      return fetch(url(location), { method: 'PATCH', headers, body: chunk });
    },
    /** HEAD and GET (through the 307) answer for `digest` in `name` with exactly `bytes`. */
    async assertPullable(name, digest, bytes) {
      const head = await fetch(url(`/v2/${name}/blobs/${digest}`), { method: 'HEAD', headers: bearer });
      assert.equal(head.status, 200, `HEAD ${digest} in ${name}`);
      assert.equal(head.headers.get('content-length'), String(bytes.length));
      assert.equal(head.headers.get('docker-content-digest'), digest);
      const get = await fetch(url(`/v2/${name}/blobs/${digest}`), { headers: bearer, redirect: 'manual' });
      assert.equal(get.status, 307);
      const pulled = Buffer.from(await (await fetch(get.headers.get('location'))).arrayBuffer());
      assert.ok(pulled.equals(bytes), `bytes of ${digest}`);
    },
  };
}

/** The `<alg>:<hex>` digest of `bytes`. */
export const digestOf = (alg, bytes) => `${alg}:${crypto.createHash(alg).update(bytes).digest('hex')}`;

/**
 * sha512 through every upload method (monolithic POST, POST then PUT,
 * chunked, streamed, mount) into `name`, then mounted into `other`; a
 * mismatching sha512 is refused. (On s3s-fs this needs a hold whose keys
 * start at the bucket's top, as the local stack's do: s3s-fs names a file
 * after each key, base64-encoded, and a file name holds 255 bytes.)
 */
export async function checkSha512Uploads(stack, bearer, name, other) {
  const up = uploadClient(stack, bearer);
  const MB = 1024 * 1024;
  const sent = [];
  const monolithic = crypto.randomBytes(3000);
  const d1 = digestOf('sha512', monolithic);
  const post = await fetch(up.url(`/v2/${name}/blobs/uploads/?digest=${d1}`), {
    method: 'POST', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body: monolithic,
  });
  assert.equal(post.status, 201, await post.clone().text());
  assert.equal(post.headers.get('docker-content-digest'), d1);
  sent.push([d1, monolithic]);

  const postPut = crypto.randomBytes(4000);
  const d2 = digestOf('sha512', postPut);
  const put = await fetch(up.withQuery(await up.start(name), `digest=${d2}`), {
    method: 'PUT', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body: postPut,
  });
  assert.equal(put.status, 201, await put.clone().text());
  sent.push([d2, postPut]);

  const chunked = crypto.randomBytes(6 * MB + 77);
  const d3 = digestOf('sha512', chunked);
  const first = await up.patch(await up.start(name), chunked.subarray(0, 5 * MB));
  assert.equal(first.status, 202, await first.clone().text());
  const second = await up.patch(first.headers.get('location'), chunked.subarray(5 * MB), { offset: 5 * MB });
  assert.equal(second.status, 202, await second.clone().text());
  const closeChunked = await fetch(up.withQuery(second.headers.get('location'), `digest=${d3}`), { method: 'PUT', headers: bearer });
  assert.equal(closeChunked.status, 201, await closeChunked.clone().text());
  sent.push([d3, chunked]);

  const streamed = crypto.randomBytes(2 * MB + 3);
  const d4 = digestOf('sha512', streamed);
  const body = new ReadableStream({ start(c) { c.enqueue(streamed); c.close(); } });
  const stream = await fetch(up.url(await up.start(name)), {
    method: 'PATCH', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body, duplex: 'half',
  });
  assert.equal(stream.status, 202, await stream.clone().text());
  const closeStream = await fetch(up.withQuery(stream.headers.get('location'), `digest=${d4}`), { method: 'PUT', headers: bearer });
  assert.equal(closeStream.status, 201, await closeStream.clone().text());
  sent.push([d4, streamed]);

  for (const [digest, bytes] of sent) await up.assertPullable(name, digest, bytes);
  const mount = await fetch(up.url(`/v2/${other}/blobs/uploads/?mount=${d1}&from=${name}`), { method: 'POST', headers: bearer });
  assert.equal(mount.status, 201, await mount.clone().text());
  assert.equal(mount.headers.get('docker-content-digest'), d1);
  await up.assertPullable(other, d1, monolithic);

  // A sha512 whose bytes do not match is refused, and nothing is visible under it.
  const wrong = digestOf('sha512', Buffer.from('something else'));
  const refused = await fetch(up.url(`/v2/${name}/blobs/uploads/?digest=${wrong}`), {
    method: 'POST', headers: { ...bearer, 'content-type': 'application/octet-stream' }, body: crypto.randomBytes(100),
  });
  assert.equal(refused.status, 400, await refused.clone().text());
  assert.equal((await refused.json()).errors[0].code, 'DIGEST_INVALID');
  const missing = await fetch(up.url(`/v2/${name}/blobs/${wrong}`), { method: 'HEAD', headers: bearer });
  assert.equal(missing.status, 404);
}
