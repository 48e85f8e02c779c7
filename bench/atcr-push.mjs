// `atcr push` of an image with one big layer, side by side with the same
// bytes uploaded straight to the S3 server in multipart parts of the same
// size and parallelism (the physical limit on this machine), and with
// skopeo's push (one PATCH per layer, streamed through the appview: the edge
// limit is lifted for it). Also reports atcr's peak memory (RSS).
//
//   ./dev bench push [layer MB, default 1024] [parallel, default 4] [part MB, default 16]
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, ROOT } from '../tests/lib/stack.mjs';
import { randomFile } from '../tests/lib/hold.mjs';
import { fileImage } from '../tests/lib/image.mjs';
import { directS3Upload } from './lib/s3.mjs';

const sizeMb = Number(process.argv[2] ?? 1024);
const parallel = Number(process.argv[3] ?? 4);
const partMb = Number(process.argv[4] ?? 16);
const MIB = 1024 * 1024;

process.stderr.write('building atcr (release) ...\n');
execFileSync('cargo', ['build', '--release', '-q', '-p', 'docker-credential-atcr'], { cwd: ROOT, stdio: 'inherit' });
const bin = (name) => path.join(ROOT, 'target', 'release', name);

const stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: 0 });
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-bench-push-'));
/** Runs a program with HOME in the scratch folder; resolves to its output, or throws. */
const run = (cmd, args) => new Promise((resolve, reject) => {
  const child = spawn(cmd, args, { env: { ...process.env, HOME: scratch, XDG_RUNTIME_DIR: scratch, XDG_CONFIG_HOME: path.join(scratch, '.config'), XDG_CACHE_HOME: path.join(scratch, '.cache') } });
  let out = '', err = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { err += c; });
  child.on('close', (code) => (code === 0 ? resolve({ out, err }) : reject(new Error(`${cmd} ${args.join(' ')}: ${code}\n${err}`))));
  if (cmd.endsWith('docker-credential-atcr')) child.stdin.end(JSON.stringify({ ServerURL: registry, Username: alice.handle, Secret: alice.appPassword }));
});
const registry = `127.0.0.1:${stack.ports.appview}`;
const alice = stack.accounts.alice;

try {
  await run(bin('docker-credential-atcr'), ['store']);
  const size = sizeMb * MIB;
  const file = path.join(scratch, 'layer.bin');
  const results = {};

  let digest = await randomFile(file, size);
  let t = performance.now();
  const rss = path.join(scratch, 'rss');
  const pushed = await run('/usr/bin/time', ['-f', '%M', '-o', rss, bin('atcr'), 'push', `oci:${fileImage(scratch, { file, digest, size, tag: 'b' }).layout}:b`,
    `${registry}/${alice.handle}/bench:atcr`, '--parallel', String(parallel), '--part-size', `${partMb}MiB`]);
  results.atcr = performance.now() - t;
  const peakKb = Number(fs.readFileSync(rss, 'utf8').trim().split('\n').pop());
  const phases = pushed.err.match(/parts ([\d.]+) s, verified by the hold ([\d.]+) s/);

  results.s3 = await directS3Upload(stack, file, size, { partMb, parallel });

  // Fresh bytes for skopeo: the registry would find atcr's layer already there.
  digest = await randomFile(file, size);
  t = performance.now();
  let skopeoFailed;
  try {
    await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`,
      `oci:${fileImage(scratch, { file, digest, size, tag: 'b' }).layout}:b`, `docker://${registry}/${alice.handle}/bench:skopeo`]);
  } catch (e) {
    skopeoFailed = e.message.split('\n').pop().slice(-300);
  }
  results.skopeo = performance.now() - t;

  const line = (name, ms) => `${name.padEnd(34)} ${(ms / 1000).toFixed(2).padStart(8)} s ${(sizeMb / (ms / 1000)).toFixed(0).padStart(6)} MiB/s ${(ms / results.s3).toFixed(2).padStart(7)}`;
  console.log(`\none ${sizeMb} MiB layer of random bytes; parts of ${partMb} MiB, ${parallel} at a time`);
  console.log(`${''.padEnd(34)} ${'time'.padStart(10)} ${'rate'.padStart(12)} ${'vs S3'.padStart(7)}`);
  console.log(line('atcr push (to the hold, parts)', results.atcr));
  console.log(line('direct S3 multipart (same parts)', results.s3));
  console.log(skopeoFailed ? `skopeo push (one PATCH, no limit) failed after ${(results.skopeo / 1000).toFixed(1)} s: ${skopeoFailed}` : line('skopeo push (one PATCH, no limit)', results.skopeo));
  console.log(`atcr push: the parts took ${phases?.[1]} s, the hold's completeUpload (reading the assembled layer back to check its digest, then copying it to its key) ${phases?.[2]} s; peak RSS ${(peakKb / 1024).toFixed(0)} MiB`);
} finally {
  await stack.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
}
