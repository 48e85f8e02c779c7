// The rest of the registry API a Docker Hub user expects: the catalog,
// deleting blobs, and long-lived logins through refresh tokens (the OAuth2
// form of /auth/token that docker and containers/image use).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startStack, queryD1 } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { registryToken, pushBlob as pushRegistryBlob, pushImage as pushRegistryImage } from '../lib/registry.mjs';
import { login, putRecord, xrpc } from '../lib/atproto.mjs';
import { buildImage, OCI_MANIFEST } from '../lib/image.mjs';

let stack, scratch, alice, bob, registry, service;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-api-test-'));
  ({ alice, bob } = stack.accounts);
  service = `127.0.0.1:${stack.ports.appview}`;
  registry = (p) => new URL(p, stack.urls.appview);
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const bearer = (token) => ({ authorization: `Bearer ${token}` });
const pushToken = (name, account = alice) => registryToken(stack, `repository:${name}:pull,push,delete`, account);

const pushBlob = (name, bytes, token) => pushRegistryBlob(stack, name, bytes, token);
const pushImage = (name, tag, token) => pushRegistryImage(stack, name, tag, token);

const run = (cmd, args) => runIn(scratch, cmd, args);

/** POST /auth/token with a form, as docker and containers/image send it. */
async function oauthToken(form) {
  const res = await fetch(registry('/auth/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ service, client_id: 'atcr-tests', ...form }),
  });
  return { status: res.status, body: await res.json() };
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

test('the D1 index follows pushes, tags and pulls (write-through, ready for the web UI)', async () => {
  const name = `${alice.handle}/indexed`;
  const image = await pushImage(name, 'v1', await pushToken(name));
  const rows = (sql) => queryD1(stack.appviewStateDir, sql);
  assert.deepEqual(rows(`SELECT handle FROM users WHERE did = '${alice.did}'`), [{ handle: alice.handle }]);
  assert.equal(rows(`SELECT count(*) AS n FROM repositories WHERE owner_did = '${alice.did}' AND name = 'indexed'`)[0].n, 1);
  const [manifest] = rows(`SELECT digest, media_type, hold_did, record_uri FROM manifests WHERE owner_did = '${alice.did}' AND repository = 'indexed'`);
  assert.equal(manifest.digest, image.manifest);
  assert.equal(manifest.media_type, OCI_MANIFEST);
  assert.equal(manifest.hold_did, stack.holdDid);
  assert.match(manifest.record_uri, new RegExp(`^at://${alice.did}/io.atcr.manifest/`));
  assert.deepEqual(rows(`SELECT tag, digest FROM tags WHERE owner_did = '${alice.did}' AND repository = 'indexed'`), [{ tag: 'v1', digest: image.manifest }]);

  const pull = await registryToken(stack, `repository:${name}:pull`);
  for (let i = 0; i < 2; i++) {
    const res = await fetch(registry(`/v2/${name}/manifests/v1`), { headers: { ...bearer(pull), accept: OCI_MANIFEST } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
  await fetch(registry(`/v2/${name}/manifests/v1`), { method: 'HEAD', headers: bearer(pull) });
  // Pulls are counted after the answer, through the PULLS queue, whose
  // consumer writes a batch at least every 5 s.
  const counted = () => rows(`SELECT count FROM pulls WHERE owner_did = '${alice.did}' AND repository = 'indexed'`)[0]?.count ?? 0;
  const deadline = Date.now() + 60_000;
  while (counted() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  assert.equal(counted(), 2, 'one per GET, none for HEAD');
});

test('the catalog lists repositories by handle, paginated with n/last and a Link header', async () => {
  const names = ['cat-a', 'cat-b', 'cat-c'].map((r) => `${alice.handle}/${r}`);
  for (const name of names) await pushImage(name, 'v1', await pushToken(name));

  const unauthenticated = await fetch(registry('/v2/_catalog'));
  assert.equal(unauthenticated.status, 401);
  assert.match(unauthenticated.headers.get('www-authenticate'), /scope="registry:catalog:\*"/);
  const withoutScope = await fetch(registry('/v2/_catalog'), { headers: bearer(await registryToken(stack, `repository:${names[0]}:pull`)) });
  assert.equal(withoutScope.status, 401, 'a token must carry the catalog scope');

  const token = await registryToken(stack, 'registry:catalog:*'); // anonymous: every repository is public
  const all = await fetch(registry('/v2/_catalog'), { headers: bearer(token) });
  assert.equal(all.status, 200);
  const { repositories } = await all.json();
  for (const name of names) assert.ok(repositories.includes(name), `${name} in ${repositories}`);
  assert.deepEqual(repositories, [...repositories].sort());

  const first = await fetch(registry('/v2/_catalog?n=2'), { headers: bearer(token) });
  assert.equal((await first.json()).repositories.length, 2);
  const link = first.headers.get('link');
  assert.match(link, /^<\/v2\/_catalog\?n=2&last=[^>]+>; rel="next"$/);
  const next = await fetch(registry(link.slice(1, link.indexOf('>'))), { headers: bearer(token) });
  const rest = (await next.json()).repositories;
  assert.deepEqual(rest, repositories.slice(2, 4));

  const bad = await fetch(registry('/v2/_catalog?n=many'), { headers: bearer(token) });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).errors[0].code, 'PAGINATION_NUMBER_INVALID');
});

test('a blob no manifest uses is deleted by its owner; one in use is unlinked from the repository and its bytes kept', async () => {
  const name = `${alice.handle}/deletes`;
  const token = await pushToken(name);
  const image = await pushImage(name, 'v1', token);

  const loose = await pushBlob(name, crypto.randomBytes(4096), token);
  const del = await fetch(registry(`/v2/${name}/blobs/${loose}`), { method: 'DELETE', headers: bearer(token) });
  assert.equal(del.status, 202, await del.text());
  const gone = await fetch(registry(`/v2/${name}/blobs/${loose}`), { method: 'HEAD', headers: bearer(token) });
  assert.equal(gone.status, 404);
  const again = await fetch(registry(`/v2/${name}/blobs/${loose}`), { method: 'DELETE', headers: bearer(token) });
  assert.equal(again.status, 404);
  assert.equal((await again.json()).errors[0].code, 'BLOB_UNKNOWN');

  // In use by v1: 202 too, and gone from this repository's view ...
  const used = await fetch(registry(`/v2/${name}/blobs/${image.layer}`), { method: 'DELETE', headers: bearer(token) });
  assert.equal(used.status, 202, await used.text());
  const unlinked = await fetch(registry(`/v2/${name}/blobs/${image.layer}`), { method: 'HEAD', headers: bearer(token) });
  assert.equal(unlinked.status, 404);
  // ... but its bytes stay in the hold for the manifest that names them: another repository mounts them.
  const other = `${alice.handle}/deletes-kept`;
  const otherToken = await pushToken(other);
  const mount = await fetch(registry(`/v2/${other}/blobs/uploads/?mount=${image.layer}&from=${name}`), { method: 'POST', headers: bearer(otherToken) });
  assert.equal(mount.status, 201, await mount.text());

  const bobs = await registryToken(stack, `repository:${name}:pull,delete`, bob);
  assert.deepEqual(claimsOf(bobs).access[0].actions, ['pull'], 'bob is not granted delete on alice\'s repository');
  const refused = await fetch(registry(`/v2/${name}/blobs/${image.config}`), { method: 'DELETE', headers: bearer(bobs) });
  assert.equal(refused.status, 403);
  assert.equal((await refused.json()).errors[0].code, 'DENIED');
});

test('offline logins: a refresh token buys access tokens until its sign-in ends', { timeout: 300_000 }, async () => {
  const name = `${alice.handle}/refreshed`;
  // GET with offline_token=true (Docker token spec).
  const url = registry('/auth/token');
  url.searchParams.set('service', service);
  url.searchParams.set('offline_token', 'true');
  const basic = `Basic ${Buffer.from(`${alice.handle}:${alice.appPassword}`).toString('base64')}`;
  const offline = await (await fetch(url, { headers: { authorization: basic } })).json();
  assert.ok(offline.refresh_token, JSON.stringify(offline));

  // The refresh_token grant: no password, full push rights for the owner.
  const refreshed = await oauthToken({ grant_type: 'refresh_token', refresh_token: offline.refresh_token, scope: `repository:${name}:pull,push` });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  assert.equal(claimsOf(refreshed.body.access_token).sub, alice.did);
  assert.deepEqual(claimsOf(refreshed.body.access_token).access[0].actions, ['pull', 'push']);
  assert.equal(refreshed.body.scope, `repository:${name}:pull,push`);
  await pushImage(name, 'v1', refreshed.body.access_token);

  const tampered = offline.refresh_token.slice(0, -2) + (offline.refresh_token.endsWith('AA') ? 'BB' : 'AA');
  const forged = await oauthToken({ grant_type: 'refresh_token', refresh_token: tampered, scope: `repository:${name}:push` });
  assert.equal(forged.status, 401);
  assert.equal(forged.body.errors[0].code, 'UNAUTHORIZED');

  // The password grant with access_type=offline, as `docker login` sends it.
  const password = await oauthToken({ grant_type: 'password', username: alice.handle, password: alice.appPassword, access_type: 'offline' });
  assert.equal(password.status, 200, JSON.stringify(password.body));
  assert.ok(password.body.refresh_token);
  const wrong = await oauthToken({ grant_type: 'password', username: alice.handle, password: 'not-her-password' });
  assert.equal(wrong.status, 401);

  // A real client holding only the refresh token (auth.json "identitytoken") pushes.
  const image = buildImage(scratch, { tag: 'v2', layers: [{ 'hello.txt': 'refreshed\n' }] });
  const authfile = path.join(scratch, 'auth.json');
  // As docker writes it: "auth" holds only the user name; the secret is the identity token.
  const auth = Buffer.from(`${alice.handle}:`).toString('base64');
  fs.writeFileSync(authfile, JSON.stringify({ auths: { [service]: { auth, identitytoken: password.body.refresh_token } } }));
  const push = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-authfile', authfile, `oci:${image.layout}:v2`, `docker://${service}/${name}:v2`]);
  assert.equal(push.code, 0, push.stderr);
  const pulled = await fetch(registry(`/v2/${name}/manifests/v2`), { headers: { ...bearer(await registryToken(stack, `repository:${name}:pull`)), accept: OCI_MANIFEST } });
  assert.equal(sha256(Buffer.from(await pulled.arrayBuffer())), image.digest);

  // Signing in with another app password replaces the session: old refresh tokens end with it.
  const session = await login(stack.urls.pds, alice);
  const other = await xrpc(stack.urls.pds, 'com.atproto.server.createAppPassword', { body: { name: `second-${Date.now()}` }, token: session });
  await registryToken(stack, `repository:${name}:pull`, { handle: alice.handle, appPassword: other.password });
  const retired = await oauthToken({ grant_type: 'refresh_token', refresh_token: password.body.refresh_token, scope: `repository:${name}:push` });
  assert.equal(retired.status, 401);
  assert.match(retired.body.errors[0].message, /sign in again/);
});

test('pulls follow the manifest\'s hold after the owner moves to another hold', { timeout: 300_000 }, async () => {
  const name = `${alice.handle}/moved`;
  const image = await pushImage(name, 'v1', await pushToken(name));
  // Alice points her profile at another hold (one that is not even up).
  const session = await login(stack.urls.pds, alice);
  const profile = (defaultHold) => putRecord(stack.urls.pds, session, alice.did, 'io.atcr.sailor.profile', 'self', {
    defaultHold, createdAt: new Date().toISOString(), updatedAt: new Date().toISOString(),
  });
  await profile('did:web:localhost%3A9');
  try {
    // A fresh appview (no cached profile) still finds the blobs where the manifest says.
    const second = await stack.startAppview('appview-moved');
    const token = await registryToken({ urls: { appview: second }, ports: { appview: new URL(second).port } }, `repository:${name}:pull`);
    const get = await fetch(new URL(`/v2/${name}/blobs/${image.layer}`, second), { headers: bearer(token), redirect: 'manual' });
    assert.equal(get.status, 307, await get.text());
    const bytes = Buffer.from(await (await fetch(get.headers.get('location'))).arrayBuffer());
    assert.equal(sha256(bytes), image.layer);
    const head = await fetch(new URL(`/v2/${name}/blobs/${image.config}`, second), { method: 'HEAD', headers: bearer(token) });
    assert.equal(head.status, 200);
    const missing = await fetch(new URL(`/v2/${name}/blobs/sha256:${'0'.repeat(64)}`, second), { method: 'HEAD', headers: bearer(token) });
    assert.equal(missing.status, 404, 'a blob no hold has is BLOB_UNKNOWN');
  } finally {
    await profile(stack.holdDid);
  }
});

test('handles resolve through DNS TXT records (DNS over HTTPS) when no XRPC resolver is set', { timeout: 300_000 }, async () => {
  const name = `${alice.handle}/dns`;
  await pushImage(name, 'v1', await pushToken(name));
  // A DNS-over-HTTPS server (JSON API) that knows alice's TXT record only.
  const asked = [];
  const doh = http.createServer((req, res) => {
    const query = new URL(req.url, 'http://x').searchParams;
    asked.push(`${query.get('name')} ${query.get('type')} ${req.headers.accept}`);
    const answer = query.get('name') === `_atproto.${alice.handle}`
      ? { Status: 0, Answer: [{ name: `_atproto.${alice.handle}.`, type: 16, TTL: 300, data: `"did=${alice.did}"` }] }
      : { Status: 3 };
    res.writeHead(200, { 'content-type': 'application/dns-json' }).end(JSON.stringify(answer));
  });
  await new Promise((r) => doh.listen(0, '127.0.0.1', r));
  try {
    const second = await stack.startAppview('appview-dns', {
      DNS_RESOLVER_URL: `http://127.0.0.1:${doh.address().port}/dns-query`,
      HANDLE_RESOLVER_URL: '',
    });
    const view = { urls: { appview: second }, ports: { appview: new URL(second).port } };
    const token = await registryToken(view, `repository:${name}:pull`);
    const tags = await fetch(new URL(`/v2/${name}/tags/list`, second), { headers: bearer(token) });
    assert.equal(tags.status, 200, await tags.clone().text());
    assert.deepEqual((await tags.json()).tags, ['v1']);
    assert.ok(asked.includes(`_atproto.${alice.handle} TXT application/dns-json`), asked.join('\n'));

    const bobs = `${bob.handle}/anything`;
    const unknown = await fetch(new URL(`/v2/${bobs}/tags/list`, second), { headers: bearer(await registryToken(view, `repository:${bobs}:pull`)) });
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).errors[0].code, 'NAME_UNKNOWN', 'no TXT record, no resolver: unknown');
  } finally {
    doh.close();
  }
});

test('Docker v2 schema 2 manifests and manifest lists are stored and served as pushed', { timeout: 300_000 }, async () => {
  const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
  const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
  const name = `${alice.handle}/docker-types`;
  // skopeo converts an OCI image to Docker v2 schema 2 on the way up.
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'docker.txt': 'schema 2\n' }] });
  const creds = `${alice.handle}:${alice.appPassword}`;
  const push = await run('skopeo', ['copy', '--format', 'v2s2', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${image.layout}:v1`, `docker://${service}/${name}:v1`]);
  assert.equal(push.code, 0, push.stderr);
  const token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  const got = await fetch(registry(`/v2/${name}/manifests/v1`), { headers: { ...bearer(token), accept: DOCKER_MANIFEST } });
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-type'), DOCKER_MANIFEST);
  const manifestBytes = Buffer.from(await got.arrayBuffer());
  const manifest = JSON.parse(manifestBytes);
  assert.equal(manifest.mediaType, DOCKER_MANIFEST);
  assert.equal(got.headers.get('docker-content-digest'), sha256(manifestBytes));

  // A manifest list naming it, as docker buildx pushes them.
  const list = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: DOCKER_LIST,
    manifests: [{ mediaType: DOCKER_MANIFEST, digest: sha256(manifestBytes), size: manifestBytes.length, platform: { architecture: 'amd64', os: 'linux' } }],
  }));
  const put = await fetch(registry(`/v2/${name}/manifests/list`), { method: 'PUT', headers: { ...bearer(token), 'content-type': DOCKER_LIST }, body: list });
  assert.equal(put.status, 201, await put.text());
  const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${service}/${name}:list`]);
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal(raw.stdout, list.toString(), 'the list comes back byte-identical');
  const out = path.join(scratch, 'docker-list');
  const pull = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${service}/${name}:list`, `dir:${out}`]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.equal(sha256(fs.readFileSync(path.join(out, 'manifest.json'))), sha256(list));
});
