//! `GET /v2/<name>/referrers/<digest>?artifactType=`: every manifest in the
//! repository whose `subject` is `digest`, as an OCI index. While the index
//! is current for the owner (`index::current`), it names the referrers and
//! their records are read by key. Otherwise, read from the owner's records
//! (the repository's key range, so any appview answers the same), joined
//! with what the index knows: manifests whose records predate
//! digest-derived keys, and those beyond the range read in a repository of
//! more than `SCANNED_MANIFESTS` manifests.

use super::owner::resolve_repo_owner;
use crate::atproto::pds::{get_record, record_key, repository_records};
use crate::atproto::resolve::Identity;
use crate::config::AppConfig;
use crate::index;
use crate::oci_error::{error, refuse};
use atcr_protocol::reference::RepoName;
use atcr_protocol::{collections, manifest, Digest, OciCode};
use serde_json::{json, Value};
use worker::{console_warn, EncodeBody, Env, Request, Response, Result};
use worker_support::query_param;

/// How many of a repository's manifest records one referrers call reads
/// (five requests); the index answers for the rest.
const SCANNED_MANIFESTS: usize = 500;

pub async fn list_referrers(
    req: &Request,
    env: &Env,
    config: &AppConfig,
    name: &RepoName,
    subject: &Digest,
) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err(refusal) => return refuse(refusal),
    };
    let filter = query_param(req, "artifactType");
    let records = match referring_records(env, &owner, name.repository(), subject).await {
        Ok(records) => records,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    let found: Vec<Value> = records
        .iter()
        .filter_map(|record| descriptor(&record["value"], filter.as_deref()))
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": found })
        .to_string();
    let mut resp = Response::ok(body)?.with_encode_body(EncodeBody::Manual);
    resp.headers_mut()
        .set("Content-Type", manifest::OCI_INDEX)?;
    if filter.is_some() {
        resp.headers_mut()
            .set("OCI-Filters-Applied", "artifactType")?;
    }
    Ok(resp)
}

/// The repository's manifest records whose subject is `subject`: with the
/// index current for the owner, those it names, read by their keys (as many
/// reads as referrers); otherwise those in the repository's key range, then
/// those only the index knows.
async fn referring_records(
    env: &Env,
    owner: &Identity,
    repository: &str,
    subject: &Digest,
) -> std::result::Result<Vec<Value>, String> {
    let did = owner.did.as_str();
    match index::current_referrers(env, did, repository, subject.as_str()).await {
        Ok(Some(rows)) => {
            let keys = rows
                .iter()
                .map(|row| record_key(&row.record_uri).to_string());
            return read_referrers(owner, repository, subject, keys.collect(), vec![]).await;
        }
        Ok(None) => {}
        Err(e) => console_warn!("referrers: the index could not say, read from the PDS: {e}"),
    }
    let refers = |r: &Value| r["value"]["subject"]["digest"].as_str() == Some(subject.as_str());
    let (range, indexed) = futures_util::join!(
        repository_records(
            &owner.pds,
            &owner.did,
            collections::MANIFEST,
            repository,
            None,
            SCANNED_MANIFESTS,
        ),
        index::referrers(env, owner.did.as_str(), repository, subject.as_str()),
    );
    let found: Vec<Value> = range?.records.into_iter().filter(refers).collect();
    let seen = |digest: &str| {
        found
            .iter()
            .any(|r| r["value"]["digest"].as_str() == Some(digest))
    };
    let unseen: Vec<String> = indexed
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|row| !seen(&row.digest))
        .map(|row| record_key(&row.record_uri).to_string())
        .collect();
    read_referrers(owner, repository, subject, unseen, found).await
}

/// `found`, and the manifest records under `keys` that still refer to
/// `subject` from `repository`, read at once.
async fn read_referrers(
    owner: &Identity,
    repository: &str,
    subject: &Digest,
    keys: Vec<String>,
    mut found: Vec<Value>,
) -> std::result::Result<Vec<Value>, String> {
    let reads = keys
        .iter()
        .map(|key| get_record(&owner.pds, &owner.did, collections::MANIFEST, key));
    for record in futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
    {
        // The index may lag behind a deletion or an edit: the record decides.
        let value = &record["value"];
        if value["subject"]["digest"].as_str() == Some(subject.as_str())
            && value["repository"].as_str() == Some(repository)
        {
            found.push(record);
        }
    }
    Ok(found)
}

/// The descriptor of a referring manifest record, unless the filter leaves
/// it out.
fn descriptor(v: &Value, filter: Option<&str>) -> Option<Value> {
    // "If the artifactType is empty or missing in an image manifest, the config descriptor's mediaType."
    let artifact_type = v["artifactType"]
        .as_str()
        .or_else(|| v["config"]["mediaType"].as_str());
    if filter.is_some() && artifact_type != filter {
        return None;
    }
    let mut descriptor = json!({
        "mediaType": v["mediaType"],
        "digest": v["digest"],
        "size": v["manifestBlob"]["size"],
    });
    if let Some(t) = artifact_type {
        descriptor["artifactType"] = json!(t);
    }
    if !v["annotations"].is_null() {
        descriptor["annotations"] = v["annotations"].clone();
    }
    Some(descriptor)
}
