//! The manifest page (`/r/<handle>/<repository>/<tag or digest>`): what one
//! manifest is made of. An image: its config (platform, creation time,
//! environment, entrypoint, command, labels; read from the config blob in
//! the hold) and its layers. An index: its platforms, each linking to its
//! own page. Both: the referrers (signatures, SBOMs, attestations) and the
//! pull command by digest.

use super::format::{human_bytes, is_index, kind, platform_name, short_digest, when};
use super::views::{ConfigFacts, Layer, ManifestPage, PlatformLink, Referrer};
use super::{not_found, render, Page};
use crate::atproto::pds::get_record;
use crate::config::AppConfig;
use crate::index::{self, RepositoryRow};
use atcr_protocol::{collections, Did, Digest};
use serde_json::Value;
use worker::{Env, Fetch};
use worker_support::IsolateCache;

/// Config blobs larger than this are not read for the page.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

thread_local! {
    /// Config blobs are content-addressed: their facts never change.
    static CONFIGS: IsolateCache<ConfigFacts> = IsolateCache::new(1024);
}

pub async fn manifest(
    env: &Env,
    config: &AppConfig,
    repo: &RepositoryRow,
    reference: &str,
) -> Page {
    let (handle, name) = (&repo.handle, &repo.name);
    let Some(row) = index::manifest(env, &repo.owner_did, name, reference).await? else {
        return not_found(format!("{handle}/{name} has no manifest {reference}."));
    };
    let owner: Did = repo
        .owner_did
        .parse()
        .map_err(|e| worker::Error::RustError(format!("{e}")))?;
    let rkey = row.record_uri.rsplit('/').next().unwrap_or_default();
    let record = get_record(&repo.pds_endpoint, &owner, collections::MANIFEST, rkey)
        .await
        .map_err(worker::Error::RustError)?;
    let value = record.as_ref().map(|r| &r["value"]).unwrap_or(&Value::Null);
    let referrers = index::referrers(env, &repo.owner_did, name, &row.digest).await?;
    let index = is_index(Some(&row.media_type));
    let layers: Vec<Layer> = value["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| Layer {
            media_type: d["mediaType"].as_str().unwrap_or_default().to_string(),
            size: human_bytes(d["size"].as_u64().unwrap_or(0)),
            digest: d["digest"].as_str().unwrap_or_default().to_string(),
            short: short_digest(d["digest"].as_str().unwrap_or_default()),
        })
        .collect();
    let platforms = value["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| PlatformLink {
            name: platform_name(&m["platform"]),
            digest: m["digest"].as_str().unwrap_or_default().to_string(),
            short: short_digest(m["digest"].as_str().unwrap_or_default()),
        })
        .collect();
    let image_size = layers_size(value);
    let config_facts = match (&row.hold_did, index) {
        (Some(hold), false) => image_config(config, hold, &value["config"]).await,
        _ => None,
    };
    render(&ManifestPage {
        query: String::new(),
        handle: handle.clone(),
        name: name.clone(),
        reference: reference.to_string(),
        digest: row.digest.clone(),
        media_type: row.media_type.clone(),
        kind: kind(Some(&row.media_type), row.artifact_type.as_deref()),
        size: if index {
            String::new()
        } else {
            human_bytes(image_size)
        },
        pushed: when(row.created_at),
        pull: format!(
            "docker pull {}/{handle}/{name}@{}",
            config.service, row.digest
        ),
        config: config_facts,
        layers,
        platforms,
        referrers: referrers
            .iter()
            .map(|r| Referrer {
                kind: r
                    .artifact_type
                    .clone()
                    .unwrap_or_else(|| kind(Some(&r.media_type), None)),
                digest: r.digest.clone(),
                short: short_digest(&r.digest),
                pushed: when(r.created_at),
            })
            .collect(),
    })
}

/// Config plus layers, as the manifest record names them.
fn layers_size(value: &Value) -> u64 {
    let layers: u64 = value["layers"]
        .as_array()
        .map(|l| l.iter().filter_map(|d| d["size"].as_u64()).sum())
        .unwrap_or(0);
    layers + value["config"]["size"].as_u64().unwrap_or(0)
}

/// What an image's config blob says about how it runs; `None` when the
/// config is not an image config, too large, or its hold cannot be read.
async fn image_config(config: &AppConfig, hold: &str, descriptor: &Value) -> Option<ConfigFacts> {
    let media_type = descriptor["mediaType"].as_str()?;
    if !media_type.ends_with("container.image.v1+json")
        && !media_type.ends_with("image.config.v1+json")
    {
        return None;
    }
    if descriptor["size"].as_u64()? > MAX_CONFIG_BYTES {
        return None;
    }
    let digest: Digest = descriptor["digest"].as_str()?.parse().ok()?;
    if let Some(facts) = CONFIGS.with(|c| c.get(digest.as_str())) {
        return Some(facts);
    }
    let url = crate::holds::blob_url(&hold.parse().ok()?, config, None, &digest, "GET")
        .await
        .ok()??;
    let mut resp = worker_support::call(Fetch::Url(url.parse().ok()?))
        .await
        .ok()?;
    let bytes = resp.bytes().await.ok()?;
    // The hold's storage is trusted to store, not to be right.
    if Digest::of(digest.algorithm(), &bytes) != digest {
        return None;
    }
    let facts = config_facts(&serde_json::from_slice(&bytes).ok()?);
    CONFIGS.with(|c| c.put(digest.as_str(), facts.clone(), u64::MAX / 2));
    Some(facts)
}

/// The parts of an image config a person reads.
fn config_facts(config: &Value) -> ConfigFacts {
    let runtime = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let platform = platform_name(config);
    let mut labels: Vec<(String, String)> = runtime["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    labels.sort();
    ConfigFacts {
        platform,
        created: created_at(config["created"].as_str().unwrap_or_default()),
        env: strings(&runtime["Env"]),
        entrypoint: strings(&runtime["Entrypoint"]).join(" "),
        cmd: strings(&runtime["Cmd"]).join(" "),
        user: runtime["User"].as_str().unwrap_or_default().to_string(),
        workdir: runtime["WorkingDir"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        labels,
    }
}

/// The image's `created` (RFC 3339) as the pages show times; text that is
/// not a timestamp as it was written.
fn created_at(created: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| when(t.timestamp_millis() as f64))
        .unwrap_or_else(|_| created.to_string())
}
