//! `GET /health`: is the bucket reachable (with our keys, for S3), and can
//! we resolve the owner's identity (PLC) and reach their PDS, where crew
//! records live?

use crate::config::{HoldConfig, StorageConfig, BLOBS_BINDING, USAGE_BINDING};
use atcr_protocol::health::{Check, HealthReport};
use atcr_protocol::s3::EMPTY_SHA256;
use worker::{Method, Response, Result};
use worker_support::{failed_check, health_response, now, probe, resolve_did, timed};

pub async fn report(config: &HoldConfig) -> Result<Response> {
    let mut checks = vec![bucket_check(config).await];
    checks.extend(owner_checks(config).await);
    checks.extend(usage_check(config).await);
    health_response(&HealthReport::for_build(
        "atcr-hold",
        atcr_protocol::build_info!(),
        checks,
    ))
}

async fn bucket_check(config: &HoldConfig) -> Check {
    match &config.storage {
        // HEAD on the bucket proves the endpoint answers and accepts our signature.
        StorageConfig::S3(s3) => {
            let bucket_url = s3.object_url("");
            match s3.sign_headers("HEAD", &bucket_url, &[], EMPTY_SHA256, now()) {
                Ok(headers) => probe("s3", Method::Head, &bucket_url, &headers, &[200]).await,
                Err(e) => failed_check("s3", e.to_string()),
            }
        }
        // Listing one key proves the binding reaches its bucket.
        StorageConfig::R2 { bucket, .. } => {
            timed("r2", async {
                bucket
                    .list()
                    .limit(1)
                    .execute()
                    .await
                    .map(|_| format!("the {BLOBS_BINDING} binding answers"))
                    .map_err(|e| format!("the {BLOBS_BINDING} binding failed: {e}"))
            })
            .await
        }
    }
}

/// Resolves the owner's DID document, then probes the PDS it names.
async fn owner_checks(config: &HoldConfig) -> Vec<Check> {
    let mut pds = None;
    let identity = timed("owner_identity", async {
        let doc = resolve_did(&config.owner, &config.plc_url).await?;
        pds = doc.pds_endpoint().map(str::to_string);
        Ok(format!("{} resolved", config.owner))
    })
    .await;
    let pds = match pds {
        Some(pds) => {
            probe(
                "owner_pds",
                Method::Get,
                &format!("{pds}/xrpc/_health"),
                &[],
                &[200],
            )
            .await
        }
        None => failed_check("owner_pds", format!("no PDS known for {}", config.owner)),
    };
    vec![identity, pds]
}

/// With a quota: the usage database answers and its migrations were applied.
async fn usage_check(config: &HoldConfig) -> Option<Check> {
    if config.quota.is_unlimited() {
        return None;
    }
    let db = config.usage_db.as_ref()?;
    Some(
        timed("usage_db", async {
            let row: Option<serde_json::Value> = db
                .prepare("SELECT value FROM meta WHERE key = 'schema_version'")
                .first(None)
                .await
                .map_err(|e| format!("{USAGE_BINDING} query failed: {e}"))?;
            match row {
                Some(row) => Ok(format!("{USAGE_BINDING} schema version {}", row["value"])),
                None => Err(format!(
                    "{USAGE_BINDING} has no schema: apply hold-worker/migrations"
                )),
            }
        })
        .await,
    )
}
