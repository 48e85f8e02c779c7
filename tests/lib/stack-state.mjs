// A stack's state directory survives restarts: `stack.json` keeps what a
// restart needs (the demo accounts, the keys the PDS and the appview sign and
// encrypt with, the ports baked into DIDs), `plc-ops.jsonl` every operation
// the PLC directory accepted. PLC operations are self-certifying, so
// replaying the log into a fresh in-memory PLC gives back the same DID
// documents; the PDS (SQLite, blobs on disk), the S3 folder, local D1 and the
// holds' state are on disk already.
import crypto from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Bumped whenever a state directory written before can no longer be reused. */
export const STATE_LAYOUT = 1;
export const STATE_FILE = 'stack.json';
export const PLC_LOG = 'plc-ops.jsonl';
/** What startStack puts in a state directory (how a stack directory is recognised). */
const STACK_ENTRIES = [STATE_FILE, PLC_LOG, 'pds', 'pds-blobs', 's3', 'hold-state', 'appview-state', 'hold.env', 'appview.env'];

/** A state directory that cannot be reused; its message says why, for people. */
export class StackStateError extends Error {
  constructor(dir, reason) {
    super(`the state directory ${dir} cannot be reused: ${reason}`);
    this.name = 'StackStateError';
    this.dir = dir;
  }
}

const isEmpty = (dir) => !existsSync(dir) || readdirSync(dir).length === 0;

/** True when `dir` is absent, empty, or made by startStack: safe to delete for a fresh start. */
export function looksLikeStackDir(dir) {
  if (isEmpty(dir)) return true;
  const entries = readdirSync(dir);
  return entries.includes(STATE_FILE) || entries.some((e) => STACK_ENTRIES.includes(e));
}

/**
 * The saved state of `dir`, or null when there is none (absent or empty
 * directory). Throws a StackStateError when `dir` holds something that cannot
 * be reused: an older layout, or a first start that never finished.
 */
export function readState(dir) {
  if (isEmpty(dir)) return null;
  const file = path.join(dir, STATE_FILE);
  if (!existsSync(file)) {
    throw new StackStateError(dir, `it has no ${STATE_FILE}, so it was made by an older version of the stack (or by something else)`);
  }
  let state;
  try {
    state = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new StackStateError(dir, `${STATE_FILE} is not readable JSON (${err.message})`);
  }
  if (state?.layout !== STATE_LAYOUT) {
    throw new StackStateError(dir, `${STATE_FILE} has layout ${JSON.stringify(state?.layout)}, this version reads layout ${STATE_LAYOUT}`);
  }
  if (!state.complete) {
    throw new StackStateError(dir, 'its first start did not finish (the demo accounts were not all created)');
  }
  if (!existsSync(path.join(dir, PLC_LOG))) {
    throw new StackStateError(dir, `the PLC operation log ${PLC_LOG} is missing`);
  }
  return state;
}

/**
 * Fails when the stack would start on settings that the saved identities
 * depend on: the PDS's URL is in every account's DID document, the holds'
 * DIDs (their ports) in manifest records and profiles, and blobs live in
 * the bucket. `ports` are {pds, hold, byoHold}.
 */
export function checkCompatible(dir, state, { ports, bucket, holdStorage }) {
  const differ = [];
  if (state.ports.pds !== ports.pds) differ.push(`PDS port ${state.ports.pds} (ATCR_PDS_PORT=${state.ports.pds})`);
  if (state.ports.hold !== ports.hold) differ.push(`hold port ${state.ports.hold} (ATCR_HOLD_PORT=${state.ports.hold})`);
  // alice's own hold, when both runs start one: her profile names it.
  if (state.ports.byoHold && ports.byoHold && state.ports.byoHold !== ports.byoHold) {
    differ.push(`alice's hold port ${state.ports.byoHold} (ATCR_BYO_HOLD_PORT=${state.ports.byoHold})`);
  }
  if (state.bucket !== bucket) differ.push(`bucket ${state.bucket} (ATCR_S3_BUCKET=${state.bucket})`);
  if (state.holdStorage !== holdStorage) differ.push(`hold storage ${state.holdStorage}`);
  if (differ.length) {
    throw new StackStateError(dir, `it was made with ${differ.join(', ')}, which its DIDs and records depend on; start with the same settings`);
  }
}

