// OCI artifacts with a `subject`, pushed and pulled by skopeo, podman and
// buildah (Debian bookworm: skopeo 1.9.3, podman 4.3.1, buildah 1.28.2, all
// on containers/image 5.23), each found through the referrers API.
//
// What these versions can do:
// - skopeo copies an artifact (non-image config, SBOM layer, artifactType,
//   subject) between an OCI layout and the registry without touching its bytes.
// - podman and buildah cannot pull or `manifest add` an artifact whose config
//   is not an image config ("unsupported image-specific operation on
//   artifact"), and have no artifact commands. They do copy one unchanged as
//   an entry of a manifest list: `manifest add --all` of an OCI index that
//   gives the entry a platform does not read its config, and `manifest push
//   --all` copies the entry as it is, to the registry or back to an OCI layout.
// - `podman push` / `buildah push` of an image with a subject from local
//   storage rewrite the manifest (layers recompressed): the subject survives,
//   artifactType does not (c/image 5.23's manifest type has no such field).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { registryToken } from '../lib/registry.mjs';
import { buildArtifact, buildImage, layoutBlobs, subjectOf, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST } from '../lib/image.mjs';

const SBOM_TYPE = 'application/vnd.example.sbom+json';
const PROVENANCE_TYPE = 'application/vnd.example.provenance+json';
const IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';

