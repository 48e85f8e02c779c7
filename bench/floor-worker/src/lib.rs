//! The floor the registry is measured against: a Worker built with the same
//! toolchain (worker-build, wasm-bindgen, wasm-opt) and served by the same
//! `wrangler dev`, answering every request with an empty 200 — and `/v2/`
//! with a 401 of the registry's shape (its headers and body), to tell what
//! that response costs the runtime from what the registry's code costs.

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
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
