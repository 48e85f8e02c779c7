// The registry against the runtime's floor: a Rust Worker built with the
// same toolchain and served by the same wrangler dev behind the same local
// edge (bench/floor-worker: an empty 200 to everything). The registry's
// cheapest answers are loaded the same way, in alternating rounds so drift
// of the machine falls on both, and each is shown as a share of the floor's
// requests/s: what the registry's own work costs on top of the runtime.
//
// Clients ask for `Accept-Encoding: identity` (as wrk does by default):
// wrangler dev gzips a JSON body for a client that accepts gzip, inside the
// local runtime, where Cloudflare compresses at the edge, outside the
// Worker and its CPU time; the floor's empty body is never compressed. The
// last rows repeat the floor and the 401 with gzip accepted, to show that cost.
// The trivial Worker also answers `/v2/` with a 401 of the registry's shape
// (same headers and body): what that response costs the runtime, apart from
// the registry's code.
//
//   ./dev bench floor [requests per round, default 2000] [rounds, default 3]
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startStack, ROOT } from '../tests/lib/stack.mjs';
import { registryToken, pushImage } from '../tests/lib/registry.mjs';
import { load } from './lib/load.mjs';
import { cpuOfGroups, ownCpuMs } from './lib/cpu.mjs';

const requests = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const log = (m) => process.stderr.write(`${m}\n`);

if (process.env.ATCR_E2E_NO_BUILD !== '1') {
  log('building bench/floor-worker ...');
  execFileSync('bash', [path.join(ROOT, 'scripts', 'build-worker'), 'bench/floor-worker'], { stdio: 'inherit' });
}
const stack = await startStack({ log });
try {
  const floor = await stack.startWorker('floor', path.join(ROOT, 'bench', 'floor-worker', 'wrangler.toml'));
  const alice = stack.accounts.alice;
  const name = `${alice.handle}/floor`;
  const image = await pushImage(stack, name, 'v1', await registryToken(stack, `repository:${name}:pull,push`, alice));
  const pull = { authorization: `Bearer ${await registryToken(stack, `repository:${name}:pull`)}` };
  const accept = 'application/vnd.oci.image.manifest.v1+json';
  const registry = (p) => new URL(p, stack.urls.appview).href;
  const identity = { 'accept-encoding': 'identity' };
  const gzip = { 'accept-encoding': 'gzip' };
  // [what, url, load options, target share, the floor row it is a share of,
  //  and for a row without a url, the row whose figures it repeats]
  const cases = [
    ['floor: empty 200 (trivial Rust Worker)', `${floor}/`, { headers: identity }],
    ['GET /v2/ without a token (401)', registry('/v2/'), { expect: 401, headers: identity }, 0.9, 0],
    ['the same 401 from the trivial Worker', `${floor}/v2/`, { expect: 401, headers: identity }, undefined, 0],
    ['our 401, as a share of that same 401', null, null, 0.9, 2, 1],
    ['manifest GET by tag, authorized', registry(`/v2/${name}/manifests/v1`), { headers: { ...identity, ...pull, accept } }, 0.8, 0],
    ['manifest HEAD by digest, authorized', registry(`/v2/${name}/manifests/${image.manifest}`), { method: 'HEAD', headers: { ...identity, ...pull, accept } }, 0.8, 0],
    ['floor: HEAD (trivial Rust Worker)', `${floor}/`, { method: 'HEAD', headers: identity }],
    ['manifest HEAD, as a share of the floor HEAD', null, null, 0.8, 6, 5],
    ['floor, gzip accepted', `${floor}/`, { headers: gzip }],
    ['401, gzip accepted (wrangler dev compresses)', registry('/v2/'), { expect: 401, headers: gzip }, undefined, 8],
  ];
  const results = cases.map(() => []);
  // Whose CPU each request costs: the Worker's own processes (wrangler and
  // its workerd) and this one (the load and the local edge, in Node).
  const groups = { floor: stack.processGroup('floor'), appview: stack.processGroup('appview') };
  const warmup = 100;
  for (let round = 1; round <= rounds; round++) {
    log(`round ${round} of ${rounds} ...`);
    for (const [i, [, url, opts]] of cases.entries()) {
      if (!url) continue; // a row derived from others
      const worker = url.startsWith(floor) ? 'floor' : 'appview';
      const [before, own] = [cpuOfGroups(groups), ownCpuMs()];
      const result = await load(url, { requests, warmup, ...opts });
      const n = requests + warmup;
      result.workerCpu = (cpuOfGroups(groups)[worker] - before[worker]) / n;
      result.edgeCpu = (ownCpuMs() - own) / n;
      results[i].push(result);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rpsOf = (i) => median(results[i].map((r) => r.rps));
  console.log(`\nthe registry against the runtime's floor (wrangler dev, workerd, the local edge), same machine, one run`);
  console.log(`${requests} requests a round, 16 at a time, ${rounds} rounds alternating; medians of the rounds`);
  console.log('Accept-Encoding: identity but in the gzip rows; each share is of the floor row above it\n');
  console.log('CPU ms per request: the Worker\'s processes (wrangler, workerd) and the bench\'s own (the load and the local edge)\n');
  const row = (c) => `${c[0].padEnd(42)}${c[1].padStart(8)}${c[2].padStart(8)}${c[3].padStart(8)}${c[4].padStart(10)}${c[5].padStart(8)}${c[6].padStart(12)}${c[7].padStart(12)}`;
  console.log(row(['', 'req/s', 'p50 ms', 'p99 ms', 'of floor', 'target', 'Worker CPU', 'edge CPU']));
  for (const [i, [what, url, , target, floorRow, sourceRow]] of cases.entries()) {
    // A derived row repeats another's figures as a share of a different floor.
    const of = url ? i : sourceRow;
    const rps = rpsOf(of);
    const figure = (key, digits) => median(results[of].map((r) => r[key])).toFixed(digits);
    console.log(row([what, url ? rps.toFixed(0) : '', url ? figure('p50', 1) : '', url ? figure('p99', 1) : '',
      floorRow === undefined ? '1.00' : (rps / rpsOf(floorRow)).toFixed(2), target ? `≥ ${target}` : '',
      url ? figure('workerCpu', 2) : '', url ? figure('edgeCpu', 2) : '']));
  }
} finally {
  await stack.stop();
}