let stack, scratch, registry, alice;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-artifact-clients-test-'));
  registry = `127.0.0.1:${stack.ports.appview}`;
  alice = stack.accounts.alice;
}, { timeout: 900_000 });
after(async () => {
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args) => runIn(scratch, cmd, args);
async function ok(cmd, args) {
  const res = await run(cmd, args);
  assert.equal(res.code, 0, `${cmd} ${args.join(' ')}\n${res.stderr}`);
  return res;
}
const creds = () => `${alice.handle}:${alice.appPassword}`;
const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
const readDigest = (file) => fs.readFileSync(file, 'utf8').trim();
const sbomLayer = (label) => ({
  mediaType: 'application/spdx+json',
  content: JSON.stringify({ spdxVersion: 'SPDX-2.3', name: label, packages: [{ name: `pkg-${label}`, versionInfo: '1.0.0' }] }),
});

/** Paths outside `scratch` (podman and buildah need short or lowercase ones), removed at exit. */
const outside = [];
process.on('exit', () => { for (const dir of outside) fs.rmSync(dir, { recursive: true, force: true }); });
function lowercaseLayout(layout, label) {
  const to = path.join(os.tmpdir(), `atcr-${label}-layout-${crypto.randomBytes(6).toString('hex')}`);
  outside.push(to);
  fs.renameSync(layout, to);
  return to;
}

/** A manifest fetched raw by tag or digest with a pull token: {status, contentType, digestHeader, bytes}. */
async function fetchManifest(name, reference) {
  const token = await registryToken(stack, `repository:${name}:pull`);
  const res = await fetch(`${stack.urls.appview}/v2/${name}/manifests/${reference}`, {
    headers: { authorization: `Bearer ${token}`, accept: [OCI_MANIFEST, OCI_INDEX].join(', ') },
  });
  return {
    status: res.status, contentType: res.headers.get('content-type'), digestHeader: res.headers.get('docker-content-digest'),
    bytes: Buffer.from(await res.arrayBuffer()),
  };
}

/** GET /v2/<name>/referrers/<digest>[?artifactType=]: {status, contentType, filtersApplied, index}. */
async function referrers(name, digest, artifactType) {
  const token = await registryToken(stack, `repository:${name}:pull`);
  const query = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
  const res = await fetch(`${stack.urls.appview}/v2/${name}/referrers/${digest}${query}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  assert.equal(res.status, 200, `GET /v2/${name}/referrers/${digest}${query}: ${res.status} ${text}`);
  return { contentType: res.headers.get('content-type'), filtersApplied: res.headers.get('oci-filters-applied'), index: JSON.parse(text) };
}

/**
 * The referrers index of `subject` in `name` lists exactly `expected`
 * ({digest, bytes}): each entry has the manifest's media type, digest, size,
 * artifactType (its own, else its config's media type) and annotations.
 */
async function assertReferrers(name, subject, expected) {
  const { contentType, index } = await referrers(name, subject);
  assert.equal(contentType, OCI_INDEX);
  assert.equal(index.schemaVersion, 2);
  assert.equal(index.mediaType, OCI_INDEX);
  assert.deepEqual(index.manifests.map((m) => m.digest).sort(), expected.map((e) => e.digest).sort(), `the referrers of ${subject}`);
  for (const { digest, bytes } of expected) {
    const manifest = JSON.parse(bytes);
    const entry = index.manifests.find((m) => m.digest === digest);
    assert.equal(entry.mediaType, OCI_MANIFEST);
    assert.equal(entry.size, bytes.length, `size of ${digest}`);
    assert.equal(entry.artifactType, manifest.artifactType ?? manifest.config.mediaType, `artifactType of ${digest}`);
    assert.deepEqual(entry.annotations, manifest.annotations, `annotations of ${digest}`);
  }
  return index;
}

/** The manifest `digest` in `name` is served with exactly `bytes`. */
async function assertManifestBytes(name, digest, bytes) {
  const got = await fetchManifest(name, digest);
  assert.equal(got.status, 200, got.bytes.toString());
  assert.equal(got.contentType, OCI_MANIFEST);
  assert.equal(got.digestHeader, digest);
  assert.ok(got.bytes.equals(bytes), `${name}@${digest} comes back byte-identical:\n${got.bytes}\n${bytes}`);
}

/** Every blob of `blobs` (descriptors) is in the OCI layout `layout`, with its size (layoutBlobs checks the hashes). */
function assertLayoutHolds(layout, blobs) {
  const pulled = layoutBlobs(layout);
  for (const blob of blobs) assert.equal(pulled[blob.digest], blob.size, `${blob.mediaType} ${blob.digest} is in ${layout}`);
}

test('skopeo pushes two OCI artifacts with a subject (artifactType + empty config + SBOM layer; one typed by its config), byte-identical; the referrers API lists and filters them; skopeo copies them back to an OCI layout', { timeout: 600_000 }, async () => {
  const name = `${alice.handle}/skopeo-artifacts`;
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'app.txt': 'the subject, pushed by skopeo\n' }] });
  const subjectDigestFile = path.join(scratch, 'skopeo-subject.digest');
  await ok('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds(), '--digestfile', subjectDigestFile, `oci:${image.layout}:v1`, `docker://${registry}/${name}:v1`]);
  assert.equal(readDigest(subjectDigestFile), image.digest, 'skopeo pushed the subject unchanged');
  const subject = subjectOf(image);

  const sbom = buildArtifact(scratch, {
    tag: 'sbom', artifactType: SBOM_TYPE, layers: [sbomLayer('skopeo')], subject, annotations: { 'org.example.kind': 'sbom' },
  });
  const provenance = buildArtifact(scratch, {
    tag: 'provenance', configMediaType: PROVENANCE_TYPE, subject,
    layers: [{ mediaType: 'application/vnd.in-toto+json', content: JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ digest: { sha256: image.digest.slice(7) } }] }) }],
  });
  assert.equal(sbom.manifest.config.mediaType, OCI_EMPTY);
  for (const [artifact, tag] of [[sbom, 'sbom'], [provenance, 'provenance']]) {
    const digestFile = path.join(scratch, `skopeo-${tag}.digest`);
    await ok('skopeo', ['copy', '--preserve-digests', '--dest-tls-verify=false', '--dest-creds', creds(), '--digestfile', digestFile,
      `oci:${artifact.layout}:${tag}`, `docker://${registry}/${name}:${tag}`]);
    assert.equal(readDigest(digestFile), artifact.digest, `skopeo pushed the ${tag} artifact under its own digest`);
    await assertManifestBytes(name, artifact.digest, artifact.manifestBytes);
  }

  await assertReferrers(name, image.digest, [{ digest: sbom.digest, bytes: sbom.manifestBytes }, { digest: provenance.digest, bytes: provenance.manifestBytes }]);
  for (const [type, digest] of [[SBOM_TYPE, sbom.digest], [PROVENANCE_TYPE, provenance.digest]]) {
    const filtered = await referrers(name, image.digest, type);
    assert.equal(filtered.filtersApplied, 'artifactType');
    assert.deepEqual(filtered.index.manifests.map((m) => m.digest), [digest], `only the ${type} referrer`);
  }
  assert.deepEqual((await referrers(name, sbom.digest)).index.manifests, [], 'an artifact nobody refers to has no referrers');

  // Pull both back, by tag and by digest, into fresh OCI layouts.
  for (const [artifact, ref] of [[sbom, `${name}:sbom`], [provenance, `${name}@${provenance.digest}`]]) {
    const out = path.join(scratch, `skopeo-pulled-${artifact.digest.slice(7, 19)}`);
    await ok('skopeo', ['copy', '--preserve-digests', '--src-tls-verify=false', `docker://${registry}/${ref}`, `oci:${out}:pulled`]);
    assertLayoutHolds(out, [...artifact.blobs, { mediaType: OCI_MANIFEST, digest: artifact.digest, size: artifact.manifestBytes.length }]);
    const index = JSON.parse(fs.readFileSync(path.join(out, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, artifact.digest, 'the layout tags the pulled artifact');
    const pulledManifest = fs.readFileSync(path.join(out, 'blobs', 'sha256', artifact.digest.slice(7)));
    assert.deepEqual(JSON.parse(pulledManifest).subject, subject, 'the pulled manifest keeps its subject');
  }
});

