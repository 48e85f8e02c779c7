//! The floor the registry is measured against: a Worker built with the same
//! toolchain (worker-build, wasm-bindgen, wasm-opt) and served by the same
//! `wrangler dev`, answering every request with an empty 200.

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::empty()
}
