// Device login for the credential helper (RFC 8628 in shape), on the real
// local stack: `docker-credential-atcr login` shows a user code, alice
// approves it in headless Chromium at the appview's /device page after
// signing in through her PDS's own OAuth pages, and the helper stores the
// device secret it is given. skopeo, podman and buildah, pointed at the
// helper through credHelpers, then push and pull with no password given;
// the appview writes alice's records with her OAuth session (she has no
// app-password session). Refused, each with a clear error and nothing
// approved or written: a device code used twice or after it expired, a
// denied login, an approval form sent from another site or without its
// token, a push after alice signed out (no OAuth session to write with:
// "sign in at …/login"), and a revoked device secret (at /auth/token, in
// the helper's status, and for refresh tokens made from it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { startStack, queryD1, freePort, ROOT } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { xrpc } from '../lib/atproto.mjs';
import { buildImage, layoutBlobs } from '../lib/image.mjs';
import { launchChromium, signInWithOAuth as signIn } from '../lib/browser.mjs';

const HELPER = path.join(ROOT, 'target', 'debug', 'docker-credential-atcr');
const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const USER_CODE = /\b([B-DF-HJ-NP-TV-Z]{4}-[B-DF-HJ-NP-TV-Z]{4})\b/;

let stack, browser, context, page, alice, registry, scratch, home, authfile;
const outside = [];
before(async () => {
  execFileSync('cargo', ['build', '-q', '-p', 'docker-credential-atcr'], { cwd: ROOT, stdio: 'inherit' });
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  alice = stack.accounts.alice;
  registry = `127.0.0.1:${stack.ports.appview}`;
  browser = await launchChromium();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-device-test-'));
  home = path.join(scratch, 'home');
  fs.mkdirSync(home);
  // The clients find the helper on PATH as docker-credential-atcr.
  const bin = path.join(scratch, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(HELPER, path.join(bin, 'docker-credential-atcr'));
  process.env.PATH = `${bin}:${process.env.PATH}`;
  delete process.env.XDG_CONFIG_HOME;
  delete process.env.REGISTRY_AUTH_FILE;
  process.env.ATCR_NO_BROWSER = '1';
  authfile = path.join(scratch, 'auth.json');
  fs.writeFileSync(authfile, JSON.stringify({ credHelpers: { [registry]: 'atcr' } }));
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await stack?.stop();
  for (const dir of [scratch, ...outside]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const url = (p) => new URL(p, stack.urls.appview).toString();
const sql = (q) => queryD1(stack.appviewStateDir, q);
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');
const helper = (args, { input = '', homeDir = home } = {}) => runIn(homeDir, HELPER, args, { input, timeout: 60_000 });
const storedLogins = (homeDir = home) => JSON.parse(fs.readFileSync(path.join(homeDir, '.config/atcr/credentials.json'), 'utf8'));

/**
 * Starts `login` in `homeDir`; resolves once it printed its user code, to
 * `{ code, done }` where `done` resolves to `{ code, stdout }` at its exit.
 */
function startLogin(homeDir, extra = []) {
  const child = spawn(HELPER, ['login', registry, ...extra], { env: { ...process.env, HOME: homeDir } });
  let stdout = '';
  const done = new Promise((resolve) => child.on('close', (exit) => resolve({ code: exit, stdout })));
  const shown = new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const m = stdout.match(USER_CODE);
      if (m) resolve(m[1]);
    });
    child.on('close', () => reject(new Error(`login ended before showing a code: ${stdout}`)));
  });
  child.stderr.on('data', (chunk) => process.stderr.write(chunk));
  return shown.then((code) => ({ code, done, output: () => stdout }));
}

