// `atcr` at full scale, behind the edge's real request body limit (100 MB,
// Cloudflare Free and Pro). An image with a 150 MB layer: skopeo, which
// sends a layer in one PATCH, gets the edge's 413; `atcr push` sends it
// straight to alice's hold; skopeo, podman and oras pull it back
// byte-identical. A 2 GiB layer of random bytes (nothing compresses): `atcr
// push` keeps its memory under 256 MB, is killed halfway and run again,
// and sends only the parts storage lacks; `atcr pull` and skopeo bring back
// the same digest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, ROOT } from '../lib/stack.mjs';
import { PLAN_BODY_LIMITS } from '../lib/edge.mjs';
import { runIn, oras, atcrPushCounts as counts } from '../lib/clients.mjs';
import { buildImage, fileImage } from '../lib/image.mjs';
import { randomFile } from '../lib/hold.mjs';

const HELPER = path.join(ROOT, 'target', 'debug', 'docker-credential-atcr');
const ATCR = path.join(ROOT, 'target', 'debug', 'atcr');
const MB = 1_000_000;
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const LIMIT = PLAN_BODY_LIMITS.free;
const RSS_CEILING_KB = 256 * 1024;

let stack, scratch, registry, alice;
before(async () => {
  execFileSync('cargo', ['build', '-q', '-p', 'docker-credential-atcr'], { cwd: ROOT, stdio: 'inherit' });
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), edgeBodyLimit: LIMIT, byoHold: true });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-scale-test-'));
  delete process.env.XDG_CONFIG_HOME;
  delete process.env.XDG_CACHE_HOME;
  registry = `127.0.0.1:${stack.ports.appview}`;
  alice = stack.accounts.alice;
  const stored = await runIn(scratch, HELPER, ['store'], {
    input: JSON.stringify({ ServerURL: registry, Username: alice.handle, Secret: alice.appPassword }),
  });
  assert.equal(stored.code, 0, stored.stdout);
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args) => runIn(scratch, cmd, args, { timeout: 900_000 });


/** Runs `atcr args` under /usr/bin/time: {code, stdout, stderr, peakKb}. */
async function measuredAtcr(args) {
  const rss = path.join(scratch, `rss-${crypto.randomUUID()}`);
  const res = await run('/usr/bin/time', ['-f', '%M', '-o', rss, ATCR, ...args]);
  return { ...res, peakKb: Number(fs.readFileSync(rss, 'utf8').trim().split('\n').pop()) };
}

/** The sha256 of a file, streamed. */
async function fileDigest(file) {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

const blobPath = (layout, digest) => path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));

test('a 150 MB layer: skopeo gets the edge\'s 413, atcr push succeeds, and skopeo, podman and oras pull it back byte-identical', { timeout: 900_000 }, async () => {
  assert.equal(stack.edgeBodyLimit, 100 * MB);
  const big = crypto.randomBytes(150 * MB);
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'etc/release': 'scale test\n' }, { 'data/big.bin': big }] });
  const layer = image.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  assert.ok(layer.size > LIMIT, 'the layer is over the edge\'s limit');
  const ref = `${registry}/${alice.handle}/scale:v1`;

  const refusedBefore = stack.edgeRefused();
  const skopeo = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`, `oci:${image.layout}:v1`, `docker://${ref}`]);
  assert.notEqual(skopeo.code, 0, 'one PATCH over the limit fails');
  assert.match(skopeo.stderr, /413|Request Entity Too Large/i, skopeo.stderr);
  assert.ok(stack.edgeRefused() > refusedBefore, 'the edge refused it, before the Worker');

  const push = await run(ATCR, ['push', `oci:${image.layout}:v1`, ref]);
  assert.equal(push.code, 0, push.stderr);
  const c = counts(push.stdout);
  assert.equal(c.direct, 1, 'the big layer went straight to the hold');
  assert.equal(c.sent, Math.ceil(layer.size / (16 * MIB)), 'in 16 MiB parts');

  const out = path.join(scratch, 'skopeo-150');
  const pulled = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:v1`]);
  assert.equal(pulled.code, 0, pulled.stderr);
  for (const blob of [...image.blobs, { digest: image.digest, size: image.manifestBytes.length }]) {
    assert.equal(await fileDigest(blobPath(out, blob.digest)), blob.digest, `skopeo: ${blob.digest}`);
  }

  // podman checks every blob's digest as it pulls, then unpacks the layers.
  const storage = ['--root', path.join(scratch, 'podman-root'), '--runroot', path.join(scratch, 'podman-run'), '--storage-driver', 'vfs'];
  const podman = (...args) => run('podman', [...storage, ...args]);
  const pull = await podman('pull', '--tls-verify=false', ref);
  assert.equal(pull.code, 0, pull.stderr);
  assert.equal(`sha256:${pull.stdout.trim().split('\n').pop()}`, image.blobs[0].digest, 'the image ID is the config pushed');
  const mount = await podman('image', 'mount', image.blobs[0].digest.slice(7));
  assert.equal(mount.code, 0, mount.stderr);
  assert.ok(fs.readFileSync(path.join(mount.stdout.trim(), 'data/big.bin')).equals(big), 'podman unpacks the bytes pushed');
  await podman('image', 'unmount', image.blobs[0].digest.slice(7));

  const orasOut = path.join(scratch, 'oras-150.bin');
  const got = await oras(scratch, `