/** A new state for a stack about to be created in an empty directory. */
export function newState({ ports, bucket, holdStorage }) {
  const hex = () => crypto.randomBytes(32).toString('hex');
  return {
    layout: STATE_LAYOUT,
    complete: false,
    createdAt: new Date().toISOString(),
    ports: { pds: ports.pds, hold: ports.hold, byoHold: ports.byoHold ?? null },
    bucket,
    holdStorage,
    // The PDS signs its accounts' PLC operations with this key (a restart
    // with another key could not change their handles or keys any more).
    pds: { plcRotationKeyHex: hex() },
    appview: { signingKey: hex(), secretKey: hex() },
    // Where the S3-backed holds' keys start: at the bucket's top (see
    // HOLD_KEY_PREFIX in stack.mjs). State made before this was recorded
    // has its blobs under distribution's root, and keeps them there.
    hold: { sessionSecret: hex(), keyPrefix: '' },
    accounts: {},
  };
}

/**
 * The state once the accounts exist (the directory can be restarted from
 * then on), with the ports this run used: a hold started for the first time
 * is held to its port from now on.
 */
export function completeState(state, settings, accounts) {
  const ports = { ...state.ports };
  for (const [name, port] of Object.entries(settings.ports)) if (port != null) ports[name] = port;
  return { ...state, ports, complete: true, accounts };
}

/** Writes `state` atomically (a half-written file is never left behind), readable only by its owner. */
export function saveState(dir, state) {
  const file = path.join(dir, STATE_FILE);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function removeState(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The dev-env's in-memory PLC directory, made durable: the operations in
 * `dir`'s log are replayed first (each is checked again, as when it was
 * first submitted), then every operation it accepts is appended to the log
 * before the PLC answers.
 */
export async function startPersistentPlc(devEnv, port, dir) {
  const log = path.join(dir, PLC_LOG);
  const plc = await devEnv.TestPlc.create({ port });
  const db = plc.ctx.db;
  try {
    const lines = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
    for (const [i, line] of lines.entries()) {
      try {
        const { did, operation } = JSON.parse(line);
        await db.validateAndAddOp(did, operation);
      } catch (err) {
        throw new StackStateError(dir, `line ${i + 1} of the PLC operation log ${PLC_LOG} does not replay (${err.message})`);
      }
    }
  } catch (err) {
    await plc.close();
    throw err;
  }
  const add = db.validateAndAddOp.bind(db);
  db.validateAndAddOp = async (did, operation, ...rest) => {
    await add(did, operation, ...rest);
    appendFileSync(log, `${JSON.stringify({ did, operation })}\n`);
  };
  return plc;
}

async function xrpc(pdsUrl, method, body, token) {
  const res = await fetch(`${pdsUrl}/xrpc/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, json };
}

/**
 * A saved demo account, checked against the restarted PDS: its DID signs in
 * with its password. Its app password is kept when it still works
 * and re-issued (`appPasswordReissued`) when it does not.
 */
export async function restoreAccount(dir, pdsUrl, { handle, did, password, appPassword }) {
  // Signed in by DID: a handle changed since is taken from the PDS.
  const session = await xrpc(pdsUrl, 'com.atproto.server.createSession', { identifier: did, password });
  if (!session.ok || session.json.did !== did) {
    const why = session.ok ? `it is ${session.json.did} now` : `${session.status} ${JSON.stringify(session.json)}`;
    throw new StackStateError(dir, `${handle} (${did}) cannot sign in to the PDS with its saved password (${why})`);
  }
  const saved = { handle: session.json.handle, did, password, appPassword };
  const app = await xrpc(pdsUrl, 'com.atproto.server.createSession', { identifier: did, password: appPassword });
  if (app.ok) return { ...saved };
  const fresh = await xrpc(pdsUrl, 'com.atproto.server.createAppPassword', { name: `atcr-demo-${Date.now()}` }, session.json.accessJwt);
  if (!fresh.ok) throw new Error(`createAppPassword for ${saved.handle}: ${fresh.status} ${JSON.stringify(fresh.json)}`);
  return { ...saved, appPassword: fresh.json.password, appPasswordReissued: true };
}