/** POSTs a form to the appview. */
async function postForm(p, form, headers = {}) {
  const res = await fetch(url(p), {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

const startCode = (name = 'scripted') => postForm('/auth/device/code', { device_name: name });
const poll = (deviceCode) => postForm('/auth/device/token', { grant_type: GRANT, device_code: deviceCode });
const codeRow = (userCode) => sql(`SELECT * FROM device_codes WHERE user_code = '${userCode}'`)[0];
const basic = (user, password) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

/** Opens the approval page for `code` in the signed-in page and presses `button`. */
async function decideInBrowser(code, button, name) {
  await page.goto(url(`/device?user_code=${code}`));
  assert.equal(await page.inputValue('input[name=user_code]'), code);
  if (name) await page.fill('input[name=device_name]', name);
  await Promise.all([page.waitForLoadState('load'), page.click(`form[action="/device"] button[value=${button}]`)]);
  return page.textContent('main');
}

test('get without a login answers "not found" at once, never waiting', async () => {
  const started = Date.now();
  const got = await helper(['get'], { input: `${registry}\n` });
  assert.equal(got.code, 1);
  assert.equal(got.stdout.trim(), 'credentials not found in native keychain');
  assert.ok(Date.now() - started < 5_000, 'no browser, no polling');
});

let secret;
test('login shows a code; alice signs in with OAuth and approves it at /device; the helper stores the device secret', { timeout: 180_000 }, async () => {
  const login = await startLogin(home, ['--device-name', 'ci-laptop']);
  assert.match(login.output(), new RegExp(`open ${stack.urls.appview.replace(/[.]/g, '\\.')}/device and enter the code`));
  assert.match(login.output(), new RegExp(`/device\\?user_code=${login.code}`));
  const row = codeRow(login.code);
  assert.equal(row.state, 'pending');
  assert.equal(row.client_name, 'ci-laptop');
  assert.match(row.code_hash, /^[0-9a-f]{64}$/, 'the device code is kept only as its hash');

  context = await browser.newContext();
  page = await context.newPage();
  // Signed out, the approval page sends the browser to sign in and back.
  await page.goto(url(`/device?user_code=${login.code}`));
  assert.equal(page.url(), url(`/login?return_to=${encodeURIComponent(`/device?user_code=${login.code}`)}`));
  await signIn(page, stack, alice, { returnTo: `/device?user_code=${login.code}` });
  await page.waitForURL(url(`/device?user_code=${login.code}`));
  assert.equal(await page.inputValue('input[name=device_name]'), 'ci-laptop', 'the name the helper proposed');
  await page.fill('input[name=device_name]', 'CI laptop');
  await Promise.all([page.waitForLoadState('load'), page.click('form[action="/device"] button[value=approve]')]);
  assert.match(await page.textContent('main'), /Device approved[\s\S]*CI laptop is signed in as alice\.test/);

  const done = await login.done;
  assert.equal(done.code, 0, done.stdout);
  assert.match(done.stdout, new RegExp(`Signed in to ${registry} as ${alice.handle} \\(device "CI laptop"\\)`));
  const stored = storedLogins()[registry];
  assert.equal(stored.Username, alice.handle);
  assert.equal(stored.DeviceName, 'CI laptop');
  assert.match(stored.Secret, /^atcr_dev_[A-Za-z0-9_-]{43}$/);
  secret = stored.Secret;
  assert.equal(fs.statSync(path.join(home, '.config/atcr/credentials.json')).mode & 0o777, 0o600);
  const device = sql(`SELECT * FROM devices WHERE did = '${alice.did}'`);
  assert.equal(device.length, 1);
  assert.equal(device[0].name, 'CI laptop');
  assert.equal(device[0].secret_hash, sha256(secret), 'the secret is kept only as its hash');
  assert.equal(codeRow(login.code).state, 'spent');

  // get answers Docker's three fields, nothing else.
  const got = await helper(['get'], { input: registry });
  assert.equal(got.code, 0);
  assert.deepEqual(JSON.parse(got.stdout), { ServerURL: registry, Username: alice.handle, Secret: secret });
  const status = await helper(['status']);
  assert.equal(status.code, 0);
  assert.equal(status.stdout.trim(), `${registry}: ${alice.handle} device "CI laptop": valid`);
});

/** alice's io.atcr.tag record `<repo>:<tag>`. */
const tagRecord = (repo, tag) => xrpc(stack.urls.pds, 'com.atproto.repo.getRecord', {
  params: { repo: alice.did, collection: 'io.atcr.tag', rkey: `${repo}:${tag}` }, expect: [200, 400, 404],
});

async function assertPushed(repo, tag, digest) {
  const record = await tagRecord(repo, tag);
  assert.equal(record.value?.tag, tag, `the tag record ${repo}:${tag} is in alice's PDS`);
  const manifest = await xrpc(stack.urls.pds, 'com.atproto.repo.getRecord', {
    params: { repo: alice.did, collection: 'io.atcr.manifest', rkey: record.value.manifest.split('/').pop() },
  });
  assert.equal(manifest.value.digest, digest);
}

const run = (cmd, args) => runIn(home, cmd, args);

test('skopeo pushes and pulls through the helper, with no password given', { timeout: 300_000 }, async () => {
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'hello.txt': 'pushed by skopeo via the helper\n' }] });
  const ref = `docker://${registry}/${alice.handle}/device-skopeo:v1`;
  const push = await run('skopeo', ['copy', '--authfile', authfile, '--dest-tls-verify=false', `oci:${image.layout}:v1`, ref]);
  assert.equal(push.code, 0, push.stderr);
  await assertPushed('device-skopeo', 'v1', image.digest);
  const out = path.join(scratch, 'skopeo-pulled');
  const pull = await run('skopeo', ['copy', '--authfile', authfile, '--src-tls-verify=false', ref, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.deepEqual(layoutBlobs(out), layoutBlobs(image.layout), 'the pulled bytes are the pushed ones');
  assert.equal(sql(`SELECT COUNT(*) AS n FROM pds_sessions WHERE did = '${alice.did}'`)[0].n, 0, 'no app-password session for alice');
  assert.ok(sql(`SELECT last_used_at FROM devices WHERE did = '${alice.did}'`)[0].last_used_at > 0, 'the device was used');
});

for (const tool of ['podman', 'buildah']) {
  test(`${tool} pushes and pulls through the helper, with no password given`, { timeout: 300_000 }, async () => {
    const image = buildImage(scratch, { tag: 'v1', layers: [{ 'hello.txt': `pushed by ${tool} via the helper\n` }] });
    // Podman and buildah name an image after its layout's path (lowercase);
    // podman refuses a runroot path longer than 50 characters.
    const layout = path.join(os.tmpdir(), `atcr-device-${tool}-${crypto.randomBytes(6).toString('hex')}`);
    const runroot = fs.mkdtempSync(path.join(os.tmpdir(), `${tool}-`));
    outside.push(layout, runroot);
    fs.renameSync(image.layout, layout);
    const cli = (label, ...args) => run(tool, ['--root', path.join(scratch, `${tool}-${label}`), '--runroot', path.join(runroot, label), '--storage-driver', 'vfs', ...args]);
    const load = await cli('push', 'pull', `oci:${layout}:v1`);
    assert.equal(load.code, 0, load.stderr);
    const imageId = load.stdout.trim().split('\n').pop();
    const ref = `${registry}/${alice.handle}/device-${tool}:v1`;
    const push = await cli('push', 'push', '--authfile', authfile, '--tls-verify=false', imageId, `docker://${ref}`);
    assert.equal(push.code, 0, push.stderr);
    const tag = (await tagRecord(`device-${tool}`, 'v1')).value;
    assert.ok(tag, `the tag record is in alice's PDS`);
    const pull = await cli('pull', 'pull', '--authfile', authfile, '--tls-verify=false', ref);
    assert.equal(pull.code, 0, pull.stderr);
    // The image ID is its config's digest: the same image came back.
    assert.equal(`sha256:${pull.stdout.trim().split('\n').pop()}`, image.blobs[0].digest);
  });
}

let scripted;
test('a device code gives one secret: pending, slow_down, approved, then invalid_grant', async () => {
  const started = await startCode('script');
  assert.equal(started.status, 200);
  const body = started.json;
  assert.match(body.user_code, USER_CODE);
  assert.equal(body.verification_uri, `${stack.urls.appview}/device`);
  assert.equal(body.verification_uri_complete, `${stack.urls.appview}/device?user_code=${body.user_code}`);
  assert.equal(body.expires_in, 600);
  assert.equal(body.interval, 5);
  assert.equal((await poll(body.device_code)).json.error, 'authorization_pending');
  assert.equal((await poll(body.device_code)).json.error, 'slow_down', 'polled again at once');

  assert.match(await decideInBrowser(body.user_code, 'approve', 'script box'), /Device approved/);
  const first = await poll(body.device_code);
  assert.equal(first.status, 200, first.text);
  assert.equal(first.json.did, alice.did);
  assert.equal(first.json.handle, alice.handle);
  assert.equal(first.json.device_name, 'script box');
  assert.match(first.json.device_secret, /^atcr_dev_/);
  scripted = first.json;
  const second = await poll(body.device_code);
  assert.equal(second.status, 400);
  assert.equal(second.json.error, 'invalid_grant');
  assert.match(second.json.error_description, /used already/);
  assert.equal(sql(`SELECT COUNT(*) AS n FROM devices WHERE did = '${alice.did}'`)[0].n, 2, 'one device per approved code');
  // Approving a spent code again is refused, with a reason.
  assert.match(await decideInBrowser(body.user_code, 'approve'), /This code was approved or denied already/);
});

test('a device code past its expiry gets expired_token and cannot be approved', async () => {
  const { json } = await startCode();
  sql(`UPDATE device_codes SET expires_at = 1 WHERE user_code = '${json.user_code}'`);
  const polled = await poll(json.device_code);
  assert.equal(polled.status, 400);
  assert.equal(polled.json.error, 'expired_token');
  assert.match(await decideInBrowser(json.user_code, 'approve'), /This code has expired/);
  assert.equal(codeRow(json.user_code).state, 'pending', 'nothing approved');
  assert.equal((await poll('no-such-code')).json.error, 'invalid_grant');
});

test('Deny ends the helper\'s login with access_denied and a clear message', { timeout: 120_000 }, async () => {
  const other = path.join(scratch, 'denied-home');
  fs.mkdirSync(other);
  const login = await startLogin(other);
  assert.match(await decideInBrowser(login.code, 'deny'), /Device denied/);
  const done = await login.done;
  assert.equal(done.code, 1);
  assert.match(done.stdout, /The login was denied at/);
  assert.equal(fs.existsSync(path.join(other, '.config/atcr/credentials.json')), false, 'nothing stored');
  assert.equal(codeRow(login.code).state, 'denied');
});

test('an approval sent from another site, or without its CSRF token, is refused and approves nothing', async () => {
  const { json } = await startCode();
  const port = await freePort();
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(
      `<form id="f" method="post" action="${url('/device')}"><input name="user_code" value="${json.user_code}"><input name="action" value="approve"><input name="csrf" value="guess"></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((resolve) => evil.listen(port, '127.0.0.1', resolve));
  try {
    const refused = page.waitForResponse((r) => r.url() === url('/device') && r.request().method() === 'POST');
    await page.goto(`http://127.0.0.1:${port}/`);
    const res = await refused;
    assert.equal(res.status(), 403);
    await page.waitForLoadState('load');
    assert.match(await page.textContent('main'), /sent from another site/);
  } finally {
    evil.close();
  }
  // Same origin, but not the form's token.
  await page.goto(url('/'));
  const status = await page.evaluate(async (code) => (await fetch('/device', {
    method: 'POST', body: new URLSearchParams({ user_code: code, action: 'approve', csrf: 'guess' }),
  })).status, json.user_code);
  assert.equal(status, 403);
  assert.equal(codeRow(json.user_code).state, 'pending', 'nothing approved');
  assert.equal((await poll(json.device_code)).json.error, 'authorization_pending');
});

test('after alice signs out everywhere, a push with the device is refused with the way back, and writes nothing', { timeout: 180_000 }, async () => {
  await page.goto(url('/'));
  await Promise.all([page.waitForURL(url('/')), page.click('nav .account form.sign-out button')]);
  assert.equal(sql(`SELECT COUNT(*) AS n FROM oauth_sessions WHERE did = '${alice.did}'`)[0].n, 0);
  const image = buildImage(scratch, { tag: 'late', layers: [{ 'late.txt': 'after sign-out\n' }] });
  const push = await run('skopeo', ['copy', '--authfile', authfile, '--dest-tls-verify=false', `oci:${image.layout}:late`, `docker://${registry}/${alice.handle}/device-skopeo:late`]);
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /denied.*sign in at http:\/\/127\.0\.0\.1:\d+\/login/i);
  assert.equal((await tagRecord('device-skopeo', 'late')).value, undefined, 'nothing written');
  // The device itself still stands: signing in again is all it takes.
  assert.equal((await fetch(url('/auth/token'), { headers: basic(alice.handle, secret) })).status, 200);
  await signIn(page, stack, alice);
  await page.waitForURL(url('/'));
});