container = c.get_container(p["registry"] + "/" + p["user"] + "/scale:v1")
manifest = c.get_manifest(container)
c.download_blob(container, p["digest"], p["out"])
report(layers=manifest["layers"])
`, { registry, user: alice.handle, password: alice.appPassword, digest: layer.digest, out: orasOut });
  assert.deepEqual(got.layers.map((l) => l.digest), image.manifest.layers.map((l) => l.digest));
  assert.equal(await fileDigest(orasOut), layer.digest, 'oras: the layer byte-identical');
});

test('a 2 GiB layer: atcr push under 256 MB of memory, killed halfway and run again without resending its parts; atcr pull and skopeo bring back the same digest', { timeout: 1_800_000 }, async (t) => {
  const size = 2 * GIB;
  const file = path.join(scratch, 'layer-2gib.bin');
  const digest = await randomFile(file, size);
  const image = fileImage(scratch, { file, digest, size, tag: 'g1' });
  const ref = `${registry}/${alice.handle}/scale2g:g1`;
  const args = ['push', `oci:${image.layout}:g1`, ref];
  const totalParts = Math.ceil(size / (16 * MIB));

  // Killed (SIGKILL: no chance to tidy up) once half the layer is sent; its
  // plain progress lines, a tenth at a time, say when.
  const first = spawn(ATCR, args, {
    env: { ...process.env, HOME: scratch, XDG_RUNTIME_DIR: scratch }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let progress = '';
  const killed = await new Promise((resolve) => {
    first.stderr.on('data', (chunk) => {
      progress += chunk;
      const done = [...progress.matchAll(/([\d.]+) (GiB|MiB)\/2\.00 GiB/g)].map(([, n, unit]) => Number(n) * (unit === 'GiB' ? GIB : MIB));
      if (done.some((bytes) => bytes >= size / 2)) first.kill('SIGKILL');
    });
    first.on('close', (code, signal) => resolve({ code, signal }));
  });
  assert.equal(killed.signal, 'SIGKILL', `the first push was cut off, not finished: ${progress}`);
  const saved = fs.readdirSync(path.join(scratch, '.cache', 'atcr', 'uploads'));
  assert.equal(saved.length, 1, 'the upload\'s parts were saved as they went');
  const state = JSON.parse(fs.readFileSync(path.join(scratch, '.cache', 'atcr', 'uploads', saved[0])));
  const stored = Object.keys(state.parts).length;
  assert.ok(stored >= totalParts / 2 - 8 && stored < totalParts, `about half the parts stored: ${stored} of ${totalParts}`);

  const second = await measuredAtcr(args);
  assert.equal(second.code, 0, second.stderr);
  const c = counts(second.stdout);
  assert.equal(c.resumed, stored, 'every stored part is reused');
  assert.equal(c.sent + c.resumed, totalParts);
  assert.equal(c.bytes, size - c.resumed * 16 * MIB, 'only the missing parts\' bytes are sent');
  assert.ok(second.peakKb < RSS_CEILING_KB, `atcr push peaked at ${(second.peakKb / 1024).toFixed(0)} MiB`);
  t.diagnostic(`atcr push 2 GiB: resumed ${c.resumed} of ${totalParts} parts, sent ${(c.bytes / MIB).toFixed(0)} MiB, peak RSS ${(second.peakKb / 1024).toFixed(0)} MiB`);

  const out = path.join(scratch, 'atcr-2g');
  const pulled = await measuredAtcr(['pull', ref, `oci:${out}:g1`]);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.ok(pulled.peakKb < RSS_CEILING_KB, `atcr pull peaked at ${(pulled.peakKb / 1024).toFixed(0)} MiB`);
  t.diagnostic(`atcr pull 2 GiB: peak RSS ${(pulled.peakKb / 1024).toFixed(0)} MiB`);
  assert.equal(await fileDigest(blobPath(out, digest)), digest, 'atcr pull: the same digest');
  fs.rmSync(out, { recursive: true, force: true });

  // dir: keeps each blob as it came (an oci: layout gzips uncompressed layers).
  const skopeoOut = path.join(scratch, 'skopeo-2g');
  const skopeo = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `dir:${skopeoOut}`]);
  assert.equal(skopeo.code, 0, skopeo.stderr);
  assert.equal(await fileDigest(path.join(skopeoOut, digest.slice('sha256:'.length))), digest, 'skopeo: the same digest');
  fs.rmSync(skopeoOut, { recursive: true, force: true });
});
