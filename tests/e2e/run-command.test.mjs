// `./dev run`'s stack process: comes up on configured ports, prints what a
// user needs, and on Ctrl-C (SIGINT) stops every process it started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, NODE22, freePort } from '../lib/stack.mjs';

function listening(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

/** Processes whose command line mentions `needle`, other than ourselves. */
function processesMentioning(needle) {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(needle) && !line.includes('ps -eo'));
}

test('the run command starts on configured ports and Ctrl-C leaves no process behind', { timeout: 600_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'atcr-run-'));
  const names = ['PLC', 'PDS', 'S3', 'HOLD', 'APPVIEW', 'HOLD_INSPECTOR', 'APPVIEW_INSPECTOR', 'BYO_HOLD', 'BYO_HOLD_INSPECTOR'];
  const env = { ...process.env, ATCR_STACK_DIR: dir };
  const ports = {};
  for (const name of names) {
    ports[name] = await freePort();
    env[`ATCR_${name}_PORT`] = String(ports[name]);
  }
  const child = spawn(NODE22, [path.join(ROOT, 'scripts', 'run-stack.mjs')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await new Promise((resolve, reject) => {
      const timer = setInterval(() => {
        if (output.includes('Ctrl-C stops everything')) { clearInterval(timer); resolve(); }
        if (child.exitCode !== null) { clearInterval(timer); reject(new Error(`run exited early:\n${output}`)); }
      }, 200);
    });
    assert.match(output, new RegExp(`appview \\(registry\\)\\s+http://127\\.0\\.0\\.1:${ports.APPVIEW}`));
    assert.match(output, /alice\.test\s+did:plc:\S+\s+alice-pass\s+\S{4}-\S{4}-\S{4}-\S{4}/);
    assert.match(output, /skopeo copy/);
    assert.match(output, new RegExp(`shared hold\\s+http://localhost:${ports.HOLD}\\s+did:web:localhost%3A${ports.HOLD}`));
    assert.match(output, new RegExp(`alice's own hold\\s+http://localhost:${ports.BYO_HOLD}\\s+did:web:localhost%3A${ports.BYO_HOLD}`));
    for (const name of ['PLC', 'PDS', 'S3', 'HOLD', 'APPVIEW', 'BYO_HOLD']) {
      assert.ok(await listening(ports[name]), `${name} should listen on ${ports[name]}`);
    }
    const v2 = await fetch(`http://127.0.0.1:${ports.APPVIEW}/v2/`);
    assert.equal(v2.status, 401);

    child.kill('SIGINT');
    const { code } = await exited;
    assert.equal(code, 0, output.slice(-3000));
    for (const name of ['PLC', 'PDS', 'S3', 'HOLD', 'APPVIEW', 'BYO_HOLD']) {
      assert.equal(await listening(ports[name]), false, `${name} still listening on ${ports[name]}`);
    }
    assert.deepEqual(processesMentioning(dir), [], 'processes left behind');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
