// Multi-platform indexes pushed and pulled by podman, buildah and oras-py, and
// a two-layer image (one layer 200 MB) pushed by oras-py in chunked PATCHes:
// what comes back has the pushed digests and bytes, and every push leaves its
// io.atcr.manifest and io.atcr.tag records in the owner's PDS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { listAllRecords } from '../lib/atproto.mjs';
import { buildImage, buildIndex, OCI_INDEX } from '../lib/image.mjs';

let stack, scratch, registry, alice;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-more-clients-test-'));
  registry = `127.0.0.1:${stack.ports.appview}`;
  alice = stack.accounts.alice;
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args, input) => runIn(scratch, cmd, args, { input, timeout: 540_000 });
const creds = () => `${alice.handle}:${alice.appPassword}`;
const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const fileDigest = (file) => sha256(fs.readFileSync(file));

/** Every record of `collection` in alice's repository. */
const records = (collection) => listAllRecords(stack.urls.pds, alice.did, collection);

/**
 * Asserts alice's PDS holds an io.atcr.manifest record for `digest` (and for
 * each of `children`) in `repository`, and an io.atcr.tag record `tag`
 * pointing at the record of `digest`. Returns the top record.
 */
async function assertRecords(repository, tag, digest, children = []) {
  const manifests = await records('io.atcr.manifest');
  const find = (d) => manifests.find((r) => r.value.repository === repository && r.value.digest === d);
  const top = find(digest);
  assert.ok(top, `an io.atcr.manifest record names ${repository}@${digest}`);
  assert.ok(top.value.manifestBlob?.ref?.$link, 'the record keeps the manifest bytes as a PDS blob');
  for (const child of children) assert.ok(find(child), `an io.atcr.manifest record names the child ${repository}@${child}`);
  if (children.length) {
    assert.deepEqual(top.value.manifests.map((m) => m.digest).sort(), [...children].sort(), 'the index record lists its children');
  }
  const tags = await records('io.atcr.tag');
  const tagRecord = tags.find((r) => r.value.repository === repository && r.value.tag === tag);
  assert.ok(tagRecord, `an io.atcr.tag record names ${repository}:${tag}`);
  assert.equal(tagRecord.value.manifest, top.uri, 'the tag points at the manifest record');
  return top;
}

/** Paths outside `scratch` (podman and buildah need short or lowercase ones), removed at exit. */
const outside = [];
process.on('exit', () => { for (const dir of outside) fs.rmSync(dir, { recursive: true, force: true }); });

/** Moves a layout to a lowercase path (podman and buildah name images after it). */
function lowercaseLayout(layout, label) {
  const to = path.join(os.tmpdir(), `atcr-${label}-layout-${crypto.randomBytes(6).toString('hex')}`);
  outside.push(to);
  fs.renameSync(layout, to);
  return to;
}

/**
 * Checks the index at `ref` through skopeo: it lists amd64 and arm64, its
 * digest is `digest`, and each manifest it names is fetchable by digest with
 * bytes that hash to that digest and have its size. Returns the index and
 * {digest: bytes} of the manifests it names.
 */
