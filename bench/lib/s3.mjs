// The stack's S3 server used directly: the physical limit a push is measured
// against (the same bytes uploaded multipart, with a chosen part size and
// number of parts in flight), and a peer's storage filled in.
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../tests/lib/stack.mjs';

const require = createRequire(path.join(ROOT, 'tools', 'package.json'));
const {
  S3Client, CreateBucketCommand, PutObjectCommand,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, DeleteObjectCommand,
} = require('@aws-sdk/client-s3');

/** A client of the stack's S3 server, with its keys. */
function s3Client(stack) {
  return new S3Client({
    endpoint: stack.urls.s3, region: stack.s3.region, forcePathStyle: true,
    credentials: { accessKeyId: stack.s3.accessKey, secretAccessKey: stack.s3.secretKey },
  });
}

const MIB = 1024 * 1024;

/**
 * Uploads `file` (`size` bytes) to the stack's bucket in `partMb` MiB parts,
 * `parallel` at a time, read from disk at their offsets; resolves to the
 * milliseconds it took (the object is deleted afterwards, untimed). With
 * `timings`, also fills in `timings.parts` and `timings.complete` (ms): the
 * parts' upload and the CompleteMultipartUpload that assembles them.
 */
export async function directS3Upload(stack, file, size, { partMb, parallel, timings }) {
  const s3 = s3Client(stack);
  const Bucket = stack.s3.bucket, Key = `bench/${crypto.randomUUID()}`;
  const t = performance.now();
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const partSize = partMb * MIB;
  const count = Math.ceil(size / partSize);
  const parts = [];
  let next = 0;
  const fd = fs.openSync(file, 'r');
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < count) {
      const i = next++;
      const len = Math.min(partSize, size - i * partSize);
      const body = Buffer.alloc(len);
      fs.readSync(fd, body, 0, len, i * partSize);
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body: body, ContentLength: len }));
      parts[i] = { ETag, PartNumber: i + 1 };
    }
  }));
  fs.closeSync(fd);
  const assembling = performance.now();
  await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
  const ms = performance.now() - t;
  if (timings) Object.assign(timings, { parts: assembling - t, complete: performance.now() - assembling });
  await s3.send(new DeleteObjectCommand({ Bucket, Key }));
  return ms;
}

/** A new `bucket` on the stack's S3 server, with every file under `root` in it, keyed by its path. */
export async function copyIntoBucket(stack, root, bucket) {
  const s3 = s3Client(stack);
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  for (const key of fs.readdirSync(root, { recursive: true })) {
    const file = path.join(root, key);
    const stat = fs.statSync(file);
    if (!stat.isFile()) continue;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: fs.createReadStream(file), ContentLength: stat.size }));
  }
}
