// `./dev admin …`: the appview's admin endpoints (README.md, "Backfill and
// rebuild"), with the ADMIN_TOKEN from ATCR_ADMIN_TOKEN, or, for the local
// stack, the one it derives from its state (ATCR_STACK_DIR, default .stack/).
//
//   ./dev admin backfill [--pds URL | --did DID] [--url APPVIEW] [--wait]
//   ./dev admin rebuild [--url APPVIEW] [--wait]
//   ./dev admin status [--url APPVIEW]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { localAdminToken } from '../tests/lib/stack.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const USAGE = `usage: ./dev admin backfill [--pds URL | --did DID] [--url APPVIEW] [--wait]
       ./dev admin rebuild [--url APPVIEW] [--wait]
       ./dev admin status [--url APPVIEW]
The token is ATCR_ADMIN_TOKEN, else the local stack's (from ${'${ATCR_STACK_DIR:-.stack}'}/stack.json).`;

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

const [command, ...rest] = process.argv.slice(2);
const flags = {};
for (let i = 0; i < rest.length; i++) {
  const name = rest[i].replace(/^--/, '');
  if (name === 'wait') flags.wait = true;
  else if (['url', 'pds', 'did'].includes(name) && rest[i + 1]) flags[name] = rest[++i];
  else fail(USAGE);
}
const base = (flags.url ?? `http://127.0.0.1:${process.env.ATCR_APPVIEW_PORT ?? 8787}`).replace(/\/$/, '');

function token() {
  if (process.env.ATCR_ADMIN_TOKEN) return process.env.ATCR_ADMIN_TOKEN;
  const dir = path.resolve(process.env.ATCR_CALLER_DIR ?? ROOT, process.env.ATCR_STACK_DIR ?? path.join(ROOT, '.stack'));
  try {
    const state = JSON.parse(readFileSync(path.join(dir, 'stack.json'), 'utf8'));
    return localAdminToken(state.appview.secretKey);
  } catch {
    return fail(`set ATCR_ADMIN_TOKEN (no local stack state in ${dir} to take it from)`);
  }
}

async function call(method, p, body) {
  const res = await fetch(`${base}${p}`, {
    method,
    headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  }).catch((e) => fail(`${method} ${base}${p}: ${e.cause?.message ?? e.message}`));
  const answer = await res.json().catch(() => ({}));
  if (res.status >= 300) fail(`${method} ${base}${p}: ${res.status} ${answer.error ?? JSON.stringify(answer)}`);
  return answer;
}

function summary(status) {
  const repos = status.repos.map((r) => `${r.repos} ${r.state} (${r.records} records, ${r.skipped} skipped)`).join(', ') || 'no accounts';
  const hosts = status.hosts.map((h) => `${h.pds} ${h.state}${h.error ? `: ${h.error}` : ''}`).join(', ') || 'no PDS';
  return `accounts: ${repos}; PDSs: ${hosts}`;
}

async function wait() {
  for (;;) {
    const status = await call('GET', '/admin/backfill');
    const busy = status.repos.some((r) => r.state === 'pending') || status.hosts.some((h) => h.state === 'listing');
    process.stdout.write(`${summary(status)}\n`);
    if (!busy) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

switch (command) {
  case 'backfill': {
    const body = flags.pds ? { pds: flags.pds } : flags.did ? { did: flags.did } : undefined;
    const answer = await call('POST', '/admin/backfill', body);
    process.stdout.write(`queued: ${JSON.stringify(answer.queued)}\n`);
    if (flags.wait) await wait();
    break;
  }
  case 'rebuild': {
    const answer = await call('POST', '/admin/rebuild');
    process.stdout.write(`emptied: ${JSON.stringify(answer.emptied)}\nqueued: ${JSON.stringify(answer.queued)}\n`);
    if (flags.wait) await wait();
    break;
  }
  case 'status':
    process.stdout.write(`${summary(await call('GET', '/admin/backfill'))}\n`);
    break;
  default:
    fail(USAGE);
}
