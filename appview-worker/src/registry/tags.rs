//! `GET /v2/<name>/tags/list?n=&last=`, from the owner's tag records.

use super::owner::resolve_repo_owner;
use crate::atproto::pds::all_records;
use crate::config::AppConfig;
use crate::oci_error::{error, refuse};
use atcr_protocol::collections;
use atcr_protocol::pagination::Page;
use atcr_protocol::reference::RepoName;
use atcr_protocol::OciCode;
use serde_json::json;
use worker::{Request, Response, Result};
use worker_support::query_param;

pub async fn list_tags(req: &Request, config: &AppConfig, name: &RepoName) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err(refusal) => return refuse(refusal),
    };
    let records = match all_records(&owner.pds, &owner.did, collections::TAG).await {
        Ok(records) => records,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    let mut tags: Vec<String> = records
        .iter()
        .filter(|r| r["value"]["repository"].as_str() == Some(name.repository()))
        .filter_map(|r| r["value"]["tag"].as_str().map(str::to_string))
        .collect();
    if tags.is_empty() {
        return error(OciCode::NameUnknown, Some(format!("{name} has no tags")));
    }
    tags.sort();
    let page = Page::of(
        tags,
        query_param(req, "last").as_deref(),
        query_param(req, "n").and_then(|n| n.parse().ok()),
    );
    let mut resp = Response::from_json(&json!({ "name": name.as_str(), "tags": page.items }))?;
    if let Some(link) = page.next_link(&format!("/v2/{name}/tags/list")) {
        resp.headers_mut().set("Link", &link)?;
    }
    Ok(resp)
}
