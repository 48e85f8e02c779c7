//! `GET /xrpc/io.atcr.auth.getHoldAccess?repository=<name>`: where a
//! native client (`atcr push`) sends blobs straight to the owner's hold,
//! with service tokens for the hold's upload methods.
//!
//! The caller presents a registry token granting `push` on `<name>` (which
//! `/auth/token` grants only to the repository's owner); the answer names
//! the owner's hold and carries one appview service token per method in
//! `hold_api::UPLOAD_METHODS` (`sub` the caller, `lxm` the method,
//! `HOLD_ACCESS_TOKEN_SECS`). The hold decides as for any upload the appview
//! makes: who may write there, the quota, the digest. The manifest still
//! goes through `/v2/`, which checks every blob it names is in the hold.

use super::access::{authorize, signed_in};
use super::owner::{locate, require_owner};
use crate::config::AppConfig;
use crate::oci_error::{error, refuse};
use atcr_protocol::hold_api::{HoldAccess, HOLD_ACCESS_TOKEN_SECS, UPLOAD_METHODS};
use atcr_protocol::reference::RepoName;
use atcr_protocol::route::Route;
use atcr_protocol::OciCode;
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{Request, Response, Result};
use worker_support::query_param;

pub async fn get_hold_access(req: &Request, config: &AppConfig) -> Result<Response> {
    let Some(name) = query_param(req, "repository") else {
        return error(
            OciCode::NameInvalid,
            Some("name the repository: ?repository=<handle>/<name>".into()),
        );
    };
    let name: RepoName = match name.parse() {
        Ok(name) => name,
        Err(e) => return error(OciCode::NameInvalid, Some(format!("{e}"))),
    };
    // Pushing blobs: the access an upload `POST` needs.
    let route = Route::UploadStart { name: name.clone() };
    let claims = match authorize(req, config, &route).await {
        Ok(claims) => claims,
        Err(refused) => return refused,
    };
    let user = match signed_in(&claims, "push") {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let (owner, hold) = match locate(&name, config).await {
        Ok(found) => found,
        Err(refusal) => return refuse(refusal),
    };
    if let Err(refusal) = require_owner(&owner, &user, &name, "push to") {
        return refuse(refusal);
    }
    let lifetime = Duration::from_secs(HOLD_ACCESS_TOKEN_SECS);
    let mut tokens = BTreeMap::new();
    for method in UPLOAD_METHODS {
        match hold.token_for(config, &user, method, lifetime) {
            Ok(token) => tokens.insert(method.to_string(), token),
            Err(e) => return refuse((OciCode::Internal, e.to_string())),
        };
    }
    let now_secs = worker::Date::now().as_millis() / 1000;
    worker_support::json(
        200,
        &HoldAccess {
            hold: hold.did,
            endpoint: hold.endpoint,
            tokens,
            expires_at: now_secs + HOLD_ACCESS_TOKEN_SECS,
        },
    )
}
