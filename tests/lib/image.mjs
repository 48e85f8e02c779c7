// Builds real container images by hand (tar, gzip, sha256) as OCI layouts,
// the way `docker build` output looks to a registry.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

/** Writes a blob into an OCI layout; returns its descriptor. */
function writeBlob(layout, bytes, mediaType) {
  const hex = sha256(bytes);
  fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(layout, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

/** A gzipped tar layer holding `files` ({path: Buffer|string}). */
function layer(workdir, files) {
  const root = fs.mkdtempSync(path.join(workdir, 'layer-'));
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), content);
  }
  const tar = execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--mtime=@0', '-C', root, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
  const gz = execFileSync('gzip', ['-n', '-1'], { input: tar, maxBuffer: 1 << 30 });
  fs.rmSync(root, { recursive: true, force: true });
  return { tar, gz };
}

/**
 * An image for `architecture` with one layer per entry of `layers`
 * (each {path: content}), tagged `tag` in a new OCI layout under `workdir`.
 * With `subject` (a descriptor) and `artifactType`, the manifest carries
 * them: an image-shaped referrer. Returns {layout, manifest, manifestBytes, digest, blobs}.
 */
export function buildImage(workdir, { tag = 'latest', architecture = 'amd64', layers, subject, artifactType }) {
  const layout = fs.mkdtempSync(path.join(workdir, 'image-'));
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const built = layers.map((files) => layer(workdir, files));
  const layerDescriptors = built.map(({ gz }) => writeBlob(layout, gz, 'application/vnd.oci.image.layer.v1.tar+gzip'));
  const config = Buffer.from(JSON.stringify({
    architecture, os: 'linux',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: built.map(({ tar }) => `sha256:${sha256(tar)}`) },
  }));
  const configDescriptor = writeBlob(layout, config, 'application/vnd.oci.image.config.v1+json');
  const manifest = {
    schemaVersion: 2, mediaType: OCI_MANIFEST, ...(artifactType ? { artifactType } : {}),
    config: configDescriptor, layers: layerDescriptors, ...(subject ? { subject } : {}),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDescriptor = writeBlob(layout, manifestBytes, OCI_MANIFEST);
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...manifestDescriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { layout, manifest, manifestBytes, digest: manifestDescriptor.digest, blobs: [configDescriptor, ...layerDescriptors] };
}

/**
 * An image whose one layer is `file` (`size` bytes, sha256 `digest`), for
 * layers too big to build in memory: the file is hard-linked into a new OCI
 * layout under `workdir`, not copied, and not a tar (a registry never looks
 * inside a layer). Returns {layout, digest, blobs}, as buildImage does.
 */
export function fileImage(workdir, { file, digest, size, tag = 'latest' }) {
  const layout = fs.mkdtempSync(path.join(workdir, 'image-'));
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  fs.linkSync(file, path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)));
  const layerDescriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size };
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } }));
  const configDescriptor = writeBlob(layout, config, 'application/vnd.oci.image.config.v1+json');
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDescriptor, layers: [layerDescriptor] }));
  const manifestDescriptor = writeBlob(layout, manifestBytes, OCI_MANIFEST);
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...manifestDescriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { layout, digest: manifestDescriptor.digest, blobs: [configDescriptor, layerDescriptor] };
}

/** sha256 of every blob file in an OCI layout: {digest: size}. */
export function layoutBlobs(layout) {
  const dir = path.join(layout, 'blobs', 'sha256');
  return Object.fromEntries(fs.readdirSync(dir).map((hex) => {
    const bytes = fs.readFileSync(path.join(dir, hex));
    assertHash(bytes, hex);
    return [`sha256:${hex}`, bytes.length];
  }));
}

function assertHash(bytes, hex) {
  if (sha256(bytes) !== hex) throw new Error(`blob ${hex} does not hash to its name`);
}

/**
 * A multi-platform image: one image per architecture plus an OCI index over
 * them, tagged `tag` in one layout. A `label` goes into each image's file, so
 * indexes with different labels share no blobs. Returns {layout, index, indexBytes, digest, images}.
 */
export function buildIndex(workdir, { tag = 'latest', architectures = ['amd64', 'arm64'], label }) {
  const layout = fs.mkdtempSync(path.join(workdir, 'index-'));
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const images = architectures.map((architecture) => {
    const one = buildImage(workdir, { tag: architecture, architecture, layers: [{ 'arch.txt': `built for ${architecture}${label ? ` by ${label}` : ''}\n` }] });
    for (const hex of fs.readdirSync(path.join(one.layout, 'blobs', 'sha256'))) {
      fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
      fs.copyFileSync(path.join(one.layout, 'blobs', 'sha256', hex), path.join(layout, 'blobs', 'sha256', hex));
    }
    return { ...one, architecture };
  });
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: images.map((i) => ({
      mediaType: OCI_MANIFEST, digest: i.digest, size: i.manifestBytes.length, platform: { architecture: i.architecture, os: 'linux' },
    })),
  };
  const indexBytes = Buffer.from(JSON.stringify(index));
  const descriptor = writeBlob(layout, indexBytes, OCI_INDEX);
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...descriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { layout, index, indexBytes, digest: descriptor.digest, images };
}

export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

/** The descriptor of an image manifest (a buildImage result, or any {digest, manifestBytes}) for a `subject`. */
export function subjectOf(image) {
  return { mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifestBytes.length };
}

/**
 * An OCI artifact in a new OCI layout under `workdir`, tagged `tag`: an image
 * manifest with `artifactType` (when given), a config of `configMediaType`
 * holding `{}` (the empty descriptor's type by default), one layer per entry
 * of `layers` ({mediaType, content}), and `subject` and `annotations` when
 * given. With `platform` ({os, architecture}) the layout also holds an OCI
 * index tagged `${tag}-index` listing the artifact for that platform (clients
 * that read an image's config to learn its platform take it from the index
 * instead). Returns {layout, manifest, manifestBytes, digest, blobs, index,
 * indexBytes, indexDigest}; blobs are the config and the layers.
 */
export function buildArtifact(workdir, { tag = 'latest', artifactType, configMediaType = OCI_EMPTY, layers, subject, annotations, platform }) {
  const layout = fs.mkdtempSync(path.join(workdir, 'artifact-'));
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const config = writeBlob(layout, Buffer.from('{}'), configMediaType);
  const layerDescriptors = layers.map(({ mediaType, content }) => writeBlob(layout, Buffer.from(content), mediaType));
  const manifest = {
    schemaVersion: 2, mediaType: OCI_MANIFEST, ...(artifactType ? { artifactType } : {}),
    config, layers: layerDescriptors, ...(subject ? { subject } : {}), ...(annotations ? { annotations } : {}),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const descriptor = writeBlob(layout, manifestBytes, OCI_MANIFEST);
  const refs = [{ ...descriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }];
  let index, indexBytes, indexDigest;
  if (platform) {
    index = {
      schemaVersion: 2, mediaType: OCI_INDEX,
      manifests: [{ ...descriptor, ...(artifactType ? { artifactType } : {}), platform }],
    };
    indexBytes = Buffer.from(JSON.stringify(index));
    const indexDescriptor = writeBlob(layout, indexBytes, OCI_INDEX);
    indexDigest = indexDescriptor.digest;
    refs.push({ ...indexDescriptor, annotations: { 'org.opencontainers.image.ref.name': `${tag}-index` } });
  }
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: refs }));
  return { layout, manifest, manifestBytes, digest: descriptor.digest, blobs: [config, ...layerDescriptors], index, indexBytes, indexDigest };
}
