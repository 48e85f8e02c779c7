// The stack's wiring, end to end: real PLC + PDS, real S3 (s3s-fs) and both
// Workers under wrangler dev with local D1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, startStack } from '../lib/stack.mjs';

let stack;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
}, { timeout: 900_000 });
after(async () => stack && stack.stop());

/** Parses `Bearer realm="…",service="…"` into an object. */
function parseChallenge(header) {
  assert.match(header, /^Bearer /);
  return Object.fromEntries([...header.slice(7).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
}

test('GET /v2/ challenges with a Bearer realm and service', async () => {
  const res = await fetch(`${stack.urls.appview}/v2/`);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  const challenge = parseChallenge(res.headers.get('www-authenticate'));
  assert.equal(challenge.realm, `${stack.urls.appview}/auth/token`);
  assert.equal(challenge.service, `127.0.0.1:${stack.ports.appview}`);
  const body = await res.json();
  assert.equal(body.errors[0].code, 'UNAUTHORIZED');
});

test('registry paths under /v2/ are challenged too, never served as assets', async () => {
  const res = await fetch(`${stack.urls.appview}/v2/alice.test/hello/manifests/latest`);
  assert.equal(res.status, 401);
  assert.ok(res.headers.get('www-authenticate'));
  assert.equal((await res.json()).errors[0].code, 'UNAUTHORIZED');
});

test('the hold serves its did:web document naming its endpoint', async () => {
  const res = await fetch(`${stack.urls.hold}/.well-known/did.json`);
  assert.equal(res.status, 200);
  const doc = await res.json();
  assert.equal(doc.id, `did:web:localhost%3A${stack.ports.hold}`);
  assert.equal(doc.id, stack.holdDid);
  const service = doc.service.find((s) => s.id === '#atcr_hold');
  assert.equal(service.type, 'AtcrHoldService');
  assert.equal(service.serviceEndpoint, stack.urls.hold);
});

test('the hold describes its owner and access policy: the appview\'s default hold is shared', async () => {
  const res = await fetch(`${stack.urls.hold}/`);
  assert.equal(res.status, 200);
  const info = await res.json();
  assert.equal(info.did, stack.holdDid);
  assert.equal(info.owner, stack.accounts.alice.did);
  assert.equal(info.public, true);
  assert.equal(info.allowAllCrew, true, 'every signed-in user may push to the default hold, within a quota');
});

test('appview health: D1 with schema, PLC, handle resolver and default hold all reachable; names its build', async () => {
  const res = await fetch(`${stack.urls.appview}/health`);
  const report = await res.json();
  assert.equal(res.status, 200, JSON.stringify(report));
  assert.equal(report.ok, true);
  const byName = Object.fromEntries(report.checks.map((c) => [c.name, c]));
  for (const name of ['d1', 'plc', 'handle_resolver', 'default_hold']) {
    assert.equal(byName[name]?.ok, true, `${name}: ${JSON.stringify(byName[name])}`);
  }
  assert.equal(byName.dns_resolver, undefined, 'the local stack turns DNS resolution off (no DNS for .test handles)');
  assert.match(byName.d1.detail, /schema version/);
  assertNamesBuild(report);
  assert.match(byName.default_hold.detail, new RegExp(stack.urls.hold.replace(/[.:/]/g, '\\$&')));
});

test('demo accounts exist in the PDS and their app passwords sign in', async () => {
  for (const acct of Object.values(stack.accounts)) {
    const resolved = await fetch(`${stack.urls.pds}/xrpc/com.atproto.identity.resolveHandle?handle=${acct.handle}`);
    assert.equal((await resolved.json()).did, acct.did);
    const session = await fetch(`${stack.urls.pds}/xrpc/com.atproto.server.createSession`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: acct.handle, password: acct.appPassword }),
    });
    assert.equal(session.status, 200);
    assert.equal((await session.json()).did, acct.did);
  }
});

test('the appview renders its home page and serves web/ files under content-hashed names, cached for a year', async () => {
  const res = await fetch(`${stack.urls.appview}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/html/);
  const html = await res.text();
  assert.match(html, /container registry on the AT Protocol/);
  const href = html.match(/<link rel="stylesheet" href="(\/assets\/style\.([0-9a-f]{10})\.css)">/);
  assert.ok(href, 'the page links the stylesheet by its content hash');
  const css = await fetch(`${stack.urls.appview}${href[1]}`);
  assert.equal(css.status, 200);
  assert.match(css.headers.get('content-type'), /text\/css/);
  assert.match(css.headers.get('cache-control'), /max-age=31536000.*immutable/);
  const body = await css.text();
  assert.equal(body, readFileSync(path.join(ROOT, 'web', 'style.css'), 'utf8'));
  assert.equal(crypto.createHash('sha256').update(body).digest('hex').slice(0, 10), href[2]);
  const head = await fetch(`${stack.urls.appview}${href[1]}`, { method: 'HEAD' });
  assert.equal(head.status, 200, 'HEAD answers as GET does, without the body');
  assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(body)));
  // Only the hashed copy is published: nothing links the source's name.
  assert.equal((await fetch(`${stack.urls.appview}/style.css`)).status, 404);
});

/**
 * A health report names its build: the workspace version and the commit
 * scripts/build-worker built from (any commit of this repository:
 * ATCR_E2E_NO_BUILD=1 reuses an older build).
 */
function assertNamesBuild(report) {
  const version = readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8').match(/^version = "(.+)"$/m)[1];
  assert.equal(report.version, version);
  const commit = report.commit.match(/^([0-9a-f]{12})(-dirty)?$/);
  assert.ok(commit, `commit ${report.commit} is a short hash`);
  const known = spawnSync('git', ['cat-file', '-e', `${commit[1]}^{commit}`], { cwd: ROOT });
  assert.equal(known.status, 0, `${commit[1]} is a commit of this repository`);
}

test('hold health names the build: version and commit', async () => {
  assertNamesBuild(await (await fetch(`${stack.urls.hold}/health`)).json());
});

// Runs last: it takes S3 away from the stack.
test('hold health is green with S3 and red without it', async () => {
  const healthy = await fetch(`${stack.urls.hold}/health`);
  const good = await healthy.json();
  assert.equal(healthy.status, 200, JSON.stringify(good));
  const names = good.checks.map((c) => c.name);
  // usage_db: the quotas' D1, since the default hold is shared.
  assert.deepEqual(names, ['s3', 'owner_identity', 'owner_pds', 'usage_db']);
  assert.ok(good.checks.every((c) => c.ok));

  await stack.stopService('s3s-fs');
  const res = await fetch(`${stack.urls.hold}/health`);
  assert.equal(res.status, 503);
  const report = await res.json();
  const s3 = report.checks.find((c) => c.name === 's3');
  assert.equal(s3.ok, false);
  assert.match(s3.detail, /unreachable|answered 5\d\d/);
});
