//! The ATCR appview: an OCI registry whose names live on ATProto.
//!
//! This crate adapts the Workers runtime (requests, D1, outbound fetch) to the
//! protocol logic in `atcr-protocol`. One module per endpoint family.

mod config;
mod health;
mod oci;

use config::AppConfig;
use worker::*;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = match AppConfig::from_env(&env) {
        Ok(config) => config,
        Err(message) => {
            let body = serde_json::json!({ "error": format!("appview is misconfigured: {message}") });
            return worker_support::json(500, &body);
        }
    };
    let path = req.path();
    if path == "/v2" || path.starts_with("/v2/") {
        return oci::handle(&req, &config);
    }
    match (req.method(), path.as_str()) {
        (Method::Get, "/health") => health::report(&env, &config).await,
        _ => worker_support::json(404, &serde_json::json!({ "error": "not found" })),
    }
}
