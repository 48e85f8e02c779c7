//! Starring a repository: `POST /star` writes (or deletes) an
//! `io.atcr.sailor.star` record in the signed-in user's own PDS, through
//! the session the appview holds for them (their OAuth session), then the
//! index. Without JavaScript the form comes back to the repository page
//! (`303`); `star.js` asks for JSON and updates the button in place.

use super::sign_in::{field, notice, see_other, sign_in_again, signed_in_form};
use crate::atproto::pds::Body;
use crate::auth::writer::PdsWriter;
use crate::config::AppConfig;
use crate::index::{self, Starrer};
use atcr_protocol::web_session::safe_return_path;
use atcr_protocol::{collections, star, Did, OciCode};
use serde_json::json;
use worker::{Env, Request, Response, Result};
use worker_support::now_rfc3339;

/// The purpose the star form's CSRF token is made for.
pub const STAR_FORM: &str = "star";

pub async fn star(req: &mut Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let wants_json = req
        .headers()
        .get("Accept")?
        .is_some_and(|a| a.contains("application/json"));
    // The form names the page it sits on: where a signed-out browser returns.
    let back = |fields: &[(String, String)]| safe_return_path(Some(&field(fields, "page")));
    let form = match signed_in_form(req, env, config, STAR_FORM, back).await? {
        Ok(form) => form,
        Err(refusal) => return Ok(refusal),
    };
    let viewer = &form.viewer;
    let (owner, repository) = (form.field("owner"), form.field("repository"));
    let starring = match form.field("action").as_str() {
        "star" => true,
        "unstar" => false,
        other => {
            let message = format!("“{other}” is neither star nor unstar.");
            return notice(viewer, config, 400, "Not understood", message, None);
        }
    };
    let Some(repo) = index::repository_of(env, &owner, &repository).await? else {
        let message = format!("No repository {repository} of {owner} is known here.");
        return notice(
            viewer,
            config,
            404,
            "No such repository",
            message,
            Some(("/", "Go to the home page")),
        );
    };
    let page = format!("/r/{}/{}", repo.handle, repo.name);
    let session = form.user();
    let parse = |did: &str| {
        did.parse::<Did>()
            .map_err(|e| worker::Error::RustError(e.to_string()))
    };
    let (starrer, owner) = (parse(&session.did)?, parse(&owner)?);
    let Some(mut writer) = PdsWriter::for_user(env, config, &starrer).await? else {
        return sign_in_again(viewer, config, &page);
    };
    let rkey = star::record_key(&owner, &repository);
    let written = if starring {
        let record = star::record(&owner, &repository, &now_rfc3339());
        let body = json!({ "repo": starrer, "collection": collections::STAR, "rkey": rkey, "record": record });
        writer
            .post("com.atproto.repo.putRecord", Body::Json(body))
            .await
    } else {
        let body = json!({ "repo": starrer, "collection": collections::STAR, "rkey": rkey });
        writer
            .post("com.atproto.repo.deleteRecord", Body::Json(body))
            .await
    };
    let written = match written {
        Ok(written) => written,
        Err((OciCode::Denied, _)) => return sign_in_again(viewer, config, &page),
        Err((_, message)) => {
            let message = format!(
                "Your PDS did not take the change: {message}. Nothing was changed; try again."
            );
            return notice(
                viewer,
                config,
                502,
                "Not saved",
                message,
                Some((&page, "Back to the repository")),
            );
        }
    };
    // The record is in the PDS: the index follows it.
    if starring {
        let who = Starrer {
            did: &starrer,
            handle: &session.handle,
            pds: &writer.pds,
        };
        let uri = written["uri"].as_str().unwrap_or_default();
        index::star_added(env, &who, owner.as_str(), &repository, uri).await?;
    } else {
        index::star_removed(env, &starrer, owner.as_str(), &repository).await?;
    }
    if !wants_json {
        return see_other(&page);
    }
    let stars = index::repository_of(env, owner.as_str(), &repository)
        .await?
        .map_or(0, |r| r.stars as u64);
    let mut resp = Response::from_json(&json!({ "starred": starring, "stars": stars }))?;
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}
