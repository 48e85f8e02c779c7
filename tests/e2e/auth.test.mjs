// Registry token auth end to end: app-password logins checked by the real
// PDS, tokens verified on /v2/, sessions encrypted in the real local D1, and
// real clients (skopeo, podman) logging in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, queryD1 } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';

let stack, service, scratch;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  service = `127.0.0.1:${stack.ports.appview}`;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-auth-test-'));
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const basic = (user, password) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function getToken({ user, password, scope }) {
  const url = new URL('/auth/token', stack.urls.appview);
  url.searchParams.set('service', service);
  for (const s of [].concat(scope ?? [])) url.searchParams.append('scope', s);
  const res = await fetch(url, { headers: user ? { authorization: basic(user, password) } : {} });
  return { status: res.status, body: await res.json() };
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

const run = (cmd, args) => runIn(scratch, cmd, args);

test('the owner gets pull and push on their repository; the token opens /v2/', async () => {
  const { alice } = stack.accounts;
  const res = await getToken({ user: alice.handle, password: alice.appPassword, scope: `repository:${alice.handle}/app:pull,push` });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.token, res.body.access_token);
  assert.ok(res.body.expires_in > 0 && res.body.expires_in <= 300);
  const claims = claimsOf(res.body.token);
  assert.equal(claims.sub, alice.did);
  assert.equal(claims.aud, service);
  assert.deepEqual(claims.access, [{ type: 'repository', name: `${alice.handle}/app`, actions: ['pull', 'push'] }]);
  assert.equal(JSON.parse(Buffer.from(res.body.token.split('.')[0], 'base64url')).alg, 'ES256');

  const v2 = await fetch(`${stack.urls.appview}/v2/`, { headers: { authorization: `Bearer ${res.body.token}` } });
  assert.equal(v2.status, 200);
  assert.equal(v2.headers.get('docker-distribution-api-version'), 'registry/2.0');
});

test('the grammar-safe DID form of a name grants the same as the handle form', async () => {
  const { alice } = stack.accounts;
  const name = `${alice.did.replaceAll(':', '-')}/app`;
  const res = await getToken({ user: alice.handle, password: alice.appPassword, scope: `repository:${name}:pull,push` });
  assert.deepEqual(claimsOf(res.body.token).access[0].actions, ['pull', 'push']);
});

test('bob gets only pull on alice\'s repository', async () => {
  const { alice, bob } = stack.accounts;
  const res = await getToken({ user: bob.handle, password: bob.appPassword, scope: `repository:${alice.handle}/app:pull,push` });
  assert.equal(res.status, 200);
  assert.deepEqual(claimsOf(res.body.token).access, [{ type: 'repository', name: `${alice.handle}/app`, actions: ['pull'] }]);
});

test('anonymous clients get pull-only tokens', async () => {
  const { alice } = stack.accounts;
  const res = await getToken({ scope: `repository:${alice.handle}/app:pull,push` });
  assert.equal(res.status, 200);
  const claims = claimsOf(res.body.token);
  assert.equal(claims.sub, '');
  assert.deepEqual(claims.access[0].actions, ['pull']);
});

test('a wrong app password and an unknown handle are refused with UNAUTHORIZED', async () => {
  const { alice } = stack.accounts;
  const wrong = await getToken({ user: alice.handle, password: 'aaaa-bbbb-cccc-dddd', scope: `repository:${alice.handle}/app:push` });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.errors[0].code, 'UNAUTHORIZED');
  assert.match(wrong.body.errors[0].message, /refused this handle and app password/);
  const unknown = await getToken({ user: 'nobody.test', password: 'x', scope: 'repository:nobody.test/app:pull' });
  assert.equal(unknown.status, 401);
  assert.match(unknown.body.errors[0].message, /no such handle nobody\.test/);
});

test('the PDS session is stored in D1 encrypted', () => {
  const { alice } = stack.accounts;
  const rows = queryD1(stack.appviewStateDir, `SELECT did, kind, tokens_ciphertext, credential_mac FROM pds_sessions WHERE did = '${alice.did}'`);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].kind, 'app_password');
  const sealed = Buffer.from(rows[0].tokens_ciphertext, 'base64');
  assert.ok(sealed.length > 100);
  assert.ok(!sealed.toString('latin1').includes('eyJ'), 'no JWT in the clear');
  assert.ok(!rows[0].tokens_ciphertext.includes(alice.appPassword));
  assert.match(rows[0].credential_mac, /^[0-9a-f]{64}$/);
});

