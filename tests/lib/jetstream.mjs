// A Jetstream-compatible server for tests, fed by a real PDS's
// com.atproto.sync.subscribeRepos firehose.
//
// It serves Jetstream's JSON over WebSocket at
// /subscribe?wantedCollections=…&cursor=…: each event is
//   {did, time_us, kind: "commit", commit: {rev, operation, collection, rkey, record?, cid?}}
//   {did, time_us, kind: "identity", identity: {did, handle?, seq, time}}
//   {did, time_us, kind: "account", account: {did, active, status?, seq, time}}
// (https://github.com/bluesky-social/jetstream, "Consuming Jetstream").
// wantedCollections takes NSIDs and NSID prefixes (`io.atcr.*`) and filters
// commits only, as Jetstream does. Every event is kept, so a `cursor`
// (time_us) replays from there; without one a client gets live events.
//
// Identity events carry no handle here (the firehose library drops an
// unverified one); account events are as the PDS sent them.
//
// time_us comes from the firehose event's own time (strictly increasing),
// not from when this server saw it: the server reads the PDS's firehose
// from its start, so a server started again gives the same events the same
// time_us, and a consumer's cursor means the same thing to it.

import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(ROOT, 'tools', 'package.json'));

/**
 * Starts the server on `port` (0: any) reading `pdsUrl`'s firehose.
 * Resolves to { url, port, events, subscriptions, pause(), resume(), stop(),
 * clients() }.
 * `pause()` closes every subscriber and refuses new ones (503) while the
 * firehose is still read into the replay buffer: a consumer cut off.
 */
export async function startJetstream({ pdsUrl, port = 0, log = () => {} }) {
  const { Firehose } = await import(require.resolve('@atproto/sync'));
  const { lexToJson } = await import(require.resolve('@atproto/lex-json'));
  const { WebSocketServer } = require('ws');

  /** Every event so far, in time_us order. */
  const events = [];
  const subscribers = new Set();
  /** Every subscription accepted: {wantedCollections, cursor, at}. */
  const subscriptions = [];
  let lastSeq;
  let lastTimeUs = 0;
  let paused = false;

  const timeUs = (iso) => {
    const t = Math.max(Date.parse(iso) * 1000, lastTimeUs + 1);
    lastTimeUs = t;
    return t;
  };

  function toJetstream(evt) {
    const base = { did: evt.did, time_us: timeUs(evt.time) };
    switch (evt.event) {
      case 'create':
      case 'update':
        return { ...base, kind: 'commit', commit: {
          rev: evt.rev, operation: evt.event, collection: evt.collection, rkey: evt.rkey,
          record: lexToJson(evt.record), cid: evt.cid.toString(),
        } };
      case 'delete':
        return { ...base, kind: 'commit', commit: {
          rev: evt.rev, operation: 'delete', collection: evt.collection, rkey: evt.rkey,
        } };
      case 'identity':
        return { ...base, kind: 'identity', identity: {
          did: evt.did, ...(evt.handle ? { handle: evt.handle } : {}), seq: evt.seq, time: evt.time,
        } };
      case 'account':
        return { ...base, kind: 'account', account: {
          did: evt.did, active: evt.active, ...(evt.status ? { status: evt.status } : {}), seq: evt.seq, time: evt.time,
        } };
      default:
        return null;
    }
  }

  const firehose = new Firehose({
    // Commits are taken as the PDS sends them (unauthenticated): nothing to
    // resolve. (The library's resolver also refuses the local http PLC.)
    idResolver: { did: { resolve: async () => null }, handle: { resolve: async () => undefined } },
    service: pdsUrl.replace(/^http/, 'ws'),
    unauthenticatedCommits: true,
    unauthenticatedHandles: true,
    excludeSync: true,
    // From the start of the PDS's history, then from the last event seen.
    getCursor: () => lastSeq ?? 0,
    subscriptionReconnectDelay: 200,
    handleEvent: (evt) => {
      lastSeq = evt.seq;
      const out = toJetstream(evt);
      if (!out) return;
      events.push(out);
      const text = JSON.stringify(out);
      for (const sub of subscribers) if (sub.wants(out)) sub.ws.send(text);
    },
    onError: (err) => log(`jetstream: firehose: ${err.message}${err.cause ? `: ${err.cause.message ?? err.cause}` : ''}`),
  });
  firehose.start();

  const server = http.createServer((req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not found; WebSocket at /subscribe' }));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/subscribe' || paused) {
      socket.end(`HTTP/1.1 ${paused ? '503 Service Unavailable' : '404 Not Found'}\r\nconnection: close\r\n\r\n`);
      return;
    }
    const wanted = url.searchParams.getAll('wantedCollections').flatMap((v) => v.split(',')).filter(Boolean);
    const cursor = url.searchParams.get('cursor');
    subscriptions.push({ wantedCollections: wanted, cursor: cursor === null ? null : Number(cursor), at: Date.now() });
    wss.handleUpgrade(req, socket, head, (ws) => {
      const sub = { ws, wants: (evt) => evt.kind !== 'commit' || matches(wanted, evt.commit.collection) };
      // Replay first (synchronously, so no live event slips in between).
      if (cursor !== null) {
        const from = Number(cursor);
        for (const evt of events) if (evt.time_us >= from && sub.wants(evt)) ws.send(JSON.stringify(evt));
      }
      subscribers.add(sub);
      ws.on('close', () => subscribers.delete(sub));
      ws.on('error', () => subscribers.delete(sub));
    });
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actualPort = server.address().port;

  function disconnectAll() {
    for (const sub of subscribers) sub.ws.terminate();
    subscribers.clear();
  }

  return {
    url: `ws://127.0.0.1:${actualPort}`,
    port: actualPort,
    events,
    subscriptions,
    clients: () => subscribers.size,
    pause() { paused = true; disconnectAll(); },
    resume() { paused = false; },
    async stop() {
      disconnectAll();
      await firehose.destroy().catch(() => {});
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Jetstream's wantedCollections: none means all; `a.b.*` is a prefix. */
function matches(wanted, collection) {
  if (wanted.length === 0) return true;
  return wanted.some((w) => (w.endsWith('.*') ? collection.startsWith(w.slice(0, -1)) : w === collection));
}
