//! `GET`/`HEAD /v2/<name>/blobs/<digest>`.
//!
//! "If the blob is not stored locally, the registry may redirect the client
//! to another location" (distribution spec, pulling blobs): GET answers 307
//! with a URL the owner's hold presigned, so the bytes go straight from
//! storage to the client. HEAD answers from the hold's stat.

use crate::config::AppConfig;
use crate::holds::{locate, HoldCallError};
use crate::oci::error;
use atcr_protocol::reference::RepoName;
use atcr_protocol::{Did, Digest, OciCode};
use worker::{Method, Response, Result};

pub async fn get_blob(
    config: &AppConfig,
    user: Option<&Did>,
    method: Method,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response> {
    let hold = match locate(name, config).await {
        Ok((_, hold)) => hold,
        Err((code, message)) => return error(code, Some(message)),
    };
    let unknown = || {
        error(
            OciCode::BlobUnknown,
            Some(format!("{name} has no blob {digest}")),
        )
    };
    if method == Method::Head {
        return match hold.stat(config, user, digest).await {
            Ok(Some(size)) => {
                let mut resp = Response::empty()?;
                let h = resp.headers_mut();
                h.set("Content-Length", &size.to_string())?;
                h.set("Content-Type", "application/octet-stream")?;
                h.set("Docker-Content-Digest", digest.as_str())?;
                Ok(resp)
            }
            Ok(None) => unknown(),
            Err(e) => hold_failure(e),
        };
    }
    match hold.blob_url(config, user, digest, "GET").await {
        Ok(Some(url)) => {
            let mut resp = Response::empty()?.with_status(307);
            resp.headers_mut().set("Location", &url)?;
            resp.headers_mut()
                .set("Docker-Content-Digest", digest.as_str())?;
            Ok(resp)
        }
        Ok(None) => unknown(),
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
