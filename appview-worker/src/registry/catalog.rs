//! `GET /v2/_catalog`: the repositories this appview knows, by
//! `<handle>/<repository>`, paginated with `n`/`last`.
//!
//! Every ATCR repository is public (its records are in a public PDS), so
//! the catalog is open to any token holding `registry:catalog:*`, which the
//! token service grants everyone. It lists the D1 index: repositories pushed
//! through this appview or indexed from the network.

use crate::config::DB_BINDING;
use crate::oci_error::error;
use atcr_protocol::pagination::{page_size, Page};
use atcr_protocol::OciCode;
use serde::Deserialize;
use serde_json::json;
use worker::{Env, Request, Response, Result};
use worker_support::query_param;

#[derive(Deserialize)]
struct Row {
    full_name: String,
}

pub async fn list(req: &Request, env: &Env) -> Result<Response> {
    let n = match page_size(query_param(req, "n").as_deref()) {
        Ok(n) => n,
        Err(message) => return error(OciCode::PaginationNumberInvalid, Some(message)),
    };
    let last = query_param(req, "last").unwrap_or_default();
    let db = env.d1(DB_BINDING)?;
    // One row more than asked shows whether another page follows.
    let rows: Vec<Row> = db
        .prepare(
            "SELECT u.handle || '/' || r.name AS full_name
             FROM repositories r JOIN users u ON u.did = r.owner_did
             WHERE u.handle IS NOT NULL AND u.deactivated = 0 AND u.handle || '/' || r.name > ?1
             ORDER BY full_name LIMIT ?2",
        )
        .bind(&[last.into(), ((n + 1) as f64).into()])?
        .all()
        .await?
        .results()?;
    let page = Page::of(
        rows.into_iter().map(|r| r.full_name).collect(),
        None,
        Some(n),
    );
    let mut resp = Response::from_json(&json!({ "repositories": page.items }))?;
    if let Some(link) = page.next_link("/v2/_catalog") {
        resp.headers_mut().set("Link", &link)?;
    }
    Ok(resp)
}
