// CPU profile of one kind of request: the local stack is started, a small
// image pushed, and the V8 inspector of the appview Worker (and of the shared
// hold, which blob GETs call) attached with the Profiler domain while n
// requests of that kind are sent one after another, after a warm-up. It
// prints CPU time per request in each Worker and the functions with the most
// self time.
//
// Kinds:
//   base      GET /v2/ without a token (the 401 challenge)
//   manifest  manifest GET by tag, with a pull token
//   head      manifest HEAD by digest, with a pull token
//   blob      blob GET (the 307 to a presigned URL), with a pull token
//   floor     an empty 200 from a trivial Rust Worker (bench/floor-worker)
//             served the same way: what the runtime costs on its own
//   floor401  the trivial Worker's 401 of the registry's shape: what that
//             response costs, apart from the registry's code
//   all       each of the above in turn (default)
//
//   ./dev bench profile [kind[,kind…], default all] [n, default 500]
//
// CPU time is the profile's sampled time outside "(idle)": JavaScript,
// WebAssembly, garbage collection, "(program)" (V8 work that belongs to no
// function) and samples in no script at all. workerd does not mark the
// isolate idle while it waits, so that last kind includes waiting on I/O;
// "in code" leaves it and "(program)" out, and is the figure to compare. WebAssembly functions show under their names
// when the build keeps a name section; otherwise as wasm-function[index].
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startStack, ROOT } from '../tests/lib/stack.mjs';
import { registryToken, pushImage } from '../tests/lib/registry.mjs';

const KINDS = ['floor', 'floor401', 'base', 'manifest', 'head', 'blob'];
const kindArg = process.argv[2] ?? 'all';
const n = Number(process.argv[3] ?? 500);
const kinds = kindArg === 'all' ? KINDS : kindArg.split(',');
if (!kinds.every((k) => KINDS.includes(k)) || !(n > 0)) {
  console.error(`usage: ./dev bench profile [${[...KINDS, 'all'].join('|')}] [requests]`);
  process.exit(2);
}
const WARMUP = 50;
const TOP = 25;
const SAMPLING_US = 50;

/** Self time by function (microseconds), from a Profiler.Profile. */
function summarize(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const node = byId.get(profile.samples[i]);
    const name = node.callFrame.url || node.callFrame.functionName ? describe(node.callFrame) : UNATTRIBUTED;
    self.set(name, (self.get(name) ?? 0) + dt);
    total += dt;
  }
  const idle = self.get('(idle)') ?? 0;
  const names = [...self.keys()];
  const top = [...self.entries()].filter(([k]) => k !== '(idle)')
    .map(([name, us]) => ({ name, self: us })).sort((a, b) => b.self - a.self);
  const busy = total - idle;
  return {
    busy,
    code: busy - (self.get('(program)') ?? 0) - (self.get(UNATTRIBUTED) ?? 0),
    gc: self.get('(garbage collector)') ?? 0,
    program: self.get('(program)') ?? 0,
    top,
    wasmNamed: names.some((k) => k.startsWith('[wasm]') && !/wasm-function\[/.test(k)),
    wasmAnonymous: names.some((k) => /wasm-function\[/.test(k)),
  };
}

/**
 * Samples in a frame with neither name nor script: workerd shows its own
 * work (and time the isolate waits on I/O) this way; it is counted in CPU
 * but not in the "code" figure.
 */
const UNATTRIBUTED = '(anonymous, no script: runtime or waiting)';

function describe(frame) {
  const fn = frame.functionName || '(anonymous)';
  if (frame.url?.startsWith('wasm://')) return `[wasm] ${fn}`;
  if (fn.startsWith('(')) return fn;
  const file = frame.url ? frame.url.split('/').pop() : '';
  return `${fn}${file ? ` (${file}:${frame.lineNumber + 1})` : ''}`;
}

/** A Chrome DevTools Protocol session with one Worker's inspector (wrangler dev --inspector-port). */
class Inspector {
  static async connect(label, port) {
    // wrangler lists the Worker it runs at /json; its entry has the WebSocket to debug it.
    const deadline = Date.now() + 30_000;
    let targets = [];
    while (Date.now() < deadline) {
      try { targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json(); } catch { targets = []; }
      if (targets.some((t) => t.webSocketDebuggerUrl)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const target = targets.find((t) => t.webSocketDebuggerUrl);
    if (!target) throw new Error(`${label}: no debuggable target at http://127.0.0.1:${port}/json`);
    // wrangler's inspector proxy takes DevTools connections from local origins only.
    const ws = new WebSocket(target.webSocketDebuggerUrl, { headers: { origin: 'http://localhost' } });
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error(`${label}: cannot open ${target.webSocketDebuggerUrl}`)); });
    const inspector = new Inspector(label, ws);
    await inspector.send('Profiler.enable');
    await inspector.send('Profiler.setSamplingInterval', { interval: SAMPLING_US });
    return inspector;
  }

  constructor(label, ws) {
    this.label = label;
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map();
    ws.onmessage = (event) => {
      const msg = JSON.parse(typeof event.data === 'string' ? event.data : Buffer.from(event.data).toString());
      const waiter = msg.id !== undefined && this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(`${this.label}: ${JSON.stringify(msg.error)}`));
      else waiter.resolve(msg.result);
    };
  }

  send(method, params = {}) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  start() { return this.send('Profiler.start'); }

  async stop() { return (await this.send('Profiler.stop')).profile; }

  close() { this.ws.close(); }
}

