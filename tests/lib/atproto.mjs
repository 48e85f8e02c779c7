// A small XRPC client for tests: sessions, service tokens and records in a
// real PDS.

export async function xrpc(pds, method, { params, body, token, expect = [200] } = {}) {
  const url = new URL(`/xrpc/${method}`, pds);
  for (const [k, v] of Object.entries(params ?? {})) url.searchParams.set(k, String(v));
  const res = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : {};
  if (!expect.includes(res.status)) throw new Error(`${method}: ${res.status} ${text}`);
  return json;
}

/** Signs in with a password (or app password); returns the access token. */
export async function login(pds, account) {
  const session = await xrpc(pds, 'com.atproto.server.createSession', {
    body: { identifier: account.handle, password: account.password },
  });
  return session.accessJwt;
}

/** A service token from the user's own PDS (ES256K) for `aud`, limited to `lxm`. */
export async function serviceToken(pds, accessJwt, aud, lxm, lifetimeSeconds = 60) {
  const exp = Math.floor(Date.now() / 1000) + lifetimeSeconds;
  const { token } = await xrpc(pds, 'com.atproto.server.getServiceAuth', { params: { aud, lxm, exp }, token: accessJwt });
  return token;
}

export async function putRecord(pds, accessJwt, repo, collection, rkey, record) {
  return xrpc(pds, 'com.atproto.repo.putRecord', {
    body: { repo, collection, rkey, record: { $type: collection, ...record } },
    token: accessJwt,
  });
}

export async function deleteRecord(pds, accessJwt, repo, collection, rkey) {
  return xrpc(pds, 'com.atproto.repo.deleteRecord', { body: { repo, collection, rkey }, token: accessJwt });
}

/** Every record of `collection` in `did`'s repository, all pages. */
export async function listAllRecords(pds, did, collection) {
  const all = [];
  let cursor;
  do {
    const page = await xrpc(pds, 'com.atproto.repo.listRecords', {
      params: { repo: did, collection, limit: 100, ...(cursor ? { cursor } : {}) },
    });
    all.push(...page.records);
    cursor = page.records.length ? page.cursor : undefined;
  } while (cursor);
  return all;
}
