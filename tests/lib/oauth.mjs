// What tests need to look behind the appview's OAuth sign-in: open the
// sessions it sealed in D1 (with the stack's APPVIEW_SECRET_KEY), speak
// DPoP to the user's authorization server with a session's own key, and
// make registry tokens with the stack's APPVIEW_SIGNING_KEY (the token
// service's signature, without any password).
import crypto from 'node:crypto';

const b64url = (data) => Buffer.from(data).toString('base64url');

/** Opens a value the appview sealed (base64 of nonce || AES-256-GCM ciphertext || tag). */
export function openSealed(secretKeyHex, sealedBase64) {
  const raw = Buffer.from(sealedBase64, 'base64');
  const nonce = raw.subarray(0, 12);
  const tag = raw.subarray(raw.length - 16);
  const body = raw.subarray(12, raw.length - 16);
  const decipher = crypto.createDecipheriv('aes-256-gcm', Buffer.from(secretKeyHex, 'hex'), nonce);
  decipher.setAuthTag(tag);
  return JSON.parse(Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8'));
}

/** A P-256 private key from its 32-byte scalar. */
function p256Key(scalar) {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.setPrivateKey(scalar);
  const pub = ecdh.getPublicKey();
  const jwk = { kty: 'EC', crv: 'P-256', x: b64url(pub.subarray(1, 33)), y: b64url(pub.subarray(33, 65)) };
  return { jwk, key: crypto.createPrivateKey({ key: { ...jwk, d: b64url(scalar) }, format: 'jwk' }) };
}

function es256(key, header, payload) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(signature)}`;
}

/**
 * A registry token, as `/auth/token` signs them: ES256 by the appview's
 * signing key (hex), for `sub` with `access` (`[{type, name, actions}]`).
 */
export function registryTokenFor({ signingKeyHex, appviewDid, service, sub, access, lifetime = 300 }) {
  const { key } = p256Key(Buffer.from(signingKeyHex, 'hex'));
  const now = Math.floor(Date.now() / 1000);
  return es256(key, { alg: 'ES256', typ: 'JWT' }, { iss: appviewDid, sub, aud: service, access, iat: now, exp: now + lifetime });
}

/**
 * A DPoP proof (RFC 9449) by the key whose scalar is `keySecret` (base64url,
 * as sessions keep it); with `accessToken`, bound to it (`ath`), as a
 * resource request's proof is.
 */
export function dpopProof(keySecret, { method, url, nonce, accessToken }) {
  const { key, jwk } = p256Key(Buffer.from(keySecret, 'base64url'));
  const u = new URL(url);
  return es256(key, { typ: 'dpop+jwt', alg: 'ES256', jwk }, {
    jti: crypto.randomUUID(), htm: method, htu: `${u.origin}${u.pathname}`, iat: Math.floor(Date.now() / 1000),
    ...(nonce ? { nonce } : {}),
    ...(accessToken ? { ath: b64url(crypto.createHash('sha256').update(accessToken).digest()) } : {}),
  });
}

/**
 * POSTs a form to an authorization server endpoint with a DPoP proof by
 * `keySecret`, once more with the server's nonce if it asks for one.
 * Resolves to `{ status, body }`.
 */
export async function dpopPost(keySecret, url, form) {
  let nonce;
  for (let attempt = 0; attempt < 2; attempt++) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: dpopProof(keySecret, { method: 'POST', url, nonce }) },
      body: new URLSearchParams(form).toString(),
    });
    const text = await res.text();
    const body = text ? JSON.parse(text) : {};
    if (res.status === 400 && body.error === 'use_dpop_nonce' && res.headers.get('dpop-nonce')) {
      nonce = res.headers.get('dpop-nonce');
      continue;
    }
    return { status: res.status, body };
  }
  throw new Error(`${url} kept asking for a DPoP nonce`);
}
