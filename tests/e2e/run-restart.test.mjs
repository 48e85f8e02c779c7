// `./dev run` a second time brings the local world back: the same accounts
// (DIDs, handles, passwords, app passwords), the images pushed before (PDS
// records, blobs in the bucket) and the D1 index. `--fresh` starts from
// nothing, and a state directory that cannot be reused is explained, with the
// command that starts fresh.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, NODE22, freePort } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { xrpc } from '../lib/atproto.mjs';
import { buildImage } from '../lib/image.mjs';
import { registryToken } from '../lib/registry.mjs';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-restart-test-'));
const dir = path.join(scratch, 'state');
const running = new Set();
after(() => {
  for (const child of running) child.kill('SIGKILL');
  fs.rmSync(scratch, { recursive: true, force: true });
});

/**
 * Starts the run command; `up` resolves once it printed its banner and
 * rejects if it exits first; `exited` resolves to {code, signal}.
 */
function startRun(env, args = []) {
  const child = spawn(NODE22, [path.join(ROOT, 'scripts', 'run-stack.mjs'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const run = { child, output: '' };
  run.exited = new Promise((resolve) => child.once('exit', (code, signal) => { running.delete(child); resolve({ code, signal }); }));
  run.up = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      run.output += chunk;
      if (run.output.includes('Ctrl-C stops everything')) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    run.exited.then(({ code, signal }) => reject(new Error(`the run command exited (${code ?? signal}) before it was up:\n${run.output.slice(-4000)}`)));
  });
  run.up.catch(() => {}); // awaited by the caller when it expects the stack to come up
  return run;
}

/** Ctrl-C, and the run command stops cleanly. */
async function interrupt(run) {
  run.child.kill('SIGINT');
  const { code } = await run.exited;
  assert.equal(code, 0, run.output.slice(-3000));
}

/** The demo account line the banner prints: handle, DID, password, app password. */
function printedAccount(output, handle) {
  const line = output.split('\n').find((l) => l.trim().startsWith(`${handle} `));
  assert.ok(line, `the banner names ${handle}:\n${output}`);
  const [, did, password, appPassword] = line.trim().split(/\s+/);
  assert.match(did, /^did:plc:/);
  return { handle, did, password, appPassword };
}

async function stackEnv(extra = {}) {
  const env = { ...process.env, ATCR_STACK_DIR: dir, ...extra };
  delete env.ATCR_STACK_FRESH;
  delete env.ATCR_CALLER_DIR;
  for (const name of ['PLC', 'PDS', 'S3', 'HOLD', 'APPVIEW', 'HOLD_INSPECTOR', 'APPVIEW_INSPECTOR', 'BYO_HOLD', 'BYO_HOLD_INSPECTOR']) {
    env[`ATCR_${name}_PORT`] = String(await freePort());
  }
  return env;
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sh = (cmd, args) => runIn(scratch, cmd, args);
const catalog = async (env) => {
  const appview = `http://127.0.0.1:${env.ATCR_APPVIEW_PORT}`;
  const stack = { urls: { appview }, ports: { appview: env.ATCR_APPVIEW_PORT } };
  const res = await fetch(`${appview}/v2/_catalog`, { headers: { authorization: `Bearer ${await registryToken(stack, 'registry:catalog:*')}` } });
  assert.equal(res.status, 200);
  return (await res.json()).repositories;
};

test('a state directory that cannot be reused is refused with the command that starts fresh, and left alone', async () => {
  const env = await stackEnv();
  const cases = [
    // A directory from before the state file existed.
    [() => fs.mkdirSync(path.join(dir, 'pds'), { recursive: true }), /it has no stack\.json, so it was made by an older version/],
    // A first start that stopped before the accounts were made.
    [() => fs.writeFileSync(path.join(dir, 'stack.json'), JSON.stringify({ layout: 1, complete: false })), /its first start did not finish/],
    // A stack made on other ports: its DIDs name the PDS and the hold by port.
    [() => {
      fs.writeFileSync(path.join(dir, 'plc-ops.jsonl'), '');
      fs.writeFileSync(path.join(dir, 'stack.json'), JSON.stringify({ layout: 1, complete: true, ports: { pds: 1, hold: 2 }, bucket: 'atcr-blobs', holdStorage: 's3' }));
    }, /it was made with PDS port 1 \(ATCR_PDS_PORT=1\), hold port 2 \(ATCR_HOLD_PORT=2\)/],
  ];
  for (const [prepare, reason] of cases) {
    prepare();
    const run = startRun(env);
    const { code } = await run.exited;
    assert.equal(code, 1, run.output);
    assert.match(run.output, new RegExp(`the state directory ${escape(dir)} cannot be reused: `));
    assert.match(run.output, reason);
    assert.match(run.output, new RegExp(`To start fresh .*\\n {2}ATCR_STACK_DIR=${escape(dir)} \\./dev run --fresh\\n\\(or set ATCR_STACK_FRESH=1\\)`));
    assert.doesNotMatch(run.output, /\n\s+at /, 'no stack trace');
    assert.ok(fs.existsSync(path.join(dir, 'pds')), 'the directory is not touched');
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

let before; // what the restart test pushed and was told, for the --fresh test
test('after Ctrl-C, the run command comes back with the same accounts, logins, images and index', { timeout: 900_000 }, async () => {
  const env = await stackEnv();
  const registry = `127.0.0.1:${env.ATCR_APPVIEW_PORT}`;
  const first = startRun(env);
  await first.up;
  assert.match(first.output, new RegExp(`State: new, in ${escape(dir)}\\.`));
  const alice = printedAccount(first.output, 'alice.test');
  const bob = printedAccount(first.output, 'bob.test');

  const image = buildImage(scratch, {
    tag: 'v1',
    layers: [{ 'etc/hello.txt': 'kept across restarts\n' }, { 'data/random.bin': crypto.randomBytes(3 * 1024 * 1024) }],
  });
  const ref = `${registry}/${alice.handle}/kept:v1`;
  const push = await sh('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`, `oci:${image.layout}:v1`, `docker://${ref}`]);
  assert.equal(push.code, 0, push.stderr);
  await interrupt(first);

  // Same directory and ports; the Workers built by the first run are reused.
  const second = startRun({ ...env, ATCR_E2E_NO_BUILD: '1' });
  await second.up;
  assert.match(second.output, new RegExp(`State: reused ${escape(dir)} \\(made [^)]+\\): the accounts, images and index from before\\.`));
  assert.deepEqual(printedAccount(second.output, 'alice.test'), alice, 'alice keeps her DID, password and app password');
  assert.deepEqual(printedAccount(second.output, 'bob.test'), bob);

  // The image comes back byte for byte (manifest from the PDS, blobs from the bucket).
  const out = path.join(scratch, 'pulled');
  const pull = await sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const blobs = path.join(image.layout, 'blobs', 'sha256');
  for (const hex of fs.readdirSync(blobs)) {
    const pulled = path.join(out, 'blobs', 'sha256', hex);
    assert.ok(fs.existsSync(pulled), `sha256:${hex} pulled`);
    assert.ok(fs.readFileSync(pulled).equals(fs.readFileSync(path.join(blobs, hex))), `sha256:${hex} byte-identical`);
  }
  const pulledIndex = JSON.parse(fs.readFileSync(path.join(out, 'index.json'), 'utf8'));
  assert.equal(pulledIndex.manifests[0].digest, image.digest);
  // The D1 index kept it too.
  assert.ok((await catalog(env)).includes(`${alice.handle}/kept`), 'the catalog (D1) still lists the repository');

  // The printed credentials work: the PDS password, the registry login, and a push.
  const pds = `http://localhost:${env.ATCR_PDS_PORT}`;
  const session = await xrpc(pds, 'com.atproto.server.createSession', { body: { identifier: alice.handle, password: alice.password } });
  assert.equal(session.did, alice.did);
  const login = await sh('skopeo', ['login', '--tls-verify=false', '-u', alice.handle, '-p', alice.appPassword, registry]);
  assert.equal(login.code, 0, login.stderr);
  const again = await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${image.layout}:v1`, `docker://${registry}/${alice.handle}/kept:v2`]);
  assert.equal(again.code, 0, again.stderr);
  const tags = await sh('skopeo', ['list-tags', '--tls-verify=false', `docker://${registry}/${alice.handle}/kept`]);
  assert.deepEqual(JSON.parse(tags.stdout).Tags.sort(), ['v1', 'v2']);
  await interrupt(second);
  before = { env, alice, ref };
});

test('--fresh deletes the state and starts a clean stack', { timeout: 900_000 }, async () => {
  assert.ok(before, 'the restart test left a stack to start over from');
  const { env, alice, ref } = before;
  const run = startRun({ ...env, ATCR_E2E_NO_BUILD: '1' }, ['--fresh']);
  await run.up;
  assert.match(run.output, new RegExp(`State: new, in ${escape(dir)} \\(--fresh deleted the previous state\\)\\.`));
  const fresh = printedAccount(run.output, 'alice.test');
  assert.notEqual(fresh.did, alice.did, 'alice is a new account');
  const plc = await fetch(`http://localhost:${env.ATCR_PLC_PORT}/${alice.did}`);
  assert.equal(plc.status, 404, 'the PLC no longer knows the old DID');
  assert.deepEqual(await catalog(env), [], 'the D1 index is empty');
  const inspect = await sh('skopeo', ['inspect', '--tls-verify=false', '--no-creds', `docker://${ref}`]);
  assert.notEqual(inspect.code, 0, 'the image pushed before is gone');
  assert.match(inspect.stderr, /manifest unknown|not found/i);
  for (const bucket of fs.readdirSync(path.join(dir, 's3'))) {
    assert.deepEqual(fs.readdirSync(path.join(dir, 's3', bucket)), [], `bucket ${bucket} is empty`);
  }
  await interrupt(run);
});
