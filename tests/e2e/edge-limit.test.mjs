// The Cloudflare edge's request body limit (100 MB on Free and Pro), as the
// local stack enforces it in front of each Worker (tests/lib/edge.mjs), and
// what it means for clients: a layer sent in one PATCH (skopeo, podman,
// buildah, Docker) must fit under it, while a chunking client that follows
// the upload's OCI-Chunk-Max-Length pushes layers of any size. The hold is
// backed by an R2 binding, whose multipart parts must all be of one size
// but the last: the registry refuses chunks that break that, naming the sizes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { PLAN_BODY_LIMITS } from '../lib/edge.mjs';
import { runIn, oras as orasScript } from '../lib/clients.mjs';
import { listAllRecords } from '../lib/atproto.mjs';
import { buildImage } from '../lib/image.mjs';
import { randomFile } from '../lib/hold.mjs';
import { registryToken, uploadClient } from '../lib/registry.mjs';

const MB = 1_000_000;
const MIB = 1024 * 1024;
const LIMIT = PLAN_BODY_LIMITS.free;

let stack, scratch, registry, alice;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`), hold: { storage: 'r2' }, edgeBodyLimit: LIMIT });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-edge-limit-test-'));
  registry = `127.0.0.1:${stack.ports.appview}`;
  alice = stack.accounts.alice;
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args, input) => runIn(scratch, cmd, args, { input, timeout: 540_000 });
const pushToken = (repo) => registryToken(stack, `repository:${alice.handle}/${repo}:pull,push`, alice);

/** The status a request declaring `length` body bytes gets, without sending any of them. */
function declare(url, method, length, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { ...headers, 'content-length': String(length) } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => { req.destroy(); resolve({ status: res.statusCode, headers: res.headers, body }); });
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

test('the edge answers 413 to a body over the limit, declared or chunked, before the Worker sees it; smaller bodies, HEAD and redirects pass', { timeout: 120_000 }, async () => {
  const token = await pushToken('edge');
  const bearer = { authorization: `Bearer ${token}` };
  const up = uploadClient(stack, bearer);
  assert.equal(stack.edgeBodyLimit, LIMIT);
  const location = await up.start(`${alice.handle}/edge`);
  const refusedBefore = stack.edgeRefused();
  const declared = await declare(up.url(location), 'PATCH', LIMIT + 1, bearer);
  assert.equal(declared.status, 413);
  assert.equal(declared.headers['content-type'], 'text/html');
  assert.match(declared.body, /413 Request Entity Too Large/);
  assert.match(declared.body, /cloudflare/);
  // Against the hold too: a part URL's PUT is a request to the hold Worker.
  assert.equal((await declare(`${stack.urls.hold}/storage/anything`, 'PUT', LIMIT + 1)).status, 413);

  // A chunked body is cut off once it passes the limit.
  let sent = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (sent > LIMIT + 4 * MIB) return controller.close();
      const chunk = new Uint8Array(4 * MIB);
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
  const chunked = await fetch(up.url(location), { method: 'PATCH', headers: bearer, body, duplex: 'half' });
  assert.equal(chunked.status, 413);
  assert.match(await chunked.text(), /413 Request Entity Too Large/);
  const status = await fetch(up.url(location), { headers: bearer });
  assert.equal(status.status, 204);
  assert.equal(status.headers.get('range'), '0-0', 'the upload took none of it');
  assert.equal(stack.edgeRefused(), refusedBefore + 3);

  // Under the limit, everything passes as it is.
  const small = crypto.randomBytes(6 * MIB);
  const ok = await up.patch(await up.start(`${alice.handle}/edge`), small);
  assert.equal(ok.status, 202, await ok.clone().text());
  const digest = `sha256:${crypto.createHash('sha256').update(small).digest('hex')}`;
  const done = await fetch(up.withQuery(ok.headers.get('location'), `digest=${digest}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201, await done.clone().text());
  await up.assertPullable(`${alice.handle}/edge`, digest, small);
});

