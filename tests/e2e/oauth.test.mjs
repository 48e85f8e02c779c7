// Signing in with ATProto OAuth, in a real browser (headless Chromium)
// against the dev-env PDS's own OAuth server: alice types her handle at
// the appview, signs in and consents on her PDS's pages, and comes back
// signed in (her handle and avatar in the header); the appview then writes her records through that OAuth
// session (DPoP-bound tokens; she has no app-password session with it), a
// refresh of an expired session spends its refresh token once however many
// requests want it, and signing out revokes the grant at her PDS. Refused,
// each with a clear page and nothing written: a callback with a forged
// state or from another issuer, a forged or expired session cookie, a
// sign-out form sent from another site or without its token. The PDS
// refuses a replayed DPoP proof and proofs for another URL or method made
// with the session's own key (the appview serves no DPoP-protected
// endpoint of its own).
//
// Token exchange shares this stack: bob, who never gives the appview a
// password, trades a service-auth token from his PDS
// (com.atproto.server.getServiceAuth, aud = the appview's did:web, lxm =
// io.atcr.auth.exchange) for a registry token that pulls alice's image and
// pushes only to his own repositories; his records are written with the
// OAuth session he gets by signing in with Chromium, and before that a push
// is refused with the way to sign in. Refused tokens (wrong aud, wrong lxm,
// expired, too long-lived, tampered, unknown issuer) get 401 with a named
// error and write nothing.
//
// The appview runs on http://127.0.0.1, so it signs in as the loopback
// client (client_id http://localhost?redirect_uri=…&scope=…): the PDS
// fetches no client metadata over plain http. The confidential client's
// documents are checked here as served; its client assertion is
// unit-tested in atcr-protocol (oauth::client).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startStack, queryD1, freePort, ROOT } from '../lib/stack.mjs';
import { pushImage } from '../lib/registry.mjs';
import { buildImage } from '../lib/image.mjs';
import { runIn } from '../lib/clients.mjs';
import { xrpc, login, putRecord, serviceToken } from '../lib/atproto.mjs';
import { openSealed, registryTokenFor, dpopPost, dpopProof } from '../lib/oauth.mjs';
import { launchChromium, signInWithOAuth } from '../lib/browser.mjs';

