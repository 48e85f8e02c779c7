// What each Worker's size costs at start-up, against the trivial Rust Worker
// (bench/floor-worker) built with the same toolchain: `wrangler check
// startup` bundles the Worker as `wrangler deploy` would, starts it in the
// local workerd with the V8 profiler attached and reports the CPU time of
// its start-up phase (parsing the script, compiling and instantiating the
// WebAssembly, running the global scope). Cloudflare refuses a Worker whose
// start-up takes longer than its limit (1 s of CPU); its own CPUs differ from
// this machine's, so read the figures against the trivial Worker's, taken
// the same way in the same run. The profiler takes only a few samples of a
// start-up, so one run says little: the median of many is the figure.
//
//   ./dev bench startup [runs per Worker, default 15]
import path from 'node:path';
import os from 'node:os';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ROOT } from '../tests/lib/stack.mjs';

const runs = Number(process.argv[2] ?? 15);
if (!(runs > 0)) {
  console.error('usage: ./dev bench startup [runs per Worker]');
  process.exit(2);
}
const WRANGLER = path.join(ROOT, 'tools', 'node_modules', 'wrangler', 'bin', 'wrangler.js');
const workers = [
  { label: 'trivial Rust Worker (floor)', crate: 'bench/floor-worker', cwd: path.join(ROOT, 'bench', 'floor-worker'), config: 'wrangler.toml' },
  { label: 'appview', crate: 'appview-worker', cwd: ROOT, config: 'wrangler.toml' },
  { label: 'hold', crate: 'hold-worker', cwd: path.join(ROOT, 'hold-worker'), config: 'wrangler.toml' },
];

for (const w of workers) {
  if (process.env.ATCR_E2E_NO_BUILD === '1' && w.crate !== 'bench/floor-worker') continue;
  process.stderr.write(`building ${w.crate} ...\n`);
  execFileSync('bash', [path.join(ROOT, 'scripts', 'build-worker'), w.crate], { stdio: ['ignore', 'ignore', 'inherit'] });
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-bench-startup-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
try {
  for (const w of workers) {
    const active = [];
    let bundle = '?';
    for (let i = 0; i < runs; i++) {
      const out = execFileSync(process.execPath, [WRANGLER, 'check', 'startup', '--config', w.config, '--outfile', path.join(scratch, 'startup.cpuprofile')], {
        cwd: w.cwd, env: { ...process.env, ATCR_PREBUILT: '1', WRANGLER_SEND_METRICS: 'false' }, encoding: 'utf8',
      });
      const ms = out.match(/Active: ([\d.]+) ms/);
      if (!ms) throw new Error(`wrangler check startup for ${w.label} printed no start-up time:\n${out}`);
      active.push(Number(ms[1]));
      bundle = out.match(/Bundle: ([^\n]+)/)?.[1].replace('gzip: ', '').trim() ?? bundle;
    }
    rows.push({ ...w, bundle, active });
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}

const floor = median(rows[0].active);
console.log(`\nstart-up CPU (wrangler check startup: the local workerd, V8 profiler attached), ${runs} runs each; Cloudflare's limit is 1 s`);
const widths = [30, 34, 12, 16, 10];
const fmt = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');
console.log(fmt(['', 'bundle (raw / gzip)', 'median ms', 'min–max ms', 'of floor']));
for (const r of rows) {
  const m = median(r.active);
  console.log(fmt([r.label, r.bundle, m.toFixed(1), `${Math.min(...r.active).toFixed(1)}–${Math.max(...r.active).toFixed(1)}`, (m / floor).toFixed(2)]));
}