test('skopeo pushing an image with a 150 MB layer (one PATCH) gets the edge\'s 413 under the 100 MB limit, and nothing is stored', { timeout: 600_000 }, async () => {
  const image = buildImage(scratch, { tag: 'big', layers: [{ 'etc/hello.txt': 'too big for the edge\n' }, { 'data/random.bin': crypto.randomBytes(150 * MB) }] });
  const layer = image.blobs.at(-1);
  assert.ok(layer.size > 150 * MB, 'random bytes do not compress');
  const ref = `${registry}/${alice.handle}/too-big:big`;
  const refusedBefore = stack.edgeRefused();
  const push = await run('skopeo', ['copy', '--retry-times', '0', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`, `oci:${image.layout}:big`, `docker://${ref}`]);
  assert.notEqual(push.code, 0, 'the push failed');
  assert.match(push.stderr, /413|Request Entity Too Large/i, push.stderr);
  process.stderr.write(`skopeo: ${push.stderr.trim().split('\n').pop().slice(0, 300)}\n`);
  assert.ok(stack.edgeRefused() > refusedBefore, 'the edge refused the layer\'s PATCH');

  const token = await pushToken('too-big');
  const manifest = await fetch(`${stack.urls.appview}/v2/${alice.handle}/too-big/manifests/big`, {
    headers: { authorization: `Bearer ${token}`, accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(manifest.status, 404);
  assert.equal((await manifest.json()).errors[0].code, 'MANIFEST_UNKNOWN');
  const layerHead = await fetch(`${stack.urls.appview}/v2/${alice.handle}/too-big/blobs/${layer.digest}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
  assert.equal(layerHead.status, 404, 'the big layer is not in the hold');
  const tags = await listAllRecords(stack.urls.pds, alice.did, 'io.atcr.tag');
  assert.ok(!tags.some((r) => r.value.repository === 'too-big'), 'no io.atcr.tag record was written');
  const manifests = await listAllRecords(stack.urls.pds, alice.did, 'io.atcr.manifest');
  assert.ok(!manifests.some((r) => r.value.repository === 'too-big'), 'no io.atcr.manifest record was written');
});

test('an upload announces its chunk bounds: at least 5 MiB, at most the limit rounded down to 16 MiB parts', async () => {
  const res = await fetch(`${stack.urls.appview}/v2/${alice.handle}/hints/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${await pushToken('hints')}` } });
  assert.equal(res.status, 202);
  assert.equal(res.headers.get('oci-chunk-min-length'), String(5 * MIB));
  assert.equal(res.headers.get('oci-chunk-max-length'), String(80 * MIB), '100,000,000 bytes hold five 16 MiB parts');
  assert.ok(Number(res.headers.get('oci-chunk-max-length')) <= LIMIT);
});

test('on the R2 hold, a chunk storage could not assemble is refused with 416 naming the sizes; chunks of one size and a shorter last complete', { timeout: 120_000 }, async () => {
  const name = `${alice.handle}/uneven`;
  const bearer = { authorization: `Bearer ${await pushToken('uneven')}` };
  const up = uploadClient(stack, bearer);
  const blob = crypto.randomBytes(8 * MIB + 8 * MIB + 6 * MIB);
  const digest = `sha256:${crypto.createHash('sha256').update(blob).digest('hex')}`;
  const first = await up.patch(await up.start(name), blob.subarray(0, 8 * MIB));
  assert.equal(first.status, 202, await first.clone().text());

  // Longer than the first chunk: R2 would refuse to assemble it.
  const longer = await up.patch(first.headers.get('location'), crypto.randomBytes(10 * MIB), { offset: 8 * MIB });
  assert.equal(longer.status, 416);
  const error = (await longer.json()).errors[0];
  assert.equal(error.code, 'BLOB_UPLOAD_INVALID');
  assert.match(error.message, /10485760 bytes, longer than the first \(8388608 bytes\)/);
  assert.equal(longer.headers.get('range'), `0-${8 * MIB - 1}`, 'the 416 says where the upload stands');

  const second = await up.patch(longer.headers.get('location'), blob.subarray(8 * MIB, 16 * MIB), { offset: 8 * MIB });
  assert.equal(second.status, 202, await second.clone().text());
  const last = await up.patch(second.headers.get('location'), blob.subarray(16 * MIB), { offset: 16 * MIB });
  assert.equal(last.status, 202, await last.clone().text());
  // After a shorter chunk, which had to be the last, no more.
  const after = await up.patch(last.headers.get('location'), crypto.randomBytes(MIB), { offset: blob.length });
  assert.equal(after.status, 416);
  assert.match((await after.json()).errors[0].message, /previous chunk was 6291456 bytes, shorter than the first \(8388608 bytes\)/);

  const done = await fetch(up.withQuery(last.headers.get('location'), `digest=${digest}`), { method: 'PUT', headers: bearer });
  assert.equal(done.status, 201, await done.clone().text());
  await up.assertPullable(name, digest, blob);
});

/** An oras-py script as alice (tests/lib/clients.mjs `oras`). */
const oras = (script, params) => orasScript(scratch, script, { registry, user: alice.handle, password: alice.appPassword, ...params });

test('oras pushes a 300 MB layer under the 100 MB limit in chunks of the announced maximum, onto the R2 hold, and pulls it back byte-identical', { timeout: 900_000 }, async () => {
  const file = path.join(scratch, 'layer-300mb.bin');
  const size = 300 * MB;
  const digest = await randomFile(file, size);
  const refusedBefore = stack.edgeRefused();
  const started = Date.now();
  const pushed = await oras(`
container = c.get_container(p["registry"] + "/" + p["user"] + "/oras-big:v1")
# The upload's chunk bounds, from a POST (then cancelled).
r = c.do_request(c.prefix + "://" + container.upload_blob_url(), "POST", headers={"Content-Length": "0"})
hint = int(r.headers["OCI-Chunk-Max-Length"])
c.do_request(c.prefix + "://" + p["registry"] + r.headers["Location"], "DELETE")
config_path = os.path.join(p["scratch"], "config.json")
open(config_path, "wb").write(b"{}")
config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
c.upload_blob(config_path, container, config)
layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": p["digest"], "size": p["size"]}
r = c.upload_blob(p["file"], container, layer, do_chunked=True, chunk_size=hint)
layer_status = r.status_code
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.big", "config": config, "layers": [layer]}
r = c.upload_manifest(manifest, container)
report(hint=hint, layerStatus=layer_status, manifestStatus=r.status_code, manifestBody=r.text)
`, { file, digest, size, scratch });
  const pushMs = Date.now() - started;
  assert.equal(pushed.hint, 80 * MIB);
  assert.equal(pushed.layerStatus, 201);
  assert.equal(pushed.manifestStatus, 201, pushed.manifestBody);
  const patches = pushed.exchanges.filter(([method]) => method === 'PATCH');
  assert.deepEqual(patches.map(([, status]) => status), [202, 202, 202, 202], 'four chunks, each taken');
  assert.deepEqual(patches.map(([, , length]) => length), [80 * MIB, 80 * MIB, 80 * MIB, size - 3 * 80 * MIB]);
  assert.ok(patches.every(([, , length]) => length <= LIMIT), 'every request body fits under the edge limit');
  assert.ok(!pushed.exchanges.some(([, status]) => status === 413), 'the edge refused nothing');
  assert.equal(stack.edgeRefused(), refusedBefore);
  process.stderr.write(`oras: ${size / MB} MB in ${patches.length} chunks of ${pushed.hint} bytes onto the R2 hold in ${(pushMs / 1000).toFixed(1)} s\n`);

  const out = path.join(scratch, 'pulled-300mb.bin');
  const pulled = await oras(`
container = c.get_container(p["registry"] + "/" + p["user"] + "/oras-big:v1")
manifest = c.get_manifest(container)
c.download_blob(container, manifest["layers"][0]["digest"], p["out"])
report(layers=manifest["layers"])
`, { out });
  assert.equal(pulled.layers[0].digest, digest);
  assert.equal(fs.statSync(out).size, size);
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(out)) hash.update(chunk);
  assert.equal(`sha256:${hash.digest('hex')}`, digest, 'the layer comes back byte-identical');
});
