//! The ATCR appview: an OCI registry whose names live on ATProto.
//!
//! This crate adapts the Workers runtime (requests, D1, outbound fetch) to the
//! protocol logic in `atcr-protocol`. One folder per flow, imports running
//! downward only (ARCHITECTURE.md draws the map):
//!
//! - `registry/`: the OCI API under `/v2/`
//! - `web/`: the pages
//! - `auth/`: the token service, the token exchange and the sessions the appview writes with
//! - `holds`: the client of holds
//! - `index/`: the D1 index
//! - `jetstream/`: the consumer that follows the network's records into the index
//! - `backfill/`: what PDSs already hold, read into the index (first sight, admin requests)
//! - `admin`: the admin endpoints (`ADMIN_TOKEN`): backfill, rebuild
//! - `atproto/`: names → DIDs → PDS, and the PDS's API
//! - `config`, `oci_error`: leaves every folder may use

mod admin;
mod atproto;
mod auth;
mod backfill;
mod config;
mod health;
mod holds;
mod index;
mod jetstream;
mod oci_error;
mod registry;
mod web;

use atcr_protocol::identity::{DidDocument, Service};
use atcr_protocol::oauth::client as oauth;
use atcr_protocol::service_auth::PublicKey;
use atcr_protocol::OciCode;
use config::AppConfig;
use worker::*;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    worker_support::subrequests::reported(&env, serve(req, &env, &ctx)).await
}

/// The `PULLS` queue's consumer: a batch of pull events becomes one D1
/// batch; if D1 refuses it, the queue delivers the batch again later.
#[event(queue)]
async fn queue(
    batch: MessageBatch<atcr_protocol::pulls::PullEvent>,
    env: Env,
    _: Context,
) -> Result<()> {
    let events = batch.messages()?;
    let tallies = atcr_protocol::pulls::tally(events.iter().map(|m| m.body()));
    match index::write_tallies(&env, &tallies).await {
        Ok(()) => batch.ack_all(),
        Err(e) => {
            console_error!(
                "pull counts not written ({} events), retried later: {e}",
                events.len()
            );
            batch.retry_all();
        }
    }
    Ok(())
}

/// The cron trigger (`[triggers]` in wrangler.toml): sweeps the parts of
/// uploads that expired unfinished, starts the Jetstream consumer if it is
/// not running (it keeps itself alive with alarms too), and the backfill's
/// loop if walks are under way (after an eviction).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = index::sweep_upload_parts(&env).await {
        console_error!("expired upload parts not swept: {e}");
    }
    let enabled = AppConfig::cached(&env).is_ok_and(|c| c.jetstream_url.is_some());
    if enabled {
        if let Err(e) = jetstream::poke(&env).await {
            console_error!("jetstream: the consumer could not be started: {e}");
        }
    }
    if index::backfill_pending(&env).await.unwrap_or(false) {
        if let Err(e) = backfill::poke(&env).await {
            console_error!("backfill: the loop could not be started: {e}");
        }
    }
}

async fn serve(mut req: Request, env: &Env, ctx: &Context) -> Result<Response> {
    let config = match AppConfig::cached(env) {
        Ok(config) => config,
        Err(message) => {
            let body =
                serde_json::json!({ "error": format!("appview is misconfigured: {message}") });
            return worker_support::json(500, &body);
        }
    };
    let url = req.url()?;
    if let Some(refusal) = oversized(&req, url.as_str().len()) {
        return refusal;
    }
    let path = url.path().to_string();
    if path == "/v2" || path.starts_with("/v2/") {
        return registry::handle(req, &path, env, ctx, &config).await;
    }
    if let Some(answer) = admin::serve(&mut req, env, &config).await {
        return answer;
    }
    if let Some(page) = web::serve(&mut req, env, ctx, &config).await {
        return page;
    }
    match (req.method(), path.as_str()) {
        (Method::Get, "/health") => health::report(env, &config).await,
        // A Bearer token at the token service is a service-auth token to exchange.
        (Method::Get | Method::Post, "/auth/token")
            if auth::exchange::presented(&req).is_some() =>
        {
            auth::exchange::exchange(req, &config).await
        }
        (Method::Get | Method::Post, "/auth/token") => {
            auth::token::issue(req, env, ctx, &config).await
        }
        (Method::Post, "/auth/device/code") => {
            auth::device_grant::start(&mut req, env, &config).await
        }
        (Method::Post, "/auth/device/token") => auth::device_grant::token(&mut req, env).await,
        (Method::Post, "/auth/device/revoke") => auth::device_grant::revoke(&req, env).await,
        (Method::Post, p) if p == auth::exchange::xrpc_path() => {
            auth::exchange::exchange(req, &config).await
        }
        (Method::Get, p)
            if p.strip_prefix("/xrpc/") == Some(atcr_protocol::hold_api::GET_HOLD_ACCESS) =>
        {
            registry::hold_access::get_hold_access(&req, &config).await
        }
        (Method::Get, "/.well-known/did.json") => did_document(&config),
        (Method::Get, oauth::METADATA_PATH) => auth::oauth::client::metadata_document(&config),
        (Method::Get, oauth::JWKS_PATH) => auth::oauth::client::jwks(&config),
        _ => worker_support::json(404, &serde_json::json!({ "error": "not found" })),
    }
}

/// No registry URL or header set comes near these; larger ones are abuse.
const MAX_URL_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 414 for a URL, 431 for headers, over the limits above.
fn oversized(req: &Request, url: usize) -> Option<Result<Response>> {
    let headers = header_bytes(req);
    let (status, message) = if url > MAX_URL_BYTES {
        (
            414,
            format!("the URL is {url} bytes; at most {MAX_URL_BYTES} are accepted"),
        )
    } else if headers > MAX_HEADER_BYTES {
        (
            431,
            format!(
                "the request headers are about {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        )
    } else {
        return None;
    };
    Some(oci_error::error(OciCode::Unsupported, Some(message)).map(|r| r.with_status(status)))
}

/// About how many bytes the request's headers take: their names and values
/// as one JSON string, measured in JavaScript. Three calls into the
/// runtime, where copying each header into Rust costs several per header
/// on every request.
fn header_bytes(req: &Request) -> usize {
    let entries = js_sys::Array::from(&req.headers().0);
    js_sys::JSON::stringify(&entries).map_or(0, |json| json.length() as usize)
}

/// `GET /.well-known/did.json`: the appview's `did:web` document, publishing
/// the key its service tokens are signed with, so holds can verify them.
fn did_document(config: &AppConfig) -> Result<Response> {
    let key = PublicKey::P256(*config.signing_key.verifying_key()).to_multikey();
    let mut doc = DidDocument::for_hold(&config.did, &config.public_url, Some(&key));
    doc.service = vec![Service {
        id: "#atcr_appview".into(),
        kind: "AtcrAppView".into(),
        service_endpoint: config.public_url.clone(),
    }];
    Response::from_json(&doc)
}
