// The Cloudflare edge's request body limit, in front of each local Worker.
//
// On Cloudflare a request whose body is larger than the plan allows is
// answered 413 by the edge; the Worker never runs. `wrangler dev` has no such
// limit, so the local stack puts this proxy on each Worker's public port:
// it refuses a body over the limit (by its Content-Length, or, for a chunked
// body, once the bytes received pass it) and otherwise streams requests and
// responses through as they are (every header, Host included; redirects are
// answered to the client, never followed).
import http from 'node:http';
import { Transform } from 'node:stream';

/**
 * Cloudflare's plans' request body limits. Cloudflare writes them "100 MB",
 * "200 MB", "500 MB" without saying which megabyte; these are the decimal
 * ones, the smaller reading, so a body the local stack lets through is one
 * the edge lets through too.
 */
export const PLAN_BODY_LIMITS = { free: 100_000_000, pro: 100_000_000, business: 200_000_000, enterprise: 500_000_000 };

/** The limit the local stack enforces unless told otherwise: Free and Pro's. */
export const DEFAULT_EDGE_BODY_LIMIT = PLAN_BODY_LIMITS.free;

/**
 * The limit in bytes: `option` when given, else `ATCR_EDGE_BODY_LIMIT`, else
 * the default. 0 lifts it.
 */
export function edgeBodyLimit(option) {
  const value = option ?? process.env.ATCR_EDGE_BODY_LIMIT ?? DEFAULT_EDGE_BODY_LIMIT;
  const bytes = Number(value);
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new Error(`edge body limit ${JSON.stringify(value)} is not a number of bytes (ATCR_EDGE_BODY_LIMIT; 0 lifts the limit)`);
  }
  return bytes;
}

/** The page Cloudflare's edge answers a too-large body with. */
export const TOO_LARGE_PAGE = '<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n'
  + '<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n';

/** Headers about one connection, not the message: each hop sets its own. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'expect']);

/** `rawHeaders` without the hop-by-hop ones, in their order and spelling. */
function endToEnd(rawHeaders) {
  const out = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!HOP_BY_HOP.has(rawHeaders[i].toLowerCase())) out.push(rawHeaders[i], rawHeaders[i + 1]);
  }
  return out;
}

/**
 * Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`upstreamPort`,
 * refusing bodies over `limit` bytes (0: no limit). Resolves to
 * {port, limit, refused, close(), open()}: `refused` counts the 413s;
 * close() stops listening (and drops open connections), open() listens
 * again, as a stopped and restarted Worker would.
 */
export async function startEdge({ port, upstreamPort, limit }) {
  const agent = new http.Agent({ keepAlive: true });
  const edge = { port, limit, refused: 0 };

  const tooLarge = (req) => {
    const declared = req.headers['content-length'];
    return limit > 0 && declared !== undefined && Number(declared) > limit;
  };

  /**
   * Answers 413: at once to a body declared too large (Content-Length), as
   * the edge does; to one that grew too large on the way (chunked), once
   * the client has sent the rest. Either way the connection keeps reading
   * (and dropping) the body until it ends, at most a minute, before the
   * answer is finished: a lingering close, as the edge's servers make. Node
   * would otherwise close a connection it answered mid-body, and a client
   * still writing into it would meet a broken pipe instead of the answer.
   * A client waiting for `100 Continue` sends no body (`awaitsContinue`).
   */
  function refuse(req, res, { atOnce = true, awaitsContinue = false } = {}) {
    edge.refused++;
    const send = () => {
      if (res.headersSent || res.destroyed) return;
      res.writeHead(413, {
        'content-type': 'text/html',
        'content-length': Buffer.byteLength(TOO_LARGE_PAGE),
        server: 'cloudflare',
      });
      res.write(TOO_LARGE_PAGE);
    };
    const finish = () => {
      clearTimeout(timer);
      send();
      if (!res.writableEnded && !res.destroyed) res.end();
    };
    const timer = setTimeout(finish, 60_000);
    res.once('close', () => clearTimeout(timer));
    if (atOnce) send();
    if (awaitsContinue || req.complete) return finish();
    req.once('end', finish);
    req.once('error', finish);
    req.resume();
  }

  function forward(req, res) {
    if (tooLarge(req)) return refuse(req, res);
    let overflowed = false;
    const upstream = http.request({
      host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url,
      headers: endToEnd(req.rawHeaders), setHost: false, agent,
    });
    upstream.on('response', (up) => {
      if (overflowed) return up.resume();
      res.writeHead(up.statusCode, up.statusMessage, endToEnd(up.rawHeaders));
      up.pipe(res);
      up.on('error', () => res.destroy());
    });
    upstream.on('error', () => {
      if (overflowed) return;
      if (res.headersSent) return res.destroy();
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('the Worker behind the local edge did not answer\n');
    });
    // Counts the body as it passes: past the limit, the Worker's request is
    // cut off and the client answered 413, as the edge does mid-stream.
    let seen = 0;
    const counter = new Transform({
      transform(chunk, _enc, done) {
        if (overflowed) return done();
        seen += chunk.length;
        if (limit > 0 && seen > limit) {
          overflowed = true;
          upstream.destroy();
          if (res.headersSent) res.destroy();
          else refuse(req, res, { atOnce: false });
          return done();
        }
        done(null, chunk);
      },
    });
    req.pipe(counter).pipe(upstream);
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
  }

  // Headers up to Cloudflare's own limit (128 KB in all) reach the Worker,
  // which answers what it finds too large itself (Node's default is 16 KiB).
  const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 65_000, maxHeaderSize: 128 * 1024 });
  server.on('request', forward);
  // A client that waits for `100 Continue` gets the 413 instead, unsent.
  server.on('checkContinue', (req, res) => {
    if (tooLarge(req)) return refuse(req, res, { awaitsContinue: true });
    res.writeContinue();
    forward(req, res);
  });

  const listen = () => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  // The port was free when the stack chose it; a short-lived connection may
  // hold it as its local port for a moment since. Try again for a while.
  edge.open = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await listen();
      } catch (err) {
        if (err.code !== 'EADDRINUSE' || attempt >= 40) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };
  edge.close = () => new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
    agent.destroy();
  });
  await edge.open();
  return edge;
}