const keys = { signingKey: crypto.randomBytes(32).toString('hex'), secretKey: crypto.randomBytes(32).toString('hex') };
let stack, browser, alice, service;
before(async () => {
  stack = await startStack({ appview: keys, log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  service = `127.0.0.1:${stack.ports.appview}`;
  browser = await launchChromium();
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await stack?.stop();
});

const url = (p) => new URL(p, stack.urls.appview).toString();
const sql = (q) => queryD1(stack.appviewStateDir, q);
const oauthRow = () => sql(`SELECT * FROM oauth_sessions WHERE did = '${alice.did}'`)[0];
const webSessions = () => sql(`SELECT * FROM web_sessions WHERE did = '${alice.did}'`);

/** A registry token for alice's `repo`, signed as the token service signs them (no password involved). */
const pushToken = (repo) => registryTokenFor({
  signingKeyHex: keys.signingKey, appviewDid: stack.appviewDid, service, sub: alice.did,
  access: [{ type: 'repository', name: `${alice.handle}/${repo}`, actions: ['pull', 'push'] }],
});

async function tagRecord(repo, tag) {
  return xrpc(stack.urls.pds, 'com.atproto.repo.getRecord', {
    params: { repo: alice.did, collection: 'io.atcr.tag', rkey: `${repo}:${tag}` }, expect: [200, 400, 404],
  });
}

/** Signs alice (or `account`) in from `/login` in `page` (the PDS's own pages); resolves back at the appview. */
const signIn = (page, { account = alice, ...options } = {}) => signInWithOAuth(page, stack, account, options);

const signedInAs = async (page) => (await page.locator('nav .account .who').allTextContents()).join('');

test('the appview publishes its confidential client metadata and JWKS, and a sign-in form', async () => {
  const metadata = await (await fetch(url('/oauth-client-metadata.json'))).json();
  assert.equal(metadata.client_id, `${stack.urls.appview}/oauth-client-metadata.json`);
  assert.deepEqual(metadata.redirect_uris, [`${stack.urls.appview}/oauth/callback`]);
  assert.equal(metadata.token_endpoint_auth_method, 'private_key_jwt');
  assert.equal(metadata.jwks_uri, `${stack.urls.appview}/oauth/jwks.json`);
  assert.equal(metadata.dpop_bound_access_tokens, true);
  assert.match(metadata.scope, /^atproto /);
  assert.doesNotMatch(metadata.scope, /transition:generic/, 'only the scopes ATCR needs');
  const jwks = await (await fetch(url('/oauth/jwks.json'))).json();
  assert.equal(jwks.keys.length, 1);
  assert.equal(jwks.keys[0].kty, 'EC');
  assert.equal(jwks.keys[0].crv, 'P-256');
  assert.ok(jwks.keys[0].kid);
  assert.equal(jwks.keys[0].d, undefined, 'no private part');

  const page = await browser.newPage();
  const res = await page.goto(url('/login'));
  assert.equal(res.status(), 200);
  assert.equal(await page.locator('form[action="/login"][method=post] input[name=handle]').count(), 1);
  assert.equal(await page.locator('nav .account a.sign-in').textContent(), 'Sign in');
  await page.close();
});

let context, page;

/** Gives alice an app.bsky.actor.profile with a 1×1 PNG avatar; resolves to the avatar's CID. */
async function giveAliceAnAvatar() {
  const token = await login(stack.urls.pds, alice);
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
  const res = await fetch(`${stack.urls.pds}/xrpc/com.atproto.repo.uploadBlob`, {
    method: 'POST', headers: { 'content-type': 'image/png', authorization: `Bearer ${token}` }, body: png,
  });
  const { blob } = await res.json();
  await putRecord(stack.urls.pds, token, alice.did, 'app.bsky.actor.profile', 'self', { displayName: 'Alice', avatar: blob });
  return blob.ref.$link;
}

test('Chromium signs alice in through her PDS\'s own OAuth pages and comes back signed in', async () => {
  const avatar = await giveAliceAnAvatar();
  context = await browser.newContext();
  page = await context.newPage();
  await signIn(page, { returnTo: '/search?q=oauth' });
  await page.waitForURL(url('/search?q=oauth'));
  assert.equal(await signedInAs(page), alice.handle);
  const img = page.locator('nav .account img.avatar');
  assert.equal(await img.getAttribute('src'), `${stack.urls.pds}/xrpc/com.atproto.sync.getBlob?did=${alice.did}&cid=${avatar}`);
  assert.equal(await img.evaluate((i) => i.complete && i.naturalWidth), 1, 'her avatar loads from her PDS');
  const cookie = (await context.cookies(stack.urls.appview)).find((c) => c.name === 'atcr_session');
  assert.ok(cookie, 'a session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Lax');
  assert.equal(cookie.secure, false, 'plain http on loopback');
  assert.equal((await context.cookies(stack.urls.appview)).some((c) => c.name === 'atcr_sign_in'), false, 'the sign-in cookie is spent');

  // D1 keeps the cookie only as a hash, and the tokens only sealed.
  const sessions = webSessions();
  assert.equal(sessions.length, 1);
  assert.notEqual(sessions[0].id_hash, cookie.value);
  assert.equal(sessions[0].id_hash, crypto.createHash('sha256').update(cookie.value).digest('hex'));
  const row = oauthRow();
  assert.equal(row.pds_endpoint, stack.urls.pds);
  assert.equal(row.issuer, new URL(stack.urls.pds).origin);
  const sealed = openSealed(keys.secretKey, row.session_ciphertext);
  assert.equal(sealed.tokens.did, alice.did);
  assert.equal(sealed.tokens.token_type ?? 'DPoP', 'DPoP');
  assert.ok(sealed.tokens.refresh_token);
  assert.ok(!Buffer.from(row.session_ciphertext, 'base64').includes(sealed.tokens.access_token), 'the access token is not stored in the clear');
  assert.match(sealed.tokens.scope, /repo:io\.atcr\.manifest/);
});

let aliceImage;
test('a push by alice after OAuth sign-in writes her records through the OAuth session', async () => {
  assert.equal(sql(`SELECT COUNT(*) AS n FROM pds_sessions WHERE did = '${alice.did}'`)[0].n, 0, 'no app-password session for alice');
  const image = aliceImage = await pushImage(stack, `${alice.handle}/oauth-app`, 'v1', pushToken('oauth-app'));
  const tag = await tagRecord('oauth-app', 'v1');
  assert.equal(tag.value?.tag, 'v1', 'the tag record is in her PDS');
  const manifest = await xrpc(stack.urls.pds, 'com.atproto.repo.getRecord', {
    params: { repo: alice.did, collection: 'io.atcr.manifest', rkey: tag.value.manifest.split('/').pop() },
  });
  assert.equal(manifest.value.digest, image.manifest);
  assert.equal(oauthRow().generation, 0, 'no refresh was needed');
});

test('an expired access token is refreshed once, however many requests find it expired', async () => {
  const before = oauthRow();
  sql(`UPDATE oauth_sessions SET expires_at = 0 WHERE did = '${alice.did}'`);
  const pushes = await Promise.all(['r1', 'r2', 'r3'].map((tag) => pushImage(stack, `${alice.handle}/oauth-app`, tag, pushToken('oauth-app'))));
  assert.equal(pushes.length, 3);
  const after = oauthRow();
  assert.equal(after.generation, before.generation + 1, 'one refresh');
  assert.equal(after.refreshing_until, null, 'the claim is released');
  assert.ok(after.expires_at > Date.now(), 'the new access token is current');
  const old = openSealed(keys.secretKey, before.session_ciphertext).tokens;
  const now = openSealed(keys.secretKey, after.session_ciphertext).tokens;
  assert.notEqual(now.refresh_token, old.refresh_token, 'the refresh token was spent for a new one');
  for (const tag of ['r1', 'r2', 'r3']) assert.equal((await tagRecord('oauth-app', tag)).value?.tag, tag);
  // And the refreshed session keeps working.
  await pushImage(stack, `${alice.handle}/oauth-app`, 'r4', pushToken('oauth-app'));
});

test('the PDS refuses a replayed DPoP proof, and a proof for another URL or method, with the session\'s own key', async () => {
  // The appview serves no DPoP-protected endpoint of its own (its API takes
  // registry tokens, its pages a cookie): atcr-protocol's DPoP verifier is
  // unit-tested there, and the refusals that matter here are the PDS's, on
  // the path the appview writes through.
  const { tokens, dpop_key: key } = openSealed(keys.secretKey, oauthRow().session_ciphertext);
  const xrpcUrl = (method) => `${stack.urls.pds}/xrpc/${method}`;
  let nonce;
  /** `method` `target` with alice's access token and `proof`; keeps the PDS's latest nonce. */
  const send = async (method, target, proof, body) => {
    const res = await fetch(target, {
      method,
      headers: { authorization: `DPoP ${tokens.access_token}`, dpop: proof, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body && JSON.stringify(body),
    });
    nonce = res.headers.get('dpop-nonce') ?? nonce;
    return { status: res.status, text: await res.text(), challenge: res.headers.get('www-authenticate') ?? '' };
  };
  const proof = (method, target) => dpopProof(key, { method, url: target, nonce, accessToken: tokens.access_token });
  const getSession = xrpcUrl('com.atproto.server.getSession');

  // A fresh proof for the request works (once the PDS's nonce is known).
  let accepted, first;
  for (let attempt = 0; attempt < 2 && accepted?.status !== 200; attempt++) {
    first = proof('GET', getSession);
    accepted = await send('GET', getSession, first);
  }
  assert.equal(accepted.status, 200, accepted.text);
  assert.equal(JSON.parse(accepted.text).did, alice.did);

  const replayed = await send('GET', getSession, first);
  assert.equal(replayed.status, 401, 'a replayed proof');
  assert.match(`${replayed.text} ${replayed.challenge}`, /jti|replay|unique/i);

  const otherUrl = await send('GET', getSession, proof('GET', xrpcUrl('com.atproto.repo.describeRepo')));
  assert.equal(otherUrl.status, 401, 'a proof for another URL');
  assert.match(`${otherUrl.text} ${otherUrl.challenge}`, /htu|url/i);

  const otherMethod = await send('GET', getSession, proof('POST', getSession));
  assert.equal(otherMethod.status, 401, 'a proof for another method');
  assert.match(`${otherMethod.text} ${otherMethod.challenge}`, /htm|method/i);

  // A write with a proof made for a read (another URL and method) writes nothing.
  const putRecordUrl = xrpcUrl('com.atproto.repo.putRecord');
  const write = await send('POST', putRecordUrl, proof('GET', getSession), {
    repo: alice.did, collection: 'io.atcr.tag', rkey: 'dpop-probe:v1',
    record: { $type: 'io.atcr.tag', repository: 'dpop-probe', tag: 'v1', manifest: 'at://x', createdAt: new Date().toISOString() },
  });
  assert.equal(write.status, 401, write.text);
  assert.equal((await tagRecord('dpop-probe', 'v1')).value, undefined, 'nothing written');
  // The session itself is unharmed: the appview still writes with it.
  await pushImage(stack, `${alice.handle}/oauth-app`, 'after-dpop-probes', pushToken('oauth-app'));
});

const EXCHANGE = 'io.atcr.auth.exchange';
let bob, bobSession;

/** A service-auth token from bob's own PDS; `aud` defaults to the appview's did:web. */
const bobServiceToken = async ({ aud = stack.appviewDid, lxm = EXCHANGE, seconds = 60 } = {}) => {
  bobSession ??= await login(stack.urls.pds, bob);
  return serviceToken(stack.urls.pds, bobSession, aud, lxm, seconds);
};

/** Exchanges `token` at `/auth/token` (GET) or `/xrpc/io.atcr.auth.exchange` (POST) for `scopes`. */
async function exchange(token, scopes, { door = 'auth/token' } = {}) {
  const target = new URL(door === 'xrpc' ? `/xrpc/${EXCHANGE}` : '/auth/token', stack.urls.appview);
  target.searchParams.set('service', service);
  for (const s of scopes) target.searchParams.append('scope', s);
  const res = await fetch(target, {
    method: door === 'xrpc' ? 'POST' : 'GET',
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const bobRows = () => ({
  oauth: sql(`SELECT COUNT(*) AS n FROM oauth_sessions WHERE did = '${bob.did}'`)[0].n,
  appPassword: sql(`SELECT COUNT(*) AS n FROM pds_sessions WHERE did = '${bob.did}'`)[0].n,
});
const bobTags = async () => (await xrpc(stack.urls.pds, 'com.atproto.repo.listRecords', {
  params: { repo: bob.did, collection: 'io.atcr.tag' },
})).records;

test('token exchange: a service-auth token from bob\'s PDS becomes a registry token that pulls, and pushes only to his own repositories', async () => {
  bob = stack.accounts.bob;
  const aliceRepo = `${alice.handle}/oauth-app`;
  const bobRepo = `${bob.handle}/exchanged`;
  const scopes = [`repository:${aliceRepo}:pull,push`, `repository:${bobRepo}:pull,push`];
  const { status, body, headers } = await exchange(await bobServiceToken(), scopes);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(headers.get('cache-control'), 'no-store');
  assert.equal(body.token, body.access_token);
  assert.equal(body.expires_in, 300);
  assert.ok(!Number.isNaN(Date.parse(body.issued_at)));
  assert.equal(body.refresh_token, undefined, 'no refresh token for this grant');
  assert.equal(body.scope, `repository:${aliceRepo}:pull repository:${bobRepo}:pull,push`, 'push only to his own');
  const claims = claimsOf(body.token);
  assert.equal(claims.sub, bob.did);
  assert.equal(claims.iss, stack.appviewDid);
  assert.equal(claims.aud, service);

  // It pulls alice's image: the layer's bytes hash to what she pushed.
  const manifest = await fetch(url(`/v2/${aliceRepo}/manifests/v1`), {
    headers: { authorization: `Bearer ${body.token}`, accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(manifest.status, 200);
  assert.equal(manifest.headers.get('docker-content-digest'), aliceImage.manifest);
  const layer = await fetch(url(`/v2/${aliceRepo}/blobs/${aliceImage.layer}`), { headers: { authorization: `Bearer ${body.token}` } });
  assert.equal(layer.status, 200);
  const bytes = Buffer.from(await layer.arrayBuffer());
  assert.equal(`sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`, aliceImage.layer);

  // Pushing to alice's repository is refused, and nothing reaches her PDS.
  const intoAlice = await pushImage(stack, aliceRepo, 'from-bob', body.token).catch((e) => e);
  assert.match(String(intoAlice), /403 .*DENIED/);
  assert.equal((await tagRecord('oauth-app', 'from-bob')).value, undefined);

  // His own repository: the registry token is his, but the appview holds
  // no session to write his records with until he signs in.
  assert.deepEqual(bobRows(), { oauth: 0, appPassword: 0 }, 'the exchange itself stores nothing');
  const beforeSignIn = await pushImage(stack, bobRepo, 'v1', body.token).catch((e) => e);
  assert.match(String(beforeSignIn), /manifest PUT .*: 403 .*DENIED.*sign in at http:\/\/127\.0\.0\.1:\d+\/login/);
  assert.deepEqual(await bobTags(), [], 'nothing written to his PDS');

  // The XRPC door gives the same answer.
  const viaXrpc = await exchange(await bobServiceToken(), [`repository:${bobRepo}:push`], { door: 'xrpc' });
  assert.equal(viaXrpc.status, 200, JSON.stringify(viaXrpc.body));
  assert.equal(viaXrpc.body.scope, `repository:${bobRepo}:push`);
  assert.equal(claimsOf(viaXrpc.body.token).sub, bob.did);
});

test('token exchange: once bob signs in with OAuth, his exchanged token pushes through that session', async () => {
  const browserContext = await browser.newContext();
  const p = await browserContext.newPage();
  await signIn(p, { account: bob });
  await p.waitForURL(url('/'));
  assert.equal(await signedInAs(p), bob.handle);
  await browserContext.close();
  assert.deepEqual(bobRows(), { oauth: 1, appPassword: 0 }, 'an OAuth session, no password');

  const bobRepo = `${bob.handle}/exchanged`;
  const { body } = await exchange(await bobServiceToken(), [`repository:${bobRepo}:pull,push`]);
  const image = await pushImage(stack, bobRepo, 'v1', body.token);
  const [tag] = await bobTags();
  assert.equal(tag.value.tag, 'v1');
  const manifest = await xrpc(stack.urls.pds, 'com.atproto.repo.getRecord', {
    params: { repo: bob.did, collection: 'io.atcr.manifest', rkey: tag.value.manifest.split('/').pop() },
  });
  assert.equal(manifest.value.digest, image.manifest);

  // As the README shows it: skopeo pushes and pulls with the exchanged token.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-exchange-'));
  try {
    const built = buildImage(home, { tag: 'v2', layers: [{ 'hello.txt': 'exchanged\n' }] });
    const ref = `docker://${service}/${bobRepo}:v2`;
    const push = await runIn(home, 'skopeo', ['copy', '--dest-tls-verify=false', '--dest-registry-token', body.token, `oci:${built.layout}:v2`, ref]);
    assert.equal(push.code, 0, push.stderr);
    const pulled = await runIn(home, 'skopeo', ['inspect', '--raw', '--tls-verify=false', '--registry-token', body.token, ref]);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.equal(Buffer.from(pulled.stdout).toString(), built.manifestBytes.toString(), 'the same manifest bytes');
    assert.ok((await bobTags()).some((r) => r.value.tag === 'v2'));
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

/** A JWT signed ES256K by a fresh secp256k1 key: a token from nobody's PDS. */
function es256kBy(payload) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: 'ES256K', typ: 'JWT' })}.${b64(payload)}`;
  return `${input}.${crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

test('token exchange refuses a wrong aud, a wrong lxm, an expired or long-lived token, a tampered one and an unknown issuer, and writes nothing', async () => {
  const rows = bobRows();
  const scopes = [`repository:${bob.handle}/exchanged:pull,push`];
  const refused = async (token, name, message, door) => {
    const { status, body, headers } = await exchange(token, scopes, { door });
    assert.equal(status, 401, `${name}: ${JSON.stringify(body)}`);
    assert.equal(body.error, name);
    assert.match(body.message, message);
    assert.equal(body.errors[0].code, 'UNAUTHORIZED', 'an OCI envelope too');
    assert.equal(body.errors[0].message, body.message);
    assert.match(headers.get('www-authenticate'), /^Bearer error="invalid_token"/);
    assert.equal(body.token, undefined);
  };
  // Minted first: the expired one's clock starts now.
  const expiring = await bobServiceToken({ seconds: 2 });
  const started = Date.now();

  await refused(await bobServiceToken({ aud: 'did:web:elsewhere.example.com' }), 'BadJwtAudience',
    /token is for did:web:elsewhere\.example\.com, not for this service/);
  await refused(await bobServiceToken({ lxm: 'io.atcr.hold.getBlob' }), 'BadJwtLexiconMethod',
    /method Some\("io\.atcr\.hold\.getBlob"\), not io\.atcr\.auth\.exchange/, 'xrpc');
  await refused(await bobServiceToken({ seconds: 3600 }), 'BadJwtLifetime', /at most 300 seconds/);

  // Bob's token made to speak for alice: her key does not verify it.
  const [header, payload, signature] = (await bobServiceToken()).split('.');
  const asAlice = { ...JSON.parse(Buffer.from(payload, 'base64url')), iss: alice.did };
  await refused(`${header}.${Buffer.from(JSON.stringify(asAlice)).toString('base64url')}.${signature}`, 'BadJwtSignature',
    new RegExp(`signature does not verify against the key ${alice.did} publishes`));

  const now = Math.floor(Date.now() / 1000);
  await refused(es256kBy({ iss: 'did:plc:nobodyhereatallxxxxxxxx', aud: stack.appviewDid, lxm: EXCHANGE, iat: now, exp: now + 60 }),
    'BadJwtIssuer', /cannot resolve token issuer did:plc:nobodyhereatallxxxxxxxx/);
  await refused('not.a.jwt', 'BadJwt', /malformed token/, 'xrpc');
  const missing = await exchange(undefined, scopes, { door: 'xrpc' });
  assert.equal(missing.status, 401);
  assert.equal(missing.body.error, 'AuthMissing');
  // A good token, but a request for another registry.
  const elsewhere = new URL('/auth/token', stack.urls.appview);
  elsewhere.searchParams.set('service', 'registry.elsewhere.example');
  const wrongService = await fetch(elsewhere, { headers: { authorization: `Bearer ${await bobServiceToken()}` } });
  assert.equal(wrongService.status, 403);
  const wrongServiceBody = await wrongService.json();
  assert.equal(wrongServiceBody.errors[0].code, 'DENIED');
  assert.match(wrongServiceBody.message, /issues tokens for '127\.0\.0\.1:\d+', not 'registry\.elsewhere\.example'/);

  // exp passed (plus the 5 s allowed for clock skew).
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 8_500 - (Date.now() - started))));
  await refused(expiring, 'JwtExpired', /token has expired/);

  assert.deepEqual(bobRows(), rows, 'no session was made or changed');
  assert.deepEqual((await bobTags()).map((r) => r.value.tag).sort(), ['v1', 'v2'], 'only the tags he pushed');
});

test('a callback with a forged state, or with the issuer swapped, is refused and stores nothing', async () => {
  const before = { oauth: oauthRow().generation, web: webSessions().length };
  const other = await browser.newContext();
  const p = await other.newPage();
  const forged = await p.goto(url(`/oauth/callback?code=abc&state=${'A'.repeat(80)}&iss=${encodeURIComponent(new URL(stack.urls.pds).origin)}`));
  assert.equal(forged.status(), 400);
  assert.match(await p.textContent('main'), /Sign-in failed[\s\S]*(not valid|did not start)/);

  // A real sign-in whose callback comes back naming another issuer: the
  // PDS's last page (its redirect endpoint, which carries code, state and
  // iss on to the callback) answers with the same redirect, iss swapped.
  await p.route((u) => u.origin === new URL(stack.urls.pds).origin && u.pathname === '/oauth/authorize/redirect', (route) => {
    const from = new URL(route.request().url());
    const to = new URL(from.searchParams.get('redirect_uri'));
    for (const name of ['code', 'state']) to.searchParams.set(name, from.searchParams.get(name));
    to.searchParams.set('iss', 'http://127.0.0.1:9');
    return route.fulfill({ status: 303, headers: { location: to.toString() } });
  });
  const callback = p.waitForResponse((r) => r.url().includes('/oauth/callback'));
  await signIn(p);
  const res = await callback;
  assert.equal(res.status(), 403);
  assert.match(await p.textContent('main'), /issuer http:\/\/127\.0\.0\.1:9/);
  assert.equal(await p.locator('nav .account .who').count(), 0, 'not signed in');
  assert.equal(oauthRow().generation, before.oauth, 'the stored session is untouched');
  assert.equal(webSessions().length, before.web, 'no web session');
  await other.close();
});

test('a forged or expired session cookie signs nobody in', async () => {
  const other = await browser.newContext();
  await other.addCookies([{ name: 'atcr_session', value: crypto.randomBytes(32).toString('hex'), url: stack.urls.appview }]);
  const p = await other.newPage();
  const home = await p.goto(url('/'));
  assert.equal(home.status(), 200);
  assert.equal(await p.locator('nav .account .who').count(), 0);
  assert.match(await p.textContent('nav .account'), /Sign in/);
  assert.equal((await other.cookies(stack.urls.appview)).some((c) => c.name === 'atcr_session'), false, 'the forged cookie is cleared');
  // Signing out with a cookie that names no session.
  const forged = crypto.randomBytes(32).toString('hex');
  const out = await fetch(url('/logout'), { method: 'POST', redirect: 'manual', headers: { cookie: `atcr_session=${forged}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'csrf=00' });
  assert.equal(out.status, 401);
  assert.match(await out.text(), /not signed in/);

  // An expired session: a second browser signs in, then its row expires.
  const second = await browser.newContext();
  const q = await second.newPage();
  await signIn(q);
  await q.waitForURL(url('/'));
  assert.equal(await signedInAs(q), alice.handle);
  const value = (await second.cookies(stack.urls.appview)).find((c) => c.name === 'atcr_session').value;
  const hash = crypto.createHash('sha256').update(value).digest('hex');
  sql(`UPDATE web_sessions SET expires_at = 0 WHERE id_hash = '${hash}'`);
  await q.goto(url('/'));
  assert.equal(await q.locator('nav .account .who').count(), 0, 'an expired session is no sign-in');
  assert.equal(await signedInAs(page), alice.handle, 'the first browser is still signed in');
  await other.close();
  await second.close();
});

test('a sign-out form sent from another site, or without its token, is refused', async () => {
  // A page on another origin that posts the sign-out form to the appview.
  const port = await freePort();
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(
      `<form id="f" method="post" action="${url('/logout')}"><input name="csrf" value="guess"></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((resolve) => evil.listen(port, '127.0.0.1', resolve));
  try {
    const refused = page.waitForResponse((r) => r.url() === url('/logout'));
    await page.goto(`http://127.0.0.1:${port}/`);
    const res = await refused;
    assert.equal(res.status(), 403);
    assert.match(await page.textContent('main'), /sent from another site/);
  } finally {
    evil.close();
  }
  // The appview's own origin, but not the form's token.
  await page.goto(url('/'));
  const status = await page.evaluate(async () => (await fetch('/logout', { method: 'POST', body: new URLSearchParams({ csrf: 'guess' }) })).status);
  assert.equal(status, 403);
  await page.goto(url('/'));
  assert.equal(await signedInAs(page), alice.handle, 'still signed in');
  assert.ok(oauthRow(), 'the OAuth session stands');
});

test('signing out revokes the grant at her PDS, clears the cookie, and later pushes are refused with a way back', async () => {
  const tokens = openSealed(keys.secretKey, oauthRow().session_ciphertext);
  await page.goto(url('/'));
  await page.click('nav .account form.sign-out button');
  await page.waitForURL(url('/'));
  assert.equal(await page.locator('nav .account .who').count(), 0);
  assert.equal((await context.cookies(stack.urls.appview)).some((c) => c.name === 'atcr_session'), false, 'cookie cleared');
  assert.equal(oauthRow(), undefined, 'the OAuth session is forgotten');
  assert.equal(webSessions().length, 0, 'every browser of alice is signed out');

  // The PDS no longer honours the refresh token the appview held.
  const server = await (await fetch(`${stack.urls.pds}/.well-known/oauth-authorization-server`)).json();
  const clientId = `http://localhost?${new URLSearchParams({ redirect_uri: `${stack.urls.appview}/oauth/callback`, scope: tokens.tokens.scope })}`;
  const refresh = await dpopPost(tokens.dpop_key, server.token_endpoint, {
    grant_type: 'refresh_token', refresh_token: tokens.tokens.refresh_token, client_id: clientId,
  });
  assert.equal(refresh.status, 400, JSON.stringify(refresh.body));
  assert.equal(refresh.body.error, 'invalid_grant');

  // A push now is refused, naming the way back, and writes nothing.
  const res = await pushImage(stack, `${alice.handle}/oauth-app`, 'after-sign-out', pushToken('oauth-app')).catch((e) => e);
  assert.match(String(res), /manifest PUT .*: 403 .*DENIED.*sign in at http:\/\/127\.0\.0\.1:\d+\/login/);
  assert.equal((await tagRecord('oauth-app', 'after-sign-out')).value, undefined);
});

test('a user whose PDS ended the session is told to sign in again, not shown an error', async () => {
  await signIn(page);
  await page.waitForURL(url('/'));
  assert.equal(await signedInAs(page), alice.handle);
  // Her PDS revokes the grant (as when she removes the app there); the
  // appview finds out at its next refresh.
  const sealed = openSealed(keys.secretKey, oauthRow().session_ciphertext);
  const server = await (await fetch(`${stack.urls.pds}/.well-known/oauth-authorization-server`)).json();
  const clientId = `http://localhost?${new URLSearchParams({ redirect_uri: `${stack.urls.appview}/oauth/callback`, scope: sealed.tokens.scope })}`;
  const revoked = await dpopPost(sealed.dpop_key, server.revocation_endpoint, { token: sealed.tokens.refresh_token, client_id: clientId });
  assert.equal(revoked.status, 200);
  sql(`UPDATE oauth_sessions SET expires_at = 0 WHERE did = '${alice.did}'`);
  const res = await pushImage(stack, `${alice.handle}/oauth-app`, 'after-revoke', pushToken('oauth-app')).catch((e) => e);
  assert.match(String(res), /403 .*DENIED.*has ended.*sign in again at http:\/\/127\.0\.0\.1:\d+\/login/);
  assert.equal(oauthRow(), undefined, 'the dead session is forgotten');
  const home = await page.goto(url('/'));
  assert.equal(home.status(), 200);
  assert.match(await page.textContent('nav .account'), /Your sign-in has ended\.\s*Sign in again/);
});

test('sign-ins beyond the limit from one address get 429 with Retry-After, without reaching any PDS', async () => {
  const form = await fetch(url('/login'));
  const cookie = form.headers.getSetCookie().find((c) => c.startsWith('atcr_sign_in=')).split(';')[0];
  const csrf = (await form.text()).match(/name="csrf" value="([0-9a-f]+)"/)[1];
  const statuses = [];
  for (let i = 0; i < 12 && !statuses.includes(429); i++) {
    const res = await fetch(url('/login'), {
      method: 'POST', redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, handle: 'nobody.test', return_to: '/' }).toString(),
    });
    statuses.push(res.status);
    if (res.status === 429) {
      assert.equal(res.headers.get('retry-after'), '60');
      assert.match(await res.text(), /Too many sign-ins from your address/);
    } else {
      assert.match(await res.text(), /no such handle nobody\.test/);
    }
  }
  assert.equal(statuses.at(-1), 429, `statuses: ${statuses}`);
  assert.ok(statuses.slice(0, -1).every((s) => s === 400), `statuses: ${statuses}`);
});
