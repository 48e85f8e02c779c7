//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.
//!
//! "If the blob is not stored locally, the registry may redirect the client
//! to another location" (distribution spec, pulling blobs): GET answers 307
//! with a URL the owner's hold presigned, so the bytes go straight from
//! storage to the client. A `Range` the blob cannot satisfy (or that is
//! malformed) is answered here with 416, since storage would answer it in
//! its own words. HEAD answers from the hold's stat.
//!
//! DELETE unlinks the blob from the repository (`index::unlinks`): GET and
//! HEAD there answer `BLOB_UNKNOWN` from then on. The bytes themselves are
//! left to the hold's garbage collection, the one place that sees every
//! manifest naming them (other repositories, other users of a shared hold).

use super::owner::{require_owner, resolve_repo_owner};
use crate::atproto::pds::repository_records;
use crate::atproto::resolve::Identity;
use crate::config::AppConfig;
use crate::holds::{blob_url, hold_of, Hold, HoldCallError};
use crate::index;
use crate::oci_error::{error, refuse};
use atcr_protocol::hold_storage::{resolve_range, RangeRequest};
use atcr_protocol::reference::RepoName;
use atcr_protocol::{collections, Did, Digest, OciCode};
use worker::{Env, Method, Request, Response, Result};

pub async fn get_blob(
    req: &Request,
    env: &Env,
    config: &AppConfig,
    user: Option<&Did>,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(owner) => owner,
        Err(refusal) => return refuse(refusal),
    };
    let unknown = || {
        error(
            OciCode::BlobUnknown,
            Some(format!("{name} has no blob {digest}")),
        )
    };
    let method = req.method();
    let range = match method {
        Method::Get => req.headers().get("Range")?,
        _ => None,
    };
    // A ranged GET first learns the blob's size: only a range storage will
    // serve reaches storage. The unlink check (D1) and the hold's answer
    // are independent: ask both at once.
    let first = if range.is_some() {
        Method::Head
    } else {
        method.clone()
    };
    let digests = [digest];
    let (unlinked, found) = futures_util::join!(
        index::unlinked_among(env, &owner.did, name.repository(), &digests),
        find_blob(env, config, user, &owner, name, digest, &first)
    );
    if !unlinked?.is_empty() {
        return unknown();
    }
    let mut found = match found {
        Ok(found) => found,
        Err(e) => return hold_failure(e),
    };
    if let Some(range) = range {
        let Some(Found::Size(size)) = found else {
            return unknown();
        };
        if !matches!(resolve_range(Some(&range), size), RangeRequest::Partial(_)) {
            return unsatisfiable(&range, size);
        }
        found = match find_blob(env, config, user, &owner, name, digest, &method).await {
            Ok(found) => found,
            Err(e) => return hold_failure(e),
        };
    }
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
        None => unknown(),
    }
}

/// 416 for a `Range` that `size` bytes cannot satisfy, or that is not one
/// range of bytes.
fn unsatisfiable(range: &str, size: u64) -> Result<Response> {
    let message = format!("{range} is not one satisfiable byte range of this {size}-byte blob");
    let mut resp = error(OciCode::Unsupported, Some(message))?.with_status(416);
    resp.headers_mut()
        .set("Content-Range", &format!("bytes */{size}"))?;
    Ok(resp)
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
    env: &Env,
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
    let earlier = holds_named_by_manifests(env, owner, name.repository())
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
    if *method == Method::Head {
        let hold = Hold::resolve(hold, config).await?;
        Ok(hold.stat(config, user, digest).await?.map(Found::Size))
    } else {
        Ok(blob_url(hold, config, user, digest, "GET")
            .await?
            .map(Found::Url))
    }
}

/// Manifests of a repository read for their `holdDid`s: enough for any
/// repository's history of holds, and a bounded number of requests.
const HOLD_SCAN_MANIFESTS: usize = 200;

/// The distinct `holdDid`s of the repository's manifests: its records (the
/// newest key range) and the ones the index has seen.
async fn holds_named_by_manifests(
    env: &Env,
    owner: &Identity,
    repository: &str,
) -> std::result::Result<Vec<Did>, String> {
    let (range, indexed) = futures_util::join!(
        repository_records(
            &owner.pds,
            &owner.did,
            collections::MANIFEST,
            repository,
            None,
            HOLD_SCAN_MANIFESTS,
        ),
        index::repository_holds(env, owner.did.as_str(), repository),
    );
    let named = range?
        .records
        .into_iter()
        .filter_map(|r| r["value"]["holdDid"].as_str().map(str::to_string));
    let mut holds: Vec<Did> = named
        .chain(indexed.unwrap_or_default())
        .filter_map(|did| did.parse().ok())
        .collect();
    holds.sort();
    holds.dedup();
    Ok(holds)
}

pub async fn delete_blob(
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response> {
    let owned = resolve_repo_owner(name, config)
        .await
        .and_then(|owner| require_owner(&owner, user, name, "delete from").map(|()| owner));
    let owner = match owned {
        Ok(found) => found,
        Err(refusal) => return refuse(refusal),
    };
    let unknown = || {
        error(
            OciCode::BlobUnknown,
            Some(format!("{name} has no blob {digest}")),
        )
    };
    if !index::unlinked_among(env, &owner.did, name.repository(), &[digest])
        .await?
        .is_empty()
    {
        return unknown();
    }
    match find_blob(env, config, Some(user), &owner, name, digest, &Method::Head).await {
        Ok(Some(_)) => {}
        Ok(None) => return unknown(),
        Err(e) => return hold_failure(e),
    }
    index::blob_unlinked(env, &owner.did, name.repository(), digest).await?;
    Ok(Response::empty()?.with_status(202))
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
