//! `GET /v2/<name>/tags/list?n=&last=`: from the index while it is current
//! for the owner (`index::current`: one D1 batch), else from the owner's tag
//! records: the repository's key range, read from `last` on, so a page costs
//! requests for its own tags and never for the rest of the owner's history.

use super::owner::resolve_repo_owner;
use crate::atproto::pds::repository_records;
use crate::atproto::resolve::Identity;
use crate::config::AppConfig;
use crate::index::{self, TagPage};
use crate::oci_error::{error, refuse};
use atcr_protocol::collections;
use atcr_protocol::pagination::{page_size, Page};
use atcr_protocol::reference::RepoName;
use atcr_protocol::OciCode;
use serde_json::json;
use worker::{console_warn, Env, Request, Response, Result};
use worker_support::query_param;

pub async fn list_tags(
    req: &Request,
    env: &Env,
    config: &AppConfig,
    name: &RepoName,
) -> Result<Response> {
    let n = match page_size(query_param(req, "n").as_deref()) {
        Ok(n) => n,
        Err(message) => return error(OciCode::PaginationNumberInvalid, Some(message)),
    };
    let last = query_param(req, "last");
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err(refusal) => return refuse(refusal),
    };
    let page = match tag_page(env, &owner, name.repository(), last.as_deref(), n).await {
        Ok(page) => page,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    if page.tags.is_empty() && last.is_none() {
        return error(OciCode::NameUnknown, Some(format!("{name} has no tags")));
    }
    let page = Page::known(page.tags, page.more.then_some(n));
    let mut resp = Response::from_json(&json!({ "name": name.as_str(), "tags": page.items }))?;
    if let Some(link) = page.next_link(&format!("/v2/{name}/tags/list")) {
        resp.headers_mut().set("Link", &link)?;
    }
    Ok(resp)
}

/// Up to `n` tags after `last`: from the index while it is current for the
/// owner, else from their tag records.
async fn tag_page(
    env: &Env,
    owner: &Identity,
    repository: &str,
    last: Option<&str>,
    n: usize,
) -> std::result::Result<TagPage, String> {
    match index::current_tags(env, owner.did.as_str(), repository, last, n).await {
        Ok(Some(page)) => return Ok(page),
        Ok(None) => {}
        Err(e) => console_warn!("tags: the index could not say, read from the PDS: {e}"),
    }
    // Tag record keys sort like the tags themselves (one shared prefix).
    let range = repository_records(
        &owner.pds,
        &owner.did,
        collections::TAG,
        repository,
        last,
        n,
    )
    .await?;
    let mut tags: Vec<String> = range
        .records
        .iter()
        .filter_map(|r| r["value"]["tag"].as_str().map(str::to_string))
        .collect();
    tags.sort();
    Ok(TagPage {
        tags,
        more: range.more,
    })
}
