//! The hold: a bring-your-own-storage service for ATCR.
//!
//! It owns a bucket on any S3-compatible store and lets others use it by
//! minting presigned URLs, so blob bytes go straight between clients and
//! storage. This crate is the Workers adapter; the signing and identity logic
//! lives in `atcr-protocol`.

mod access;
mod api;
mod auth;
mod config;
mod failure;
mod health;
mod storage;

use atcr_protocol::DidDocument;
use config::HoldConfig;
use worker::*;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = match HoldConfig::from_env(&env) {
        Ok(config) => config,
        Err(message) => return plain_error(500, &format!("hold is misconfigured: {message}")),
    };
    let path = req.path();
    if let Some(method) = path.strip_prefix("/xrpc/") {
        let method = method.to_string();
        return match api::dispatch(req, &config, &method).await {
            Ok(resp) => Ok(resp),
            Err(failure) => failure.into_response(),
        };
    }
    match (req.method(), path.as_str()) {
        (Method::Get, "/.well-known/did.json") => did_document(&config),
        (Method::Get, "/health") => health::report(&config).await,
        (Method::Get, "/") => describe(&config),
        _ => plain_error(404, "no such endpoint on this hold"),
    }
}

/// `GET /.well-known/did.json`: the hold's `did:web` document, naming its
/// service endpoint so registries and clients can find it from the DID alone.
fn did_document(config: &HoldConfig) -> Result<Response> {
    let doc = DidDocument::for_hold(&config.did, &config.public_url, None);
    let mut resp = Response::from_json(&doc)?;
    resp.headers_mut().set("Access-Control-Allow-Origin", "*")?;
    Ok(resp)
}

/// `GET /`: who this hold is and who may use it.
fn describe(config: &HoldConfig) -> Result<Response> {
    Response::from_json(&serde_json::json!({
        "did": config.did,
        "owner": config.owner,
        "public": config.public,
        "allowAllCrew": config.allow_all_crew,
    }))
}

fn plain_error(status: u16, message: &str) -> Result<Response> {
    Response::from_json(&serde_json::json!({ "error": message })).map(|r| r.with_status(status))
}