async function assertIndexThroughSkopeo(ref, digest) {
  const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal(sha256(raw.stdout), digest, 'the tag serves the pushed index');
  const index = JSON.parse(raw.stdout);
  assert.ok([OCI_INDEX, 'application/vnd.docker.distribution.manifest.list.v2+json'].includes(index.mediaType), index.mediaType);
  assert.deepEqual(index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort(), ['linux/amd64', 'linux/arm64']);
  const repo = ref.replace(/:[^:/]+$/, '');
  const children = {};
  for (const entry of index.manifests) {
    const child = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${repo}@${entry.digest}`]);
    assert.equal(child.code, 0, child.stderr);
    children[entry.digest] = Buffer.from(child.stdout);
    assert.equal(sha256(children[entry.digest]), entry.digest, `${entry.platform.architecture} manifest bytes hash to their digest`);
    assert.equal(children[entry.digest].length, entry.size);
  }
  return { index, children };
}

const INSPECT_ARCHITECTURE = {
  podman: ['image', 'inspect', '--format', '{{.Architecture}}'],
  buildah: ['inspect', '--type', 'image', '--format', '{{.OCIv1.Architecture}}'],
};

/**
 * Pushes an amd64 + arm64 index with `tool` (podman or buildah): manifest
 * create, add from each image's OCI layout, push --all; then pulls each
 * platform into empty storage and checks the image (config digest) and
 * architecture are the pushed ones, and the records are in the PDS.
 */
async function manifestListRoundTrip(tool, repository, tag, pushFlags = []) {
  const multi = buildIndex(scratch, { tag, label: tool });
  const images = multi.images.map((image) => ({ ...image, layout: lowercaseLayout(image.layout, `${tool}-${image.architecture}`) }));
  // Podman refuses a runroot path longer than 50 characters.
  const runroot = fs.mkdtempSync(path.join(os.tmpdir(), `${tool}-`));
  outside.push(runroot);
  const storage = (label) => ['--root', path.join(scratch, `${tool}-${label}-root`), '--runroot', path.join(runroot, label), '--storage-driver', 'vfs'];
  const cli = (label, ...args) => run(tool, [...storage(label), ...args]);

  const list = `${tool}-list-${tag}`;
  const create = await cli('push', 'manifest', 'create', list);
  assert.equal(create.code, 0, create.stderr);
  for (const image of images) {
    const add = await cli('push', 'manifest', 'add', list, `oci:${image.layout}:${image.architecture}`);
    assert.equal(add.code, 0, add.stderr);
  }
  const ref = `${registry}/${alice.handle}/${repository}:${tag}`;
  const digestFile = path.join(scratch, `${tool}-${tag}.digest`);
  const push = await cli('push', 'manifest', 'push', '--all', ...pushFlags, '--tls-verify=false', '--creds', creds(), '--digestfile', digestFile, list, `docker://${ref}`);
  assert.equal(push.code, 0, push.stderr);
  const digest = fs.readFileSync(digestFile, 'utf8').trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);

  const { index, children } = await assertIndexThroughSkopeo(ref, digest);
  for (const image of images) {
    const entry = index.manifests.find((m) => m.platform.architecture === image.architecture);
    assert.equal(entry.digest, image.digest, `the ${image.architecture} manifest went up unchanged from its layout`);
    assert.ok(children[entry.digest].equals(image.manifestBytes), `the ${image.architecture} manifest comes back byte-identical`);
  }
  await assertRecords(repository, tag, digest, index.manifests.map((m) => m.digest));

  for (const image of images) {
    const label = `pull-${image.architecture}`;
    const pull = await cli(label, 'pull', '--platform', `linux/${image.architecture}`, '--tls-verify=false', ref);
    assert.equal(pull.code, 0, pull.stderr);
    const imageId = pull.stdout.trim().split('\n').pop();
    // The image ID is the config's digest: the same image came back.
    assert.equal(`sha256:${imageId}`, image.blobs[0].digest, `${tool} pulled the ${image.architecture} image`);
    const inspect = await cli(label, ...INSPECT_ARCHITECTURE[tool], imageId);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal(inspect.stdout.trim(), image.architecture);
  }
}

test('podman pushes a multi-platform index (amd64 + arm64) with manifest push --all and pulls each platform back', { timeout: 600_000 }, async () => {
  await manifestListRoundTrip('podman', 'podman-multi', 'v1');
});

test('buildah pushes a multi-platform OCI index (amd64 + arm64) with manifest push --all and pulls each platform back', { timeout: 600_000 }, async () => {
  await manifestListRoundTrip('buildah', 'buildah-multi', 'v1', ['--format', 'oci']);
});

// oras-py, driven through its registry API. Each script reads its parameters
// as JSON on stdin, logs every HTTP exchange (method, status, url) through a
// requests hook and prints a JSON report on its last stdout line.
const ORAS_PRELUDE = `
import hashlib, json, os, sys
import oras.client
p = json.load(sys.stdin)
c = oras.client.OrasClient(hostname=p["registry"], insecure=True)
c.login(username=p["user"], password=p["password"], hostname=p["registry"], tls_verify=False)
exchanges = []
c.session.hooks["response"].append(lambda r, *a, **k: exchanges.append([r.request.method, r.status_code, r.request.url]))
def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()
def report(**kw):
    print(json.dumps({"exchanges": exchanges, **kw}))
`;

