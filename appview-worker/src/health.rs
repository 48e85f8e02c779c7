//! `GET /health`: are D1, the PLC directory, the handle resolvers (DNS over
//! HTTPS and XRPC) and the default hold reachable? With a Jetstream
//! configured, also where its consumer is: `jetstream` holds its cursor,
//! lag and counts. `backfill` says how the walks of PDSs stand.

use crate::config::{AppConfig, DB_BINDING};
use crate::index;
use atcr_protocol::health::{Check, HealthReport};
use worker::{Date, Env, Method, Response, Result};
use worker_support::{probe, resolve_did, timed};

pub async fn report(env: &Env, config: &AppConfig) -> Result<Response> {
    let mut checks = vec![
        d1(env).await,
        probe(
            "plc",
            Method::Get,
            &format!("{}/_health", config.plc_url),
            &[],
            &[200],
        )
        .await,
    ];
    if let Some(dns) = &config.dns_resolver_url {
        let url = format!("{dns}?name=_atproto.bsky.app&type=TXT");
        let accept = [("accept".to_string(), "application/dns-json".to_string())];
        checks.push(probe("dns_resolver", Method::Get, &url, &accept, &[200]).await);
    }
    if let Some(resolver) = &config.handle_resolver_url {
        let url = format!("{resolver}/xrpc/_health");
        checks.push(probe("handle_resolver", Method::Get, &url, &[], &[200]).await);
    }
    checks.push(default_hold(config).await);
    let consumer = match &config.jetstream_url {
        Some(url) => Some(jetstream(env, url).await),
        None => None,
    };
    if let Some((check, _)) = &consumer {
        checks.push(check.clone());
    }
    let report = HealthReport::for_build("atcr-appview", atcr_protocol::build_info!(), checks);
    let mut body = serde_json::to_value(&report)?;
    if let Some((_, progress)) = consumer {
        body["jetstream"] = progress;
    }
    body["backfill"] = backfill(env).await;
    let mut resp = worker_support::json(report.status(), &body)?;
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}

/// The consumer's saved place: its cursor (unix µs of the last event
/// applied), how far that is behind now, and the events applied and skipped.
/// A quiet network leaves the cursor where it is, so the lag is reported,
/// not judged; the check fails only when D1 cannot say.
async fn jetstream(env: &Env, url: &str) -> (Check, serde_json::Value) {
    let mut progress = serde_json::json!({ "url": url });
    let check = timed("jetstream", async {
        let saved = index::jetstream_cursor(env)
            .await
            .map_err(|e| format!("D1 query failed: {e}"))?;
        let Some(saved) = saved else {
            return Ok(format!("following {url}: no event applied yet"));
        };
        let now_ms = Date::now().as_millis() as f64;
        let lag_ms = saved
            .time_us
            .map(|t| (now_ms - t / 1000.0).max(0.0).round());
        progress = serde_json::json!({
            "url": url,
            "cursor": saved.time_us,
            "lag_ms": lag_ms,
            "applied": saved.applied,
            "skipped": saved.skipped,
            "last_skip": saved.last_skip,
            "saved_at": saved.updated_at,
        });
        Ok(format!(
            "following {url}: cursor {}{}, {} events applied, {} skipped",
            saved.time_us.map_or("none".into(), |t| format!("{t:.0}")),
            lag_ms.map_or(String::new(), |l| format!(" ({:.1} s behind)", l / 1000.0)),
            saved.applied,
            saved.skipped,
        ))
    })
    .await;
    (check, progress)
}

/// How the backfill stands: accounts by state (`pending`, `done`,
/// `failed`) with the records applied and skipped, and each PDS's listing.
/// Reported, not judged (a failed walk names its error here).
async fn backfill(env: &Env) -> serde_json::Value {
    match index::backfill_status(env).await {
        Ok((repos, hosts)) => serde_json::json!({ "repos": repos, "hosts": hosts }),
        Err(e) => serde_json::json!({ "error": format!("D1 query failed: {e}") }),
    }
}

/// D1 answers and holds our schema (`schema.sql` was applied).
async fn d1(env: &Env) -> Check {
    timed("d1", async {
        let db = env
            .d1(DB_BINDING)
            .map_err(|e| format!("no D1 binding {DB_BINDING}: {e}"))?;
        let row: Option<serde_json::Value> = db
            .prepare("SELECT value FROM meta WHERE key = 'schema_version'")
            .first(None)
            .await
            .map_err(|e| format!("D1 query failed: {e}"))?;
        match row {
            Some(row) => Ok(format!("schema version {}", row["value"])),
            None => Err("schema.sql has not been applied (no schema_version)".to_string()),
        }
    })
    .await
}

/// The default hold's DID resolves to a document naming its endpoint.
async fn default_hold(config: &AppConfig) -> Check {
    timed("default_hold", async {
        let doc = resolve_did(&config.default_hold, &config.plc_url).await?;
        match doc.service_endpoint(atcr_protocol::identity::HOLD_SERVICE_ID) {
            Some(endpoint) => Ok(format!("{} at {endpoint}", config.default_hold)),
            None => Err(format!("{} names no hold service", config.default_hold)),
        }
    })
    .await
}
