//! The hold: a bring-your-own-storage service for ATCR.
//!
//! It owns a bucket on any S3-compatible store and lets others use it by
//! minting presigned URLs, so blob bytes go straight between clients and
//! storage. With an R2 binding instead (no S3 keys), which cannot presign,
//! it signs URLs to its own `/storage/` endpoint and streams the bytes
//! itself. This crate is the Workers adapter; the signing and identity logic
//! lives in `atcr-protocol`.

mod access;
mod api;
mod auth;
mod config;
mod failure;
mod gc;
mod health;
mod storage;
mod usage;

use atcr_protocol::hold_storage;
use atcr_protocol::DidDocument;
use config::{HoldConfig, StorageConfig};
use worker::*;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    worker_support::subrequests::reported(&env, serve(req, &env)).await
}

async fn serve(req: Request, env: &Env) -> Result<Response> {
    let config = match HoldConfig::from_env(env) {
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
    if path.starts_with(hold_storage::PREFIX) {
        return match &config.storage {
            StorageConfig::R2 { bucket, url_key } => {
                let store = storage::R2Store {
                    bucket,
                    base_url: &config.public_url,
                    url_key,
                };
                storage::serve_storage_url(req, &store).await
            }
            StorageConfig::S3(_) => plain_error(
                404,
                "this hold's storage presigns its URLs; the hold serves no bytes itself",
            ),
        };
    }
    match (req.method(), path.as_str()) {
        (Method::Get, "/.well-known/did.json") => did_document(&config),
        (Method::Get, "/health") => health::report(&config).await,
        (Method::Get, "/") => describe(&config),
        _ => plain_error(404, "no such endpoint on this hold"),
    }
}

/// The cron trigger (`[triggers]` in wrangler.toml): sweeps abandoned
/// uploads out of the bucket.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = match HoldConfig::from_env(&env) {
        Ok(config) => config,
        Err(message) => return console_error!("sweep: hold is misconfigured: {message}"),
    };
    let now = Date::now().as_millis();
    let swept = match &config.storage {
        StorageConfig::S3(s3) => {
            let store = storage::S3Store { config: s3.clone() };
            gc::sweep(&config.keys, &store, now).await
        }
        StorageConfig::R2 { bucket, url_key } => {
            let store = storage::R2Store {
                bucket,
                base_url: &config.public_url,
                url_key,
            };
            gc::sweep(&config.keys, &store, now).await
        }
    };
    match swept {
        Ok(s) => console_log!(
            "sweep: deleted {} abandoned staged uploads ({} left for the next run); aborted {} multipart uploads",
            s.staged_deleted,
            s.staged_left,
            s.multipart_aborted
                .map_or("no (this store cannot list)".to_string(), |n| n.to_string()),
        ),
        Err(e) => console_error!("sweep failed: {e}"),
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

/// `GET /`: who this hold is, who may use it, what stores its blobs and how
/// much memory its code holds.
fn describe(config: &HoldConfig) -> Result<Response> {
    Response::from_json(&serde_json::json!({
        "did": config.did,
        "owner": config.owner,
        "public": config.public,
        "allowAllCrew": config.allow_all_crew,
        // Per user allowed in by allowAllCrew; 0 = unlimited.
        "quota": { "bytes": config.quota.max_bytes, "blobs": config.quota.max_blobs },
        "storage": match config.storage {
            StorageConfig::S3(_) => "s3",
            StorageConfig::R2 { .. } => "r2",
        },
        "wasmMemoryBytes": wasm_memory_bytes(),
    }))
}

/// The isolate's WebAssembly memory. It only ever grows, so this is the most
/// the hold's own code has held at once: blob bodies stream past it as JS
/// streams, and it stays small whatever the blobs' sizes.
fn wasm_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    0
}

fn plain_error(status: u16, message: &str) -> Result<Response> {
    Response::from_json(&serde_json::json!({ "error": message })).map(|r| r.with_status(status))
}