async function oras(script, params) {
  const res = await run('python3', ['-c', ORAS_PRELUDE + script], JSON.stringify({ registry, user: alice.handle, password: alice.appPassword, ...params }));
  assert.equal(res.code, 0, `${res.stderr}\n${res.stdout}`);
  const out = JSON.parse(res.stdout.trim().split('\n').pop());
  const failed = out.exchanges.filter(([, status]) => status >= 500);
  assert.deepEqual(failed, [], 'no request failed with a server error (oras-py would have retried it)');
  return out;
}

test('oras pushes a two-layer image (one layer 200 MB) in chunked PATCHes and pulls every blob back; the layers unpack', { timeout: 600_000 }, async () => {
  const big = crypto.randomBytes(200 * 1024 * 1024);
  const image = buildImage(scratch, { tag: 'o1', layers: [{ 'etc/oras.txt': 'pushed by oras\n' }, { 'data/big.bin': big }] });
  const repository = 'oras-image';
  const outdir = path.join(scratch, 'oras-image-out');
  fs.mkdirSync(outdir);
  const chunkSize = 32 * 1024 * 1024;
  const pushed = await oras(`
container = c.get_container(p["registry"] + "/" + p["user"] + "/" + p["repository"] + ":o1")
statuses = {}
for blob in p["blobs"]:
    path = os.path.join(p["layout"], "blobs", "sha256", blob["digest"].split(":")[1])
    chunked = blob["mediaType"] != "application/vnd.oci.image.config.v1+json"
    r = c.upload_blob(path, container, blob, do_chunked=chunked, chunk_size=p["chunkSize"])
    statuses[blob["digest"]] = r.status_code
manifest = json.loads(open(os.path.join(p["layout"], "blobs", "sha256", p["manifestDigest"].split(":")[1]), "rb").read())
r = c.upload_manifest(manifest, container)
sent = r.request.body if isinstance(r.request.body, bytes) else r.request.body.encode()
open(os.path.join(p["outdir"], "pushed-manifest.json"), "wb").write(sent)
report(blobStatuses=statuses, manifestStatus=r.status_code, manifestDigestHeader=r.headers.get("Docker-Content-Digest"), manifestDigest=digest_of(sent))
`, { repository, layout: image.layout, blobs: image.blobs, manifestDigest: image.digest, chunkSize, outdir });

  for (const blob of image.blobs) assert.equal(pushed.blobStatuses[blob.digest], 201, `blob ${blob.digest} upload completed`);
  const patches = pushed.exchanges.filter(([method, status]) => method === 'PATCH' && status === 202);
  const bigLayer = image.blobs[2];
  assert.ok(bigLayer.size > 200 * 1024 * 1024, 'random bytes do not compress');
  assert.equal(patches.length, 1 + Math.ceil(bigLayer.size / chunkSize), 'one PATCH for the small layer, several for the big one');
  assert.ok(pushed.exchanges.some(([method, status]) => method === 'PUT' && status === 201), 'the config went up monolithically (POST then PUT)');
  assert.equal(pushed.manifestStatus, 201);
  assert.equal(pushed.manifestDigestHeader, pushed.manifestDigest, 'Docker-Content-Digest names the bytes oras sent');
  const digest = pushed.manifestDigest;
  await assertRecords(repository, 'o1', digest);

  // Pull: the manifest as raw bytes, every blob by digest.
  const pulled = await oras(`
container = c.get_container(p["registry"] + "/" + p["user"] + "/" + p["repository"] + ":o1")
r = c.do_request(c.prefix + "://" + container.manifest_url(), "GET", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
open(os.path.join(p["outdir"], "pulled-manifest.json"), "wb").write(r.content)
manifest = c.get_manifest(container)
for blob in [manifest["config"], *manifest["layers"]]:
    c.download_blob(container, blob["digest"], os.path.join(p["outdir"], "blobs", blob["digest"].split(":")[1]))
report(manifestStatus=r.status_code, contentType=r.headers.get("Content-Type"), digestHeader=r.headers.get("Docker-Content-Digest"))
`, { repository, outdir });
  assert.equal(pulled.manifestStatus, 200);
  assert.equal(pulled.contentType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(pulled.digestHeader, digest);
  assert.ok(fs.readFileSync(path.join(outdir, 'pulled-manifest.json')).equals(fs.readFileSync(path.join(outdir, 'pushed-manifest.json'))), 'the manifest comes back byte-identical');
  assert.ok(pulled.exchanges.some(([method, status]) => method === 'GET' && status === 307), 'blob GETs were redirected to storage');
  for (const blob of image.blobs) {
    const file = path.join(outdir, 'blobs', blob.digest.split(':')[1]);
    assert.equal(fs.statSync(file).size, blob.size, `blob ${blob.digest} size`);
    assert.equal(fileDigest(file), blob.digest, `blob ${blob.digest} bytes`);
  }

  // The layers are real tarballs that unpack to the files they were built from.
  const rootfs = path.join(scratch, 'oras-rootfs');
  fs.mkdirSync(rootfs);
  for (const [layer, expected] of [[image.blobs[1], './etc/oras.txt'], [image.blobs[2], './data/big.bin']]) {
    const file = path.join(outdir, 'blobs', layer.digest.split(':')[1]);
    const list = await run('tar', ['-tzf', file]);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(list.stdout.split('\n').includes(expected), `${expected} is in layer ${layer.digest}: ${list.stdout}`);
    const unpack = await run('tar', ['-xzf', file, '-C', rootfs]);
    assert.equal(unpack.code, 0, unpack.stderr);
  }
  assert.equal(fs.readFileSync(path.join(rootfs, 'etc/oras.txt'), 'utf8'), 'pushed by oras\n');
  assert.equal(fileDigest(path.join(rootfs, 'data/big.bin')), sha256(big), 'the 200 MB file unpacks intact');

  const inspect = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry}/${alice.handle}/${repository}:o1`]);
  assert.equal(inspect.code, 0, inspect.stderr);
  const info = JSON.parse(inspect.stdout);
  assert.equal(info.Digest, digest);
  assert.equal(info.Architecture, 'amd64');
  assert.deepEqual(info.Layers, image.blobs.slice(1).map((b) => b.digest));
});

test('oras pushes a multi-platform OCI index (amd64 + arm64) and pulls the index and each child back byte-identical', { timeout: 600_000 }, async () => {
  const multi = buildIndex(scratch, { tag: 'ix', label: 'oras' });
  const repository = 'oras-multi';
  const outdir = path.join(scratch, 'oras-multi-out');
  fs.mkdirSync(outdir);
  const pushed = await oras(`
base = p["registry"] + "/" + p["user"] + "/" + p["repository"]
children = []
for image in p["images"]:
    container = c.get_container(base + ":ix")
    for blob in image["blobs"]:
        path = os.path.join(p["layout"], "blobs", "sha256", blob["digest"].split(":")[1])
        r = c.upload_blob(path, container, blob)
        assert r.status_code == 201, (blob, r.status_code, r.text)
    manifest = json.loads(open(os.path.join(p["layout"], "blobs", "sha256", image["digest"].split(":")[1]), "rb").read())
    # oras-py sends json.dumps(manifest): the digest is that of those bytes.
    expected = digest_of(json.dumps(manifest).encode())
    r = c.upload_manifest(manifest, c.get_container(base + "@" + expected))
    sent = r.request.body if isinstance(r.request.body, bytes) else r.request.body.encode()
    assert digest_of(sent) == expected
    open(os.path.join(p["outdir"], "pushed-" + image["architecture"] + ".json"), "wb").write(sent)
    children.append({"architecture": image["architecture"], "digest": expected, "size": len(sent), "status": r.status_code,
                     "digestHeader": r.headers.get("Docker-Content-Digest")})
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ch["digest"], "size": ch["size"],
     "platform": {"architecture": ch["architecture"], "os": "linux"}} for ch in children]}