/**
 * Runs podman or buildah with vfs storage of its own per `label` (under
 * `prefix`), a short runroot and `HOME` in scratch; `.raw` does not assert success.
 */
function storageCli(tool, prefix) {
  // Podman refuses a runroot path longer than 50 characters.
  const runroot = fs.mkdtempSync(path.join(os.tmpdir(), `${tool}-`));
  outside.push(runroot);
  const raw = (label, ...args) => run(tool, ['--root', path.join(scratch, `${tool}-${prefix}-${label}-root`), '--runroot', path.join(runroot, label), '--storage-driver', 'vfs', ...args]);
  const cli = async (label, ...args) => {
    const res = await raw(label, ...args);
    assert.equal(res.code, 0, `${tool} ${args.join(' ')}\n${res.stderr}`);
    return res;
  };
  cli.raw = raw;
  return cli;
}

/**
 * Pushes a fresh one-layer image to `name`:v1 with `tool` (pull from an OCI
 * layout into storage, push with --digestfile); returns the subject
 * descriptor of what the registry now holds.
 */
async function pushSubject(tool, cli, name) {
  const image = buildImage(scratch, { tag: 'v1', layers: [{ 'app.txt': `the subject, pushed by ${tool}\n` }] });
  const layout = lowercaseLayout(image.layout, `${tool}-subject`);
  const id = (await cli('subject', 'pull', '-q', `oci:${layout}:v1`)).stdout.trim().split('\n').pop();
  const digestFile = path.join(scratch, `${tool}-subject.digest`);
  await cli('subject', 'push', '--tls-verify=false', '--creds', creds(), '--digestfile', digestFile, id, `docker://${registry}/${name}:v1`);
  const digest = readDigest(digestFile);
  const pushed = await fetchManifest(name, digest);
  assert.equal(pushed.status, 200);
  assert.equal(sha256(pushed.bytes), digest);
  return { mediaType: OCI_MANIFEST, digest, size: pushed.bytes.length };
}

/**
 * `tool` pushes an artifact (empty config, SBOM layer, artifactType, subject)
 * as the one entry of an OCI index (manifest create, add --all from an OCI
 * layout, push --all), then copies it back from the registry into an OCI
 * layout the same way.
 */
