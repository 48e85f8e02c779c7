//! The floor the registry is measured against: a Worker built with the same
//! toolchain (worker-build, wasm-bindgen, wasm-opt) and served by the same
//! `wrangler dev`, answering every request with an empty 200 — and `/v2/`
//! with a 401 of the registry's shape (its headers and body), to tell what
//! that response costs the runtime from what the registry's code costs.
//! `PATCH /drain` reads a body as the appview reads a layer's (16 MiB blocks
//! the runtime fills) and drops it: the fastest a push can stream through
//! the runtime and the local edge.

use worker::{event, Context, Env, Method, Request, Response, Result};
use worker_support::blocks::BlockReader;

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Patch && req.path() == "/drain" {
        return drain(req).await;
    }
    if req.path() != "/v2/" {
        return Response::empty();
    }
    let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    let mut resp = Response::ok(body)?.with_status(401);
    let headers = resp.headers_mut();
    headers.set("Content-Type", "application/json")?;
    headers.set("Docker-Distribution-API-Version", "registry/2.0")?;
    headers.set(
        "WWW-Authenticate",
        r#"Bearer realm="http://127.0.0.1:8787/auth/token",service="127.0.0.1:8787""#,
    )?;
    Ok(resp)
}

async fn drain(req: Request) -> Result<Response> {
    let mut read = 0u64;
    if let Some(body) = req.inner().body() {
        let mut blocks = BlockReader::new(&body, 16 * 1024 * 1024);
        while let Some(block) = blocks
            .next_block()
            .await
            .map_err(|e| worker::Error::RustError(format!("{e:?}")))?
        {
            read += u64::from(block.length());
        }
    }
    Ok(Response::ok(read.to_string())?.with_status(202))
}
