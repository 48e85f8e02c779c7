// A did:web service with a P-256 key that signs ES256 service tokens, the
// way an appview does. Its DID document is served on a loopback port.
import http from 'node:http';
import crypto from 'node:crypto';

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58(bytes) {
  let n = BigInt('0x' + Buffer.from(bytes).toString('hex'));
  let out = '';
  while (n > 0n) { out = B58[Number(n % 58n)] + out; n /= 58n; }
  for (const b of bytes) { if (b !== 0) break; out = '1' + out; }
  return out;
}

const b64url = (data) => Buffer.from(data).toString('base64url');

/** `z…` multikey of a P-256 public key (compressed point, multicodec 0x1200). */
function p256Multikey(publicKey) {
  const jwk = publicKey.export({ format: 'jwk' });
  const x = Buffer.from(jwk.x, 'base64url');
  const y = Buffer.from(jwk.y, 'base64url');
  const compressed = Buffer.concat([Buffer.from([y[y.length - 1] & 1 ? 3 : 2]), x]);
  return 'z' + base58(Buffer.concat([Buffer.from([0x80, 0x24]), compressed]));
}

export async function startIssuer() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const server = http.createServer((req, res) => {
    if (req.url !== '/.well-known/did.json') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.document));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const did = `did:web:localhost%3A${port}`;
  const issuer = {
    did,
    document: {
      '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
      id: did,
      verificationMethod: [{ id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: p256Multikey(publicKey) }],
    },
    /** An ES256 token; `claims` may override any field (exp, aud, sub, lxm…). */
    token(claims) {
      const now = Math.floor(Date.now() / 1000);
      const payload = { iss: did, iat: now, exp: now + 60, ...claims };
      const signingInput = `${b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}`;
      const signature = crypto.sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      return `${signingInput}.${b64url(signature)}`;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
  return issuer;
}