await main();

async function main() {
  const log = (m) => process.stderr.write(`${m}\n`);
  const floorWanted = kinds.some((k) => k.startsWith('floor'));
  if (floorWanted && process.env.ATCR_E2E_NO_BUILD !== '1') {
    log('building bench/floor-worker ...');
    execFileSync('bash', [path.join(ROOT, 'scripts', 'build-worker'), 'bench/floor-worker'], { stdio: 'inherit' });
  }
  const stack = await startStack({ log });
  try {
    const floor = floorWanted && await stack.startWorker('floor', path.join(ROOT, 'bench', 'floor-worker', 'wrangler.toml'));
    const alice = stack.accounts.alice;
    const name = `${alice.handle}/profile`;
    const pushToken = await registryToken(stack, `repository:${name}:pull,push`, alice);
    const image = await pushImage(stack, name, 'v1', pushToken);
    const pull = await registryToken(stack, `repository:${name}:pull`);
    const auth = { authorization: `Bearer ${pull}` };
    const accept = { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' };
    const base = stack.urls.appview;
    const requests = {
      floor: { label: 'empty 200 from the trivial Rust Worker', url: `${floor}/`, init: {}, status: 200, worker: 'floor' },
      floor401: { label: "the registry's 401 from the trivial Rust Worker", url: `${floor}/v2/`, init: {}, status: 401, worker: 'floor' },
      base: { label: 'GET /v2/ without a token', url: `${base}/v2/`, init: {}, status: 401 },
      manifest: { label: 'manifest GET by tag', url: `${base}/v2/${name}/manifests/v1`, init: { headers: { ...auth, ...accept } }, status: 200 },
      head: { label: 'manifest HEAD by digest', url: `${base}/v2/${name}/manifests/${image.manifest}`, init: { method: 'HEAD', headers: { ...auth, ...accept } }, status: 200 },
      blob: { label: 'blob GET (307)', url: `${base}/v2/${name}/blobs/${image.layer}`, init: { headers: auth, redirect: 'manual' }, status: 307 },
    };
    const workers = { appview: await Inspector.connect('appview', stack.ports.appviewInspector) };
    if (floor) workers.floor = await Inspector.connect('floor', stack.ports.floorInspector);
    const hold = await Inspector.connect('hold', stack.ports.holdInspector);
    try {
      for (const kind of kinds) {
        const r = requests[kind];
        const send = async () => {
          const t = performance.now();
          const res = await fetch(r.url, r.init);
          await res.arrayBuffer();
          if (res.status !== r.status) throw new Error(`${r.label}: ${res.status}, expected ${r.status}`);
          return performance.now() - t;
        };
        for (let i = 0; i < WARMUP; i++) await send();
        // The Worker that answers this kind (the appview, or the floor) and the hold.
        const front = workers[r.worker ?? 'appview'];
        await Promise.all([front.start(), hold.start()]);
        const latencies = [];
        for (let i = 0; i < n; i++) latencies.push(await send());
        const [av, ho] = await Promise.all([front.stop(), hold.stop()]);
        latencies.sort((a, b) => a - b);
        console.log(`\n## ${r.label} (${kind}): ${n} requests one at a time, after ${WARMUP} warm-up; wall p50 ${latencies[n >> 1].toFixed(2)} ms`);
        for (const [label, profile] of [[front.label, av], ['hold', ho]]) {
          const s = summarize(profile);
          const perRequest = (us) => `${(us / n / 1000).toFixed(3)} ms`;
          console.log(`${label.padEnd(8)} CPU ${perRequest(s.busy)} per request, in code (JS, wasm, GC) ${perRequest(s.code)} (GC ${perRequest(s.gc)}, "(program)" ${perRequest(s.program)}); ${s.wasmNamed ? 'wasm names present' : s.wasmAnonymous ? 'wasm functions unnamed' : 'no wasm samples'}`);
          if (label === 'hold' && s.busy / n < 50) continue; // the hold took no part
          console.log(`  top ${TOP} by self time (ms per request, share of CPU):`);
          for (const f of s.top.slice(0, TOP)) {
            console.log(`  ${(f.self / n / 1000).toFixed(4).padStart(9)} ${((100 * f.self) / s.busy).toFixed(1).padStart(5)}%  ${f.name}`);
          }
        }
      }
    } finally {
      for (const w of Object.values(workers)) w.close();
      hold.close();
    }
  } finally {
    await stack.stop();
  }
}