async function artifactThroughManifestList(tool) {
  const cli = storageCli(tool, 'artifact');
  const name = `${alice.handle}/${tool}-artifact`;
  const subject = await pushSubject(tool, cli, name);
  const artifact = buildArtifact(scratch, {
    tag: 'sbom', artifactType: SBOM_TYPE, layers: [sbomLayer(tool)], subject,
    annotations: { 'org.example.pushed-by': tool }, platform: { architecture: 'amd64', os: 'linux' },
  });
  const layout = lowercaseLayout(artifact.layout, `${tool}-artifact`);

  // Pulling the artifact into storage, or adding it to a list on its own, reads its config, which is not an image's.
  const refused = /unsupported image-specific operation on artifact with type "application\/vnd\.oci\.empty\.v1\+json"/;
  const single = await cli.raw('refused', 'pull', `oci:${layout}:sbom`);
  assert.notEqual(single.code, 0);
  assert.match(single.stderr, refused, `${tool} pull of an artifact`);
  await cli('refused', 'manifest', 'create', 'alone');
  const alone = await cli.raw('refused', 'manifest', 'add', 'alone', `oci:${layout}:sbom`);
  assert.notEqual(alone.code, 0);
  assert.match(alone.stderr, refused, `${tool} manifest add of an artifact on its own`);

  const list = `${tool}-sbom-list`;
  await cli('push', 'manifest', 'create', list);
  await cli('push', 'manifest', 'add', '--all', list, `oci:${layout}:sbom-index`);
  const digestFile = path.join(scratch, `${tool}-sbom-list.digest`);
  await cli('push', 'manifest', 'push', '--all', '--format', 'oci', '--tls-verify=false', '--creds', creds(), '--digestfile', digestFile, list, `docker://${registry}/${name}:sbom`);

  await assertManifestBytes(name, artifact.digest, artifact.manifestBytes);
  const pushedIndex = await fetchManifest(name, 'sbom');
  assert.equal(pushedIndex.status, 200);
  assert.equal(pushedIndex.contentType, OCI_INDEX);
  assert.equal(sha256(pushedIndex.bytes), readDigest(digestFile), 'the tag names the index just pushed');
  assert.deepEqual(JSON.parse(pushedIndex.bytes).manifests.map((m) => [m.digest, m.size, m.platform.architecture]), [[artifact.digest, artifact.manifestBytes.length, 'amd64']]);
  await assertReferrers(name, subject.digest, [{ digest: artifact.digest, bytes: artifact.manifestBytes }]);
  assert.deepEqual((await referrers(name, subject.digest, 'application/x-other')).index.manifests, []);

  // Back from the registry, with empty storage, into an OCI layout.
  const back = `${tool}-sbom-back`;
  await cli('pull', 'manifest', 'create', back);
  await cli('pull', 'manifest', 'add', '--all', '--tls-verify=false', back, `docker://${registry}/${name}:sbom`);
  const out = path.join(scratch, `${tool}-artifact-pulled`);
  await cli('pull', 'manifest', 'push', '--all', '--format', 'oci', '--tls-verify=false', back, `oci:${out}:sbom`);
  assertLayoutHolds(out, [...artifact.blobs, { mediaType: OCI_MANIFEST, digest: artifact.digest, size: artifact.manifestBytes.length }]);
  assert.ok(fs.readFileSync(path.join(out, 'blobs', 'sha256', artifact.digest.slice(7))).equals(artifact.manifestBytes), 'the artifact manifest comes back byte-identical');
  assert.equal(fs.readFileSync(path.join(out, 'blobs', 'sha256', artifact.blobs[1].digest.slice(7)), 'utf8'), sbomLayer(tool).content, 'the SBOM comes back');
}

/**
 * `tool` pushes an image whose manifest has a subject (and an artifactType)
 * from its local storage; it rewrites the manifest (recompressed layers) and
 * keeps the subject. Then it pulls the pushed manifest into empty storage.
 */
