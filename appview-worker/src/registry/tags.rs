//! `GET /v2/<name>/tags/list?n=&last=`, from the owner's tag records: the
//! repository's key range, read from `last` on, so a page costs requests
//! for its own tags and never for the rest of the owner's history.

use super::owner::resolve_repo_owner;
use crate::atproto::pds::repository_records;
use crate::config::AppConfig;
use crate::oci_error::{error, refuse};
use atcr_protocol::collections;
use atcr_protocol::pagination::{page_size, Page};
use atcr_protocol::reference::RepoName;
use atcr_protocol::OciCode;
use serde_json::json;
use worker::{Request, Response, Result};
use worker_support::query_param;

pub async fn list_tags(req: &Request, config: &AppConfig, name: &RepoName) -> Result<Response> {
    let n = match page_size(query_param(req, "n").as_deref()) {
        Ok(n) => n,
        Err(message) => return error(OciCode::PaginationNumberInvalid, Some(message)),
    };
    let last = query_param(req, "last");
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err(refusal) => return refuse(refusal),
    };
    // Tag record keys sort like the tags themselves (one shared prefix).
    let range = match repository_records(
        &owner.pds,
        &owner.did,
        collections::TAG,
        name.repository(),
        last.as_deref(),
        n,
    )
    .await
    {
        Ok(range) => range,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    let mut tags: Vec<String> = range
        .records
        .iter()
        .filter_map(|r| r["value"]["tag"].as_str().map(str::to_string))
        .collect();
    if tags.is_empty() && last.is_none() {
        return error(OciCode::NameUnknown, Some(format!("{name} has no tags")));
    }
    tags.sort();
    let page = Page::known(tags, range.more.then_some(n));
    let mut resp = Response::from_json(&json!({ "name": name.as_str(), "tags": page.items }))?;
    if let Some(link) = page.next_link(&format!("/v2/{name}/tags/list")) {
        resp.headers_mut().set("Link", &link)?;
    }
    Ok(resp)
}
