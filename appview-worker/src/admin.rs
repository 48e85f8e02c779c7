//! The admin endpoints, open only with `Authorization: Bearer <ADMIN_TOKEN>`
//! (`atcr_protocol::admin`; no `ADMIN_TOKEN` set: they answer 404):
//!
//! - `POST /admin/backfill`: read what PDSs hold into the index. Body
//!   `{"pds": "<url>"}` (every account on that PDS), `{"did": "<did>"}`
//!   (one account), or none (every PDS the index knows of). `202`.
//! - `GET /admin/backfill`: how the backfill stands (as `/health` shows it).
//! - `POST /admin/rebuild`: empty the index tables and read every PDS the
//!   index knew of again; when that backfill ends, the Jetstream consumer
//!   replays the events since the rebuild started over what it read. `202`
//!   with the rows emptied.

use crate::atproto::resolve::{resolve_owner, ResolveError};
use crate::backfill;
use crate::config::AppConfig;
use crate::index;
use atcr_protocol::reference::Owner;
use serde::Deserialize;
use serde_json::json;
use worker::{Env, Method, Request, Response, Result};

/// Answers `/admin/…` requests; `None` for other paths.
pub async fn serve(req: &mut Request, env: &Env, config: &AppConfig) -> Option<Result<Response>> {
    let path = req.path();
    if !path.starts_with("/admin/") {
        return None;
    }
    let authorization = req.headers().get("Authorization").ok().flatten();
    if let Err(refused) =
        atcr_protocol::admin::authorize(config.admin_token.as_deref(), authorization.as_deref())
    {
        return Some(worker_support::json(
            refused.status(),
            &json!({ "error": refused.message() }),
        ));
    }
    Some(match (req.method(), path.as_str()) {
        (Method::Post, "/admin/backfill") => start_backfill(req, env, config).await,
        (Method::Get, "/admin/backfill") => status(env)
            .await
            .and_then(|s| worker_support::json(200, &s)),
        (Method::Post, "/admin/rebuild") => rebuild(env).await,
        _ => worker_support::json(
            404,
            &json!({ "error": format!("no admin endpoint {} {path}", req.method()) }),
        ),
    })
}

#[derive(Deserialize, Default)]
struct BackfillRequest {
    pds: Option<String>,
    did: Option<String>,
}

async fn start_backfill(req: &mut Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let text = req.text().await?;
    let asked: BackfillRequest = if text.trim().is_empty() {
        BackfillRequest::default()
    } else {
        match serde_json::from_str(&text) {
            Ok(asked) => asked,
            Err(e) => {
                return worker_support::json(
                    400,
                    &json!({ "error": format!("the body is {{\"pds\": url}}, {{\"did\": did}} or nothing: {e}") }),
                )
            }
        }
    };
    let queued = match (asked.pds, asked.did) {
        (Some(pds), _) => {
            let pds = pds.trim_end_matches('/').to_string();
            if url::Url::parse(&pds).is_err() {
                return worker_support::json(
                    400,
                    &json!({ "error": format!("{pds:?} is not a URL") }),
                );
            }
            index::backfill_host_requested(env, &pds).await?;
            json!({ "pds": [pds] })
        }
        (None, Some(did)) => {
            let Ok(did) = did.parse() else {
                return worker_support::json(
                    400,
                    &json!({ "error": format!("{did:?} is not a DID") }),
                );
            };
            let who = match resolve_owner(&Owner::Did(did), config).await {
                Ok(who) => who,
                Err(ResolveError::Unknown(m)) => {
                    return worker_support::json(404, &json!({ "error": m }))
                }
                Err(ResolveError::Unavailable(m)) => {
                    return worker_support::json(502, &json!({ "error": m }))
                }
            };
            index::backfill_repo_requested(env, &who.did, &who.pds).await?;
            json!({ "did": [who.did], "pds": [who.pds] })
        }
        (None, None) => {
            let pdses = index::known_pdses(env).await?;
            for pds in &pdses {
                index::backfill_host_requested(env, pds).await?;
            }
            json!({ "pds": pdses })
        }
    };
    backfill::poke(env).await?;
    worker_support::json(
        202,
        &json!({ "queued": queued, "backfill": status(env).await? }),
    )
}

/// Empties the index and reads every PDS it knew of again.
async fn rebuild(env: &Env) -> Result<Response> {
    let pdses = index::known_pdses(env).await?;
    let started = index::rebuild_started(env).await?;
    let emptied = index::empty_index(env).await?;
    for pds in &pdses {
        index::backfill_host_requested(env, pds).await?;
    }
    backfill::poke(env).await?;
    worker_support::json(
        202,
        &json!({ "emptied": emptied, "queued": { "pds": pdses }, "started_at": started }),
    )
}

/// How the backfill stands: accounts by state, each PDS's listing.
async fn status(env: &Env) -> Result<serde_json::Value> {
    let (repos, hosts) = index::backfill_status(env).await?;
    Ok(json!({ "repos": repos, "hosts": hosts }))
}
