//! Reading a manifest back: tag record → manifest record → the exact bytes
//! (a PDS blob), checked against their digest before anything is served.

use super::cache::{self, Served};
use crate::atproto::pds::{get_blob, get_record, record_key};
use crate::atproto::resolve::Identity;
use crate::config::AppConfig;
use crate::index;
use crate::oci_error::internal;
use crate::registry::owner::resolve_repo_owner;
use atcr_protocol::collections;
use atcr_protocol::manifest::{self, manifest_record_key, tag_record_key};
use atcr_protocol::reference::{Reference, RepoName};
use atcr_protocol::{Did, Digest, OciCode, Refusal};
use serde_json::Value;
use worker::Env;

/// The manifest `reference` names in `name`, and its owner.
pub async fn read_manifest(
    env: &Env,
    config: &AppConfig,
    name: &RepoName,
    reference: &Reference,
) -> Result<(Did, Served), Refusal> {
    let owner = resolve_repo_owner(name, config).await?;
    let repository = name.repository();
    let cached_digest = match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(tag) => cache::tag(&owner.did, repository, tag),
    };
    if let Some(served) = cached_digest.and_then(|d| cache::manifest(&owner.did, repository, &d)) {
        return Ok((owner.did, served));
    }
    let unknown = || unknown(name, reference);
    let record = match reference {
        Reference::Tag(tag) => tagged_manifest(&owner, repository, tag).await?,
        Reference::Digest(digest) => find_manifest(env, &owner, repository, digest).await?,
    }
    .ok_or_else(unknown)?;
    let value = &record["value"];
    if value["repository"].as_str() != Some(repository) {
        return Err(unknown());
    }
    let served = manifest_bytes(&owner, value).await?;
    if let Reference::Tag(tag) = reference {
        cache::remember_tag(&owner.did, repository, tag, &served.digest);
    }
    cache::remember_manifest(&owner.did, repository, &served);
    Ok((owner.did, served))
}

/// `MANIFEST_UNKNOWN` for `reference` in `name`.
pub fn unknown(name: &RepoName, reference: &Reference) -> Refusal {
    (
        OciCode::ManifestUnknown,
        format!("{name} has no manifest {reference}"),
    )
}

/// The manifest record a tag record points at.
async fn tagged_manifest(
    owner: &Identity,
    repository: &str,
    tag: &str,
) -> Result<Option<Value>, Refusal> {
    let rkey = tag_record_key(repository, tag);
    let Some(tag_record) = get_record(&owner.pds, &owner.did, collections::TAG, &rkey)
        .await
        .map_err(pds_unavailable)?
    else {
        return Ok(None);
    };
    let uri = tag_record["value"]["manifest"].as_str().unwrap_or_default();
    get_record(
        &owner.pds,
        &owner.did,
        collections::MANIFEST,
        record_key(uri),
    )
    .await
    .map_err(pds_unavailable)
}

/// The exact bytes a manifest record names, checked against its digest: the
/// PDS is trusted to store, not to be right.
async fn manifest_bytes(owner: &Identity, value: &Value) -> Result<Served, Refusal> {
    let digest: Digest = value["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| (OciCode::Internal, "record has no valid digest".to_string()))?;
    let cid = value["manifestBlob"]["ref"]["$link"]
        .as_str()
        .ok_or((OciCode::Internal, "record has no manifestBlob".to_string()))?;
    let bytes = get_blob(&owner.pds, &owner.did, cid)
        .await
        .map_err(pds_unavailable)?;
    if Digest::of(digest.algorithm(), &bytes) != digest {
        return Err((
            OciCode::Internal,
            format!("the stored bytes of {digest} do not match their digest"),
        ));
    }
    let media_type = value["mediaType"]
        .as_str()
        .unwrap_or(manifest::OCI_MANIFEST)
        .to_string();
    Ok(Served {
        media_type,
        digest,
        bytes,
    })
}

/// The `io.atcr.manifest` record of `digest` in `repository`: read by its
/// key, or for a record written before keys were derived from the digest,
/// by the key the index remembers. Never a scan of the owner's records.
pub async fn find_manifest(
    env: &Env,
    owner: &Identity,
    repository: &str,
    digest: &Digest,
) -> Result<Option<Value>, Refusal> {
    let is_it = |r: &Value| {
        r["value"]["digest"].as_str() == Some(digest.as_str())
            && r["value"]["repository"].as_str() == Some(repository)
    };
    let key = manifest_record_key(repository, digest);
    let by_key = get_record(&owner.pds, &owner.did, collections::MANIFEST, &key)
        .await
        .map_err(pds_unavailable)?;
    if let Some(record) = by_key.filter(is_it) {
        return Ok(Some(record));
    }
    // Only a miss asks D1: records under older keys are the rare case.
    let indexed = index::manifest_record(env, &owner.did, repository, digest).await;
    let Some(uri) = indexed.map_err(internal)? else {
        return Ok(None);
    };
    if record_key(&uri) == key {
        return Ok(None);
    }
    let legacy = get_record(
        &owner.pds,
        &owner.did,
        collections::MANIFEST,
        record_key(&uri),
    )
    .await
    .map_err(pds_unavailable)?;
    Ok(legacy.filter(is_it))
}

pub fn pds_unavailable(e: String) -> Refusal {
    (
        OciCode::Internal,
        format!("the owner's PDS could not be read: {e}"),
    )
}
