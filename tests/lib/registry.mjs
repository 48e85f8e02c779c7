// Client side of the registry's token service, as Docker clients use it.

/** A registry token for `scope` (space-separated scopes allowed), as `account` or anonymously. */
export async function registryToken(stack, scope, account) {
  const url = new URL('/auth/token', stack.urls.appview);
  url.searchParams.set('service', `127.0.0.1:${stack.ports.appview}`);
  for (const s of scope.split(' ')) url.searchParams.append('scope', s);
  const headers = account ? { authorization: `Basic ${Buffer.from(`${account.handle}:${account.appPassword}`).toString('base64')}` } : {};
  const res = await fetch(url, { headers });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`token for ${scope}: ${res.status} ${JSON.stringify(body)}`);
  return body.token;
}