async function referrerImageThroughStorage(tool, { imageDigest }) {
  const cli = storageCli(tool, 'referrer');
  const name = `${alice.handle}/${tool}-referrer`;
  const subject = await pushSubject(tool, cli, name);
  const image = buildImage(scratch, { tag: 'sig', layers: [{ 'sbom.spdx.json': sbomLayer(`${tool}-image`).content }], subject, artifactType: SBOM_TYPE });
  const layout = lowercaseLayout(image.layout, `${tool}-referrer`);
  const id = (await cli('push', 'pull', '-q', `oci:${layout}:sig`)).stdout.trim().split('\n').pop();
  assert.equal(`sha256:${id}`, image.blobs[0].digest);
  const digestFile = path.join(scratch, `${tool}-referrer.digest`);
  await cli('push', 'push', '--tls-verify=false', '--creds', creds(), '--digestfile', digestFile, id, `docker://${registry}/${name}:sig`);
  const digest = readDigest(digestFile);

  const pushed = await fetchManifest(name, digest);
  assert.equal(pushed.status, 200);
  assert.equal(pushed.contentType, OCI_MANIFEST);
  assert.equal(sha256(pushed.bytes), digest);
  const manifest = JSON.parse(pushed.bytes);
  assert.deepEqual(manifest.subject, subject, `${tool} push kept the subject`);
  assert.deepEqual(manifest.config, image.blobs[0], 'the same config');
  assert.equal(manifest.layers.length, 1);
  // c/image 5.23 rebuilds the manifest from storage; its manifest type has no artifactType.
  assert.equal(manifest.artifactType, undefined, `${tool} push dropped artifactType (this version; the registry keeps what it is sent)`);
  assert.notDeepEqual(manifest.layers, image.manifest.layers, `${tool} recompressed the layer`);
  const index = await assertReferrers(name, subject.digest, [{ digest, bytes: pushed.bytes }]);
  assert.equal(index.manifests[0].artifactType, manifest.artifactType ?? IMAGE_CONFIG);

  const pull = await cli('pull', 'pull', '--tls-verify=false', `${registry}/${name}@${digest}`);
  const pulledId = pull.stdout.trim().split('\n').pop();
  assert.equal(`sha256:${pulledId}`, manifest.config.digest, 'the image (config digest) came back');
  for (const blob of [manifest.config, ...manifest.layers]) assert.ok(pull.stderr.includes(blob.digest), `${tool} pulled blob ${blob.digest}:\n${pull.stderr}`);
  const inspected = (await cli('pull', ...imageDigest, pulledId)).stdout.trim();
  assert.equal(inspected, digest, `${tool} keeps the pulled manifest under the pushed digest`);
}

test('podman pushes an OCI artifact (artifactType + empty config + SBOM layer) with a subject byte-identical as the entry of an index (manifest add --all, manifest push --all); the referrers API lists it; podman copies it back into an OCI layout (it cannot pull it into storage)', { timeout: 600_000 }, async () => {
  await artifactThroughManifestList('podman');
});

test('podman push of an image-shaped manifest with a subject (podman rewrites it: subject kept, artifactType dropped); the referrers API lists it; podman pull brings the same blobs back', { timeout: 600_000 }, async () => {
  await referrerImageThroughStorage('podman', { imageDigest: ['image', 'inspect', '--format', '{{.Digest}}'] });
});

test('buildah pushes an OCI artifact (artifactType + empty config + SBOM layer) with a subject byte-identical as the entry of an index (manifest add --all, manifest push --all); the referrers API lists it; buildah copies it back into an OCI layout (it cannot pull it into storage)', { timeout: 600_000 }, async () => {
  await artifactThroughManifestList('buildah');
});

test('buildah push of an image-shaped manifest with a subject (buildah rewrites it: subject kept, artifactType dropped); the referrers API lists it; buildah pull brings the same blobs back', { timeout: 600_000 }, async () => {
  await referrerImageThroughStorage('buildah', { imageDigest: ['inspect', '--type', 'image', '--format', '{{.FromImageDigest}}'] });
});
