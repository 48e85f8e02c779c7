//! `GET /health`: are D1, the PLC directory, the handle resolvers (DNS over
//! HTTPS and XRPC) and the default hold reachable?

use crate::config::{AppConfig, DB_BINDING};
use atcr_protocol::health::{Check, HealthReport};
use worker::{Env, Method, Response, Result};
use worker_support::{health_response, probe, resolve_did, timed};

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
    health_response(&HealthReport::for_build(
        "atcr-appview",
        atcr_protocol::build_info!(),
        checks,
    ))
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