test('forged, foreign-key and expired tokens are refused at /v2/', async () => {
  const { alice } = stack.accounts;
  const good = (await getToken({ user: alice.handle, password: alice.appPassword, scope: `repository:${alice.handle}/app:pull` })).body.token;
  const [h, p] = good.split('.');
  const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`;
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const foreign = (() => {
    const input = `${h}.${p}`;
    const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  })();
  const expiredClaims = { ...claimsOf(good), exp: Math.floor(Date.now() / 1000) - 10 };
  const expired = `${h}.${Buffer.from(JSON.stringify(expiredClaims)).toString('base64url')}.${good.split('.')[2]}`;
  for (const [name, token] of Object.entries({ none, foreign, expired })) {
    const res = await fetch(`${stack.urls.appview}/v2/`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 401, name);
    assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/, name);
    assert.equal((await res.json()).errors[0].code, 'UNAUTHORIZED', name);
  }
});

test('the owner\'s pull-only token asked to push gets 403 with the insufficient_scope challenge, and the token it names pushes; where an upload stands, any token of the uploader\'s may ask', async () => {
  const { alice } = stack.accounts;
  const scoped = async (actions) => (await getToken({ user: alice.handle, password: alice.appPassword, scope: `repository:${alice.handle}/app:${actions}` })).body.token;
  const pullOnly = await scoped('pull');
  const uploads = `${stack.urls.appview}/v2/${alice.handle}/app/blobs/uploads/`;
  const res = await fetch(uploads, { method: 'POST', headers: { authorization: `Bearer ${pullOnly}` } });
  assert.equal(res.status, 403);
  const { errors } = await res.json();
  assert.equal(errors[0].code, 'DENIED');
  assert.match(errors[0].message, /does not grant push .*ask the token service/);
  const challenge = res.headers.get('www-authenticate');
  assert.match(challenge, new RegExp(`scope="repository:${alice.handle.replace('.', '\\.')}/app:pull,push"`));
  assert.match(challenge, /error="insufficient_scope"/);
  // The token the challenge names starts the upload ...
  const started = await fetch(uploads, { method: 'POST', headers: { authorization: `Bearer ${await scoped('pull,push')}` } });
  assert.equal(started.status, 202, await started.text());
  // ... and its status is hers to read with the pull token too.
  const status = await fetch(new URL(started.headers.get('location'), stack.urls.appview), { headers: { authorization: `Bearer ${pullOnly}` } });
  assert.equal(status.status, 204, await status.text());
  assert.equal(status.headers.get('range'), '0-0');
});

test('a user\'s pull token cannot push: 403 DENIED with an insufficient_scope challenge naming the scope', async () => {
  const { alice, bob } = stack.accounts;
  const token = (await getToken({ user: bob.handle, password: bob.appPassword, scope: `repository:${alice.handle}/app:pull,push` })).body.token;
  const res = await fetch(`${stack.urls.appview}/v2/${alice.handle}/app/manifests/latest`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: '{}',
  });
  assert.equal(res.status, 403);
  assert.equal((await res.json()).errors[0].code, 'DENIED');
  const challenge = res.headers.get('www-authenticate');
  assert.match(challenge, new RegExp(`scope="repository:${alice.handle.replace('.', '\\.')}/app:pull,push"`));
  assert.match(challenge, /error="insufficient_scope"/);
});

test('invalid repository names are NAME_INVALID before any auth', async () => {
  const res = await fetch(`${stack.urls.appview}/v2/alice.test/Not_Valid/tags/list`);
  assert.equal(res.status, 400);
  assert.equal((await res.json()).errors[0].code, 'NAME_INVALID');
});

test('the appview publishes its token-signing key in its did:web document', async () => {
  const doc = await (await fetch(`${stack.urls.appview}/.well-known/did.json`)).json();
  assert.equal(doc.id, `did:web:localhost%3A${stack.ports.appview}`);
  assert.match(doc.verificationMethod[0].publicKeyMultibase, /^zDn/);
  assert.equal(doc.service[0].type, 'AtcrAppView');
});

test('skopeo and podman log in with an app password, and a wrong one fails', async () => {
  const { alice } = stack.accounts;
  const authfile = path.join(scratch, 'auth.json');
  for (const tool of ['skopeo', 'podman']) {
    const ok = await run(tool, ['login', '--tls-verify=false', '--authfile', authfile, '-u', alice.handle, '-p', alice.appPassword, service]);
    assert.equal(ok.code, 0, `${tool}: ${ok.stderr}`);
    assert.match(ok.stdout, /Login Succeeded/);
    const bad = await run(tool, ['login', '--tls-verify=false', '--authfile', authfile, '-u', alice.handle, '-p', 'wrong-pass-word-0', service]);
    assert.notEqual(bad.code, 0, `${tool} accepted a wrong password`);
    assert.match(bad.stderr, /401|unauthorized|authentication required|invalid username\/password/i);
  }
});

test('repeated wrong app passwords for one account are refused with 429 and Retry-After; other accounts are not', async () => {
  // Last in this file: bob's sign-ins stay refused for the limiter's minute.
  const { alice, bob } = stack.accounts;
  const scope = `repository:${bob.handle}/app:pull`;
  // The limiter's minutes are aligned to the wall clock (as Cloudflare's
  // are): a loop that crossed into the next one would see its count reset.
  // With under 20 s of this minute left, the loop starts in the next.
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 40_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 250));
  const statuses = [];
  for (let i = 0; i < 12; i++) {
    const res = await fetch(new URL(`/auth/token?service=${service}&scope=${scope}`, stack.urls.appview), {
      headers: { authorization: basic(bob.handle, `wrong-pass-${i}`) },
    });
    statuses.push(res.status);
    if (res.status === 429) {
      assert.equal(res.headers.get('retry-after'), '60');
      const body = await res.json();
      assert.equal(body.errors[0].code, 'TOOMANYREQUESTS');
      assert.match(body.errors[0].message, /too many sign-ins for bob\.test/);
    }
  }
  // At most 10 sign-ins a minute reach the PDS (bob signed in earlier in this
  // file, which counts): wrong passwords get 401 until then, 429 after.
  const refused = statuses.indexOf(429);
  assert.ok(refused >= 8 && refused <= 10, statuses.join(' '));
  assert.deepEqual(statuses.slice(0, refused), Array(refused).fill(401), statuses.join(' '));
  assert.deepEqual(statuses.slice(refused), Array(12 - refused).fill(429), statuses.join(' '));
  // Another account signing in from the same address is not held back.
  const ok = await getToken({ user: alice.handle, password: alice.appPassword, scope: `repository:${alice.handle}/app:pull` });
  assert.equal(ok.status, 200);
});