test('a device revoked on the devices page stops at once: /auth/token 401, refresh tokens refused, status says revoked', async () => {
  // A refresh token made from the device secret, while it is good.
  const offline = await postForm('/auth/token', { grant_type: 'password', username: alice.handle, password: secret, access_type: 'offline', service: registry });
  assert.equal(offline.status, 200, offline.text);
  assert.ok(offline.json.refresh_token);
  const refreshed = await postForm('/auth/token', { grant_type: 'refresh_token', refresh_token: offline.json.refresh_token, service: registry });
  assert.equal(refreshed.status, 200, refreshed.text);
  // The secret belongs to alice: under bob's name it is refused.
  const asBob = await fetch(url('/auth/token'), { headers: basic(stack.accounts.bob.handle, secret) });
  assert.equal(asBob.status, 401);
  assert.match(await asBob.text(), /belongs to did:/);

  await page.goto(url('/settings/devices'));
  const rows = page.locator('section.devices tbody tr');
  assert.deepEqual((await rows.locator('td.name').allTextContents()).sort(), ['CI laptop', 'script box']);
  const row = rows.filter({ hasText: 'CI laptop' });
  assert.doesNotMatch(await row.textContent(), /never/, 'its last use is shown');
  await Promise.all([page.waitForURL(url('/settings/devices')), row.locator('button', { hasText: 'Revoke' }).click()]);
  assert.deepEqual(await page.locator('section.devices td.name').allTextContents(), ['script box']);

  const res = await fetch(url('/auth/token'), { headers: basic(alice.handle, secret) });
  assert.equal(res.status, 401);
  assert.match((await res.json()).errors[0].message, /unknown or was revoked/);
  const refresh = await postForm('/auth/token', { grant_type: 'refresh_token', refresh_token: offline.json.refresh_token, service: registry });
  assert.equal(refresh.status, 401, 'the refresh token died with the device');
  const status = await helper(['status']);
  assert.match(status.stdout, /device "CI laptop": revoked/);
  const push = await run('skopeo', ['copy', '--authfile', authfile, '--dest-tls-verify=false', `oci:${buildImage(scratch, { tag: 'x', layers: [{ 'x.txt': 'x\n' }] }).layout}:x`, `docker://${registry}/${alice.handle}/device-skopeo:revoked`]);
  assert.notEqual(push.code, 0, 'a push with the revoked secret fails');
  assert.equal((await tagRecord('device-skopeo', 'revoked')).value, undefined, 'nothing written');

  // The devices page is for signed-in users only.
  const anonymous = await fetch(url('/settings/devices'), { redirect: 'manual' });
  assert.equal(anonymous.status, 303);
  assert.equal(anonymous.headers.get('location'), '/login?return_to=%2Fsettings%2Fdevices');
});

test('logout revokes the device at the appview and forgets it here', async () => {
  const other = path.join(scratch, 'logout-home');
  fs.mkdirSync(other);
  const stored = await helper(['store'], { homeDir: other, input: JSON.stringify({ ServerURL: registry, Username: alice.handle, Secret: scripted.device_secret }) });
  assert.equal(stored.code, 0, stored.stdout);
  assert.equal((await fetch(url('/auth/token'), { headers: basic(alice.handle, scripted.device_secret) })).status, 200);
  const out = await helper(['logout', registry], { homeDir: other });
  assert.equal(out.code, 0, out.stdout);
  assert.match(out.stdout, /The device was revoked\. Logged out of/);
  assert.equal((await fetch(url('/auth/token'), { headers: basic(alice.handle, scripted.device_secret) })).status, 401);
  assert.equal((await helper(['get'], { homeDir: other, input: registry })).stdout.trim(), 'credentials not found in native keychain');
  assert.equal(sql(`SELECT COUNT(*) AS n FROM devices WHERE did = '${alice.did}'`)[0].n, 0);
});
