// Upload and download of one blob through the hold's presigned URLs, side by
// side with the same bytes PUT/GET directly to the S3 server (the physical
// limit on this machine). Rounds alternate the two so drift hits both.
//
//   ./dev bench hold [size in MB, default 300] [rounds, default 3]
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, ROOT } from '../tests/lib/stack.mjs';
import { login, serviceToken } from '../tests/lib/atproto.mjs';
import { HoldClient, randomFile, fetchDigest } from '../tests/lib/hold.mjs';

const require = createRequire(path.join(ROOT, 'tools', 'package.json'));
const { S3Client, PutObjectCommand, GetObjectCommand, DeleteObjectCommand } = require('@aws-sdk/client-s3');

const sizeMb = Number(process.argv[2] ?? 300);
const rounds = Number(process.argv[3] ?? 3);
const MB = 1024 * 1024;

const stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-bench-'));
try {
  const alice = { ...stack.accounts.alice };
  alice.jwt = await login(stack.urls.pds, alice);
  const tokens = (lxm) => serviceToken(stack.urls.pds, alice.jwt, stack.holdDid, lxm);
  const hold = new HoldClient(stack.urls.hold);
  const s3 = new S3Client({
    endpoint: stack.urls.s3, region: stack.s3.region, forcePathStyle: true,
    credentials: { accessKeyId: stack.s3.accessKey, secretAccessKey: stack.s3.secretKey },
  });
  const file = path.join(scratch, 'blob.bin');
  const size = sizeMb * MB;

  const results = {
    holdUp: [], holdSingleUp: [], directUp: [], directCheckedUp: [], holdDown: [], directDown: [],
    verify: [], singleVerify: [], singlePut: [], singleComplete: [],
  };
  for (let round = 0; round < rounds; round++) {
    // Fresh random bytes each round: no deduplication can help either side.
    const digest = await randomFile(file, size);
    const key = `bench/${crypto.randomUUID()}`;

    // Multipart: the digest is learnt at the end (as from an OCI client), so
    // the hold reads the assembled object back to verify it.
    let t = performance.now();
    const done = await hold.uploadFile(file, digest, 64 * MB, tokens, { digestAtEnd: true });
    results.holdUp.push(performance.now() - t);
    if (done.status !== 200) throw new Error(`hold upload failed: ${JSON.stringify(done.body)}`);
    results.verify.push(done.body.verifyMs);
    await hold.call('io.atcr.hold.deleteBlob', { token: await tokens('io.atcr.hold.deleteBlob'), body: { digest } });

    // One PUT with the digest known up front: storage checks the checksum.
    t = performance.now();
    const single = await hold.uploadSingle(file, digest, tokens);
    results.holdSingleUp.push(performance.now() - t);
    if (single.complete?.status !== 200) throw new Error(`single-PUT upload failed: ${JSON.stringify(single)}`);
    results.singleVerify.push(single.complete.body.verifyMs);
    results.singlePut.push(single.put.ms);
    results.singleComplete.push(single.complete.ms);

    t = performance.now();
    await s3.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: fs.createReadStream(file), ContentLength: size }));
    results.directUp.push(performance.now() - t);

    // The same PUT with the SHA-256 checksum storage must verify: the cost
    // of storage-side verification, which the single-PUT path pays too.
    t = performance.now();
    await s3.send(new PutObjectCommand({
      Bucket: stack.s3.bucket, Key: `${key}-checked`, Body: fs.createReadStream(file), ContentLength: size,
      ChecksumSHA256: Buffer.from(digest.slice('sha256:'.length), 'hex').toString('base64'),
    }));
    results.directCheckedUp.push(performance.now() - t);
    await s3.send(new DeleteObjectCommand({ Bucket: stack.s3.bucket, Key: `${key}-checked` }));

    t = performance.now();
    const { body } = await hold.call('io.atcr.hold.getBlob', { params: { digest } });
    const viaHold = await fetchDigest(body.url);
    results.holdDown.push(performance.now() - t);
    if (viaHold.digest !== digest) throw new Error('hold download returned other bytes');

    t = performance.now();
    const direct = await s3.send(new GetObjectCommand({ Bucket: stack.s3.bucket, Key: key }));
    const hash = crypto.createHash('sha256');
    for await (const chunk of direct.Body) hash.update(chunk);
    results.directDown.push(performance.now() - t);
    if (`sha256:${hash.digest('hex')}` !== digest) throw new Error('direct download returned other bytes');

    await s3.send(new DeleteObjectCommand({ Bucket: stack.s3.bucket, Key: key }));
    process.stderr.write(`round ${round + 1}/${rounds} done\n`);
  }

  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const row = (name, hold, direct) => {
    const h = median(hold), d = median(direct);
    return `${name.padEnd(10)} ${(h / 1000).toFixed(2).padStart(8)} s ${(d / 1000).toFixed(2).padStart(8)} s ${(h / d).toFixed(2).padStart(7)}   ${(sizeMb / (h / 1000)).toFixed(0).padStart(5)} MB/s via hold`;
  };
  console.log(`\n${sizeMb} MB blob, median of ${rounds} rounds (hold = presigned URLs; direct = SigV4 PUT/GET to the S3 server)`);
  console.log(`${''.padEnd(10)} ${'via hold'.padStart(10)} ${'direct'.padStart(10)} ${'ratio'.padStart(7)}`);
  console.log(row('upload 1', results.holdSingleUp, results.directUp));
  console.log(row('upload N', results.holdUp, results.directUp));
  console.log(row('download', results.holdDown, results.directDown));
  console.log(row('upload 1*', results.holdSingleUp, results.directCheckedUp));
  const s = (xs) => `${(median(xs) / 1000).toFixed(2)} s`;
  console.log(`upload 1 = one checksummed PUT (digest known up front): PUT ${s(results.singlePut)}, completeUpload ${s(results.singleComplete)} (verification a HEAD: ${median(results.singleVerify)} ms; the rest is the server-side copy to the digest's key)`);
  console.log(`upload 1* = the same, against a direct PUT that also sends x-amz-checksum-sha256 (${s(results.directCheckedUp)}): storage verifying costs both sides alike`);
  console.log(`upload N = 64 MB parts, digest named at the end; verification read-back and copy: median ${median(results.verify)} ms (included)`);
} finally {
  await stack.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
}
