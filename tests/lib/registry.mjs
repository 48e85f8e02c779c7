// Client side of the registry: its token service, as Docker clients use it,
// and pushes over raw HTTP for tests that need content in place.
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