index_bytes = json.dumps(index, separators=(",", ":")).encode()
open(os.path.join(p["outdir"], "pushed-index.json"), "wb").write(index_bytes)
container = c.get_container(base + ":ix")
r = c.do_request(c.prefix + "://" + container.manifest_url(), "PUT", data=index_bytes, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
report(children=children, indexStatus=r.status_code, indexBody=r.text, indexDigestHeader=r.headers.get("Docker-Content-Digest"), indexDigest=digest_of(index_bytes))
`, { repository, layout: multi.layout, images: multi.images.map((i) => ({ architecture: i.architecture, digest: i.digest, blobs: i.blobs })), outdir });
  for (const child of pushed.children) {
    assert.equal(child.status, 201, `${child.architecture} manifest PUT`);
    assert.equal(child.digestHeader, child.digest);
  }
  assert.equal(pushed.indexStatus, 201, pushed.indexBody);
  assert.equal(pushed.indexDigestHeader, pushed.indexDigest);
  const childDigests = pushed.children.map((ch) => ch.digest);
  await assertRecords(repository, 'ix', pushed.indexDigest, childDigests);

  const pulled = await oras(`
base = p["registry"] + "/" + p["user"] + "/" + p["repository"]
container = c.get_container(base + ":ix")
index = c.get_manifest(container)
r = c.do_request(c.prefix + "://" + container.manifest_url(), "GET", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
open(os.path.join(p["outdir"], "pulled-index.json"), "wb").write(r.content)
children = []
for entry in index["manifests"]:
    child = c.get_container(base + "@" + entry["digest"])
    rc = c.do_request(c.prefix + "://" + child.manifest_url(), "GET", headers={"Accept": entry["mediaType"]})
    open(os.path.join(p["outdir"], "pulled-" + entry["platform"]["architecture"] + ".json"), "wb").write(rc.content)
    children.append({"architecture": entry["platform"]["architecture"], "status": rc.status_code, "contentType": rc.headers.get("Content-Type")})
    manifest = rc.json()
    for blob in [manifest["config"], *manifest["layers"]]:
        c.download_blob(child, blob["digest"], os.path.join(p["outdir"], "blobs", blob["digest"].split(":")[1]))
report(indexStatus=r.status_code, contentType=r.headers.get("Content-Type"), children=children)
`, { repository, outdir });
  assert.equal(pulled.indexStatus, 200);
  assert.equal(pulled.contentType, OCI_INDEX);
  assert.ok(fs.readFileSync(path.join(outdir, 'pulled-index.json')).equals(fs.readFileSync(path.join(outdir, 'pushed-index.json'))), 'the index comes back byte-identical');
  assert.deepEqual(pulled.children.map((ch) => ch.architecture).sort(), ['amd64', 'arm64']);
  for (const child of pulled.children) {
    assert.equal(child.status, 200);
    assert.equal(child.contentType, 'application/vnd.oci.image.manifest.v1+json');
    const pulledBytes = fs.readFileSync(path.join(outdir, `pulled-${child.architecture}.json`));
    assert.ok(pulledBytes.equals(fs.readFileSync(path.join(outdir, `pushed-${child.architecture}.json`))), `the ${child.architecture} manifest comes back byte-identical`);
  }
  for (const image of multi.images) {
    for (const blob of image.blobs) {
      assert.equal(fileDigest(path.join(outdir, 'blobs', blob.digest.split(':')[1])), blob.digest, `${image.architecture} blob ${blob.digest}`);
    }
  }
  const { children } = await assertIndexThroughSkopeo(`${registry}/${alice.handle}/${repository}:ix`, pushed.indexDigest);
  for (const child of pushed.children) {
    assert.ok(children[child.digest].equals(fs.readFileSync(path.join(outdir, `pushed-${child.architecture}.json`))), `skopeo reads the ${child.architecture} manifest oras pushed`);
  }
});
