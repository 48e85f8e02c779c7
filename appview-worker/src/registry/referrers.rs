//! `GET /v2/<name>/referrers/<digest>?artifactType=`: every manifest in the
//! repository whose `subject` is `digest`, as an OCI index. Read from the
//! owner's records, so any appview answers the same.

use super::owner::resolve_repo_owner;
use crate::atproto::pds::all_records;
use crate::config::AppConfig;
use crate::oci_error::{error, refuse};
use atcr_protocol::reference::RepoName;
use atcr_protocol::{collections, manifest, Digest, OciCode};
use serde_json::{json, Value};
use worker::{EncodeBody, Request, Response, Result};
use worker_support::query_param;

pub async fn list_referrers(
    req: &Request,
    config: &AppConfig,
    name: &RepoName,
    subject: &Digest,
) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err(refusal) => return refuse(refusal),
    };
    let filter = query_param(req, "artifactType");
    let records = match all_records(&owner.pds, &owner.did, collections::MANIFEST).await {
        Ok(records) => records,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    let found: Vec<Value> = records
        .iter()
        .map(|record| &record["value"])
        .filter(|v| {
            v["repository"].as_str() == Some(name.repository())
                && v["subject"]["digest"].as_str() == Some(subject.as_str())
        })
        .filter_map(|v| descriptor(v, filter.as_deref()))
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
