//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.
//!
//! "If the blob is not stored locally, the registry may redirect the client
//! to another location" (distribution spec, pulling blobs): GET answers 307
//! with a URL the owner's hold presigned, so the bytes go straight from
//! storage to the client. HEAD answers from the hold's stat. DELETE removes
//! the blob from the hold, only while none of the owner's manifests uses it
//! and only if the hold agrees (holds let their owner delete).

use super::owner::{locate, require_owner, resolve_repo_owner};
use crate::atproto::pds::all_records;
use crate::atproto::resolve::Identity;
use crate::config::AppConfig;
use crate::holds::{hold_of, Hold, HoldCallError};
use crate::oci_error::error;
use atcr_protocol::manifest::record_uses_blob;
use atcr_protocol::reference::RepoName;
use atcr_protocol::{collections, Did, Digest, OciCode};
use worker::{Method, Response, Result};

pub async fn get_blob(
    config: &AppConfig,
    user: Option<&Did>,
    method: Method,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(owner) => owner,
        Err((code, message)) => return error(code, Some(message)),
    };
    let found = match find_blob(config, user, &owner, name, digest, &method).await {
        Ok(found) => found,
        Err(e) => return hold_failure(e),
    };
    match found {
        Some(Found::Size(size)) => {
            let mut resp = Response::empty()?;
            let h = resp.headers_mut();
            h.set("Content-Length", &size.to_string())?;
            h.set("Content-Type", "application/octet-stream")?;
            h.set("Docker-Content-Digest", digest.as_str())?;
            Ok(resp)
        }
        Some(Found::Url(url)) => {
            let mut resp = Response::empty()?.with_status(307);
            resp.headers_mut().set("Location", &url)?;
            resp.headers_mut()
                .set("Docker-Content-Digest", digest.as_str())?;
            Ok(resp)
        }
        None => error(
            OciCode::BlobUnknown,
            Some(format!("{name} has no blob {digest}")),
        ),
    }
}

/// What a hold said about a blob: its size (HEAD) or a presigned URL (GET).
enum Found {
    Size(u64),
    Url(String),
}

/// Asks the owner's current hold first, then the holds this repository's
/// manifests name (`holdDid`): blobs stay where they were pushed when the
/// owner moves to another hold.
async fn find_blob(
    config: &AppConfig,
    user: Option<&Did>,
    owner: &Identity,
    name: &RepoName,
    digest: &Digest,
    method: &Method,
) -> std::result::Result<Option<Found>, HoldCallError> {
    let current = hold_of(owner, config).await;
    let mut answer = ask(config, user, &current, digest, method).await;
    if matches!(answer, Ok(Some(_))) {
        return answer;
    }
    let earlier = holds_named_by_manifests(owner, name.repository())
        .await
        .unwrap_or_default();
    for hold in earlier.iter().filter(|h| **h != current) {
        match ask(config, user, hold, digest, method).await {
            Ok(Some(found)) => return Ok(Some(found)),
            // A hold that answered "absent" outweighs one that could not answer.
            Ok(None) => answer = answer.or(Ok(None)),
            Err(_) => {}
        }
    }
    answer
}

async fn ask(
    config: &AppConfig,
    user: Option<&Did>,
    hold: &Did,
    digest: &Digest,
    method: &Method,
) -> std::result::Result<Option<Found>, HoldCallError> {
    let hold = Hold::resolve(hold, config).await?;
    if *method == Method::Head {
        Ok(hold.stat(config, user, digest).await?.map(Found::Size))
    } else {
        Ok(hold
            .blob_url(config, user, digest, "GET")
            .await?
            .map(Found::Url))
    }
}

/// The distinct `holdDid`s of the owner's manifest records for `repository`.
async fn holds_named_by_manifests(
    owner: &Identity,
    repository: &str,
) -> std::result::Result<Vec<Did>, String> {
    let records = all_records(&owner.pds, &owner.did, collections::MANIFEST).await?;
    let mut holds: Vec<Did> = records
        .iter()
        .filter(|r| r["value"]["repository"].as_str() == Some(repository))
        .filter_map(|r| r["value"]["holdDid"].as_str()?.parse().ok())
        .collect();
    holds.sort();
    holds.dedup();
    Ok(holds)
}

pub async fn delete_blob(
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response> {
    let owned = locate(name, config).await.and_then(|(owner, hold)| {
        require_owner(&owner, user, name, "delete from").map(|()| (owner, hold))
    });
    let (owner, hold) = match owned {
        Ok(found) => found,
        Err((code, message)) => return error(code, Some(message)),
    };
    match hold.stat(config, Some(user), digest).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                OciCode::BlobUnknown,
                Some(format!("{name} has no blob {digest}")),
            )
        }
        Err(e) => return hold_failure(e),
    }
    // A manifest record naming a deleted blob could never be pulled again.
    let records = match all_records(&owner.pds, &owner.did, collections::MANIFEST).await {
        Ok(records) => records,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    if let Some(user_of) = records
        .iter()
        .find(|r| record_uses_blob(&r["value"], digest))
    {
        let message = format!(
            "{digest} is still used by {}/{}@{}; delete that manifest first",
            name.owner(),
            user_of["value"]["repository"].as_str().unwrap_or_default(),
            user_of["value"]["digest"].as_str().unwrap_or_default(),
        );
        return error(OciCode::Denied, Some(message));
    }
    match hold.delete_blob(config, user, digest).await {
        Ok(()) => Ok(Response::empty()?.with_status(202)),
        Err(e) => hold_failure(e),
    }
}

fn hold_failure(e: HoldCallError) -> Result<Response> {
    match e {
        HoldCallError::Refused {
            status: 401 | 403,
            error: x,
        } => error(
            OciCode::Denied,
            Some(format!("the hold refused: {}", x.message)),
        ),
        other => error(OciCode::Internal, Some(other.to_string())),
    }
}
