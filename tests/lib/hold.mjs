// Client side of the hold's XRPC API, as an appview or a CLI would use it:
// bytes go to and from storage through presigned URLs only.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

export class HoldClient {
  constructor(url) {
    this.url = url;
  }

  /** Calls `method`; resolves to {status, body}. */
  async call(method, { token, params, body } = {}) {
    const url = new URL(`/xrpc/${method}`, this.url);
    for (const [k, v] of Object.entries(params ?? {})) url.searchParams.set(k, v);
    const res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  /** The high-water mark of the hold's WebAssembly memory (it never shrinks). */
  async wasmMemoryBytes() {
    return (await (await fetch(new URL('/', this.url))).json()).wasmMemoryBytes;
  }

  /**
   * Uploads `file` in parts of `partSize` through presigned URLs.
   * `tokenFor(method)` returns a service token for each call. With
   * `digestAtEnd`, the digest is named only when completing.
   */
  async uploadFile(file, digest, partSize, tokenFor, { digestAtEnd = false } = {}) {
    const startBody = digestAtEnd ? {} : { digest };
    const start = await this.call('io.atcr.hold.startUpload', { token: await tokenFor('io.atcr.hold.startUpload'), body: startBody });
    if (start.status !== 200) return start;
    const { session } = start.body;
    const size = fs.statSync(file).size;
    const parts = [];
    for (let offset = 0, partNumber = 1; offset < size; offset += partSize, partNumber++) {
      const length = Math.min(partSize, size - offset);
      const partUrl = await this.call('io.atcr.hold.getUploadPartUrl', {
        token: await tokenFor('io.atcr.hold.getUploadPartUrl'),
        body: { session, partNumber },
      });
      if (partUrl.status !== 200) return partUrl;
      const put = await putFile(partUrl.body.url, {}, file, { start: offset, length });
      if (put.status !== 200) throw new Error(`part ${partNumber}: storage answered ${put.status} ${put.text}`);
      parts.push({ partNumber, etag: put.headers.etag });
    }
    const completeBody = digestAtEnd ? { session, parts, digest } : { session, parts };
    return this.call('io.atcr.hold.completeUpload', { token: await tokenFor('io.atcr.hold.completeUpload'), body: completeBody });
  }
}

/**
 * Uploads `file` in the one checksummed PUT the hold offers when told the
 * digest and size up front. `bytesFrom` sends another file's bytes instead
 * (to show storage refusing them). Resolves to {start, put, complete}.
 */
HoldClient.prototype.uploadSingle = async function (file, digest, tokenFor, { bytesFrom } = {}) {
  const size = fs.statSync(file).size;
  const start = await this.call('io.atcr.hold.startUpload', { token: await tokenFor('io.atcr.hold.startUpload'), body: { digest, size } });
  if (start.status !== 200 || !start.body.singlePut) return { start };
  const { url, headers } = start.body.singlePut;
  let t = performance.now();
  const put = { ...(await putFile(url, headers, bytesFrom ?? file)), ms: performance.now() - t };
  t = performance.now();
  const complete = await this.call('io.atcr.hold.completeUpload', { token: await tokenFor('io.atcr.hold.completeUpload'), body: { session: start.body.session } });
  complete.ms = performance.now() - t;
  return { start, put, complete };
};

/**
 * PUTs a file (or `length` bytes of it from `start`) to a (presigned) URL
 * with node's http client, streaming, as the AWS SDK does for direct
 * uploads: {status, text, headers}. `expectContinue` waits for storage's
 * go-ahead before sending the body (for requests it should refuse).
 */
export function putFile(url, headers, file, { start = 0, length, expectContinue = false } = {}) {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  const size = length ?? fs.statSync(file).size - start;
  return new Promise((resolve, reject) => {
    let answered = false;
    const extra = expectContinue ? { expect: '100-continue' } : {};
    const req = client.request(target, { method: 'PUT', headers: { 'content-length': size, ...extra, ...headers } }, (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8').on('data', (d) => { text += d; })
        .on('end', () => resolve({ status: res.statusCode, text, headers: res.headers }));
    });
    // Storage may refuse before reading the body and close the connection:
    // once it has answered, the broken write is expected.
    req.on('error', (err) => { if (!answered) reject(err); });
    const send = () => {
      if (size === 0) req.end();
      else fs.createReadStream(file, { start, end: start + size - 1, highWaterMark: 1 << 20 }).pipe(req);
    };
    // With 100-continue, storage that refuses the request answers before any byte is sent.
    if (expectContinue) req.on('continue', send);
    else send();
  });
}

/** Writes `size` random bytes to `file`; resolves to its sha256 digest. */
export async function randomFile(file, size) {
  const hash = crypto.createHash('sha256');
  const out = fs.createWriteStream(file);
  const block = 8 * 1024 * 1024;
  for (let written = 0; written < size; written += block) {
    const chunk = crypto.randomBytes(Math.min(block, size - written));
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
  return `sha256:${hash.digest('hex')}`;
}

/** Streams a URL's body through sha256: {status, digest, size}. */
export async function fetchDigest(url, init) {
  const res = await fetch(url, init);
  const hash = crypto.createHash('sha256');
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += chunk.length;
      hash.update(chunk);
    }
  }
  return { status: res.status, digest: `sha256:${hash.digest('hex')}`, size };
}
