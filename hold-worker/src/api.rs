//! The hold's XRPC methods (see `atcr_protocol::hold_api` for the table).
//! Each handler: authenticate, authorize, act on storage, answer JSON.

use crate::access::{require_owner, Policy};
use crate::auth::{authenticate, Caller};
use crate::config::HoldConfig;
use crate::failure::Failure;
use crate::storage::{BlobStore, S3Store};
use atcr_protocol::hold_api::*;
use atcr_protocol::paths::{blob_key, upload_key};
use atcr_protocol::upload_session::{SessionError, UploadSession};
use atcr_protocol::Digest;
use serde::de::DeserializeOwned;
use std::time::Duration;
use worker::{Date, Request, Response};
use worker_support::{query_param, random_id};

/// Each part URL is fetched right before its part is sent.
const PART_URL_LIFETIME: Duration = Duration::from_secs(900);
/// An upload session must complete within this time.
const SESSION_LIFETIME_SECS: u64 = 6 * 3600;

type Outcome = Result<Response, Failure>;

pub async fn dispatch(mut req: Request, config: &HoldConfig, method: &str) -> Outcome {
    let caller = authenticate(&req, config, method).await?;
    let store = S3Store {
        config: config.s3.clone(),
    };
    match method {
        GET_BLOB => get_blob(&req, config, &caller, &store).await,
        STAT_BLOB => stat_blob(&req, config, &caller, &store).await,
        START_UPLOAD => start_upload(body(&mut req).await?, config, &caller, &store).await,
        GET_UPLOAD_PART_URL => part_url(body(&mut req).await?, config, &caller, &store),
        COMPLETE_UPLOAD => complete_upload(body(&mut req).await?, config, &caller, &store).await,
        ABORT_UPLOAD => abort_upload(body(&mut req).await?, config, &caller, &store).await,
        DELETE_BLOB => delete_blob(body(&mut req).await?, config, &caller, &store).await,
        _ => Err(Failure::new(
            HoldError::InvalidRequest,
            format!("this hold has no method {method}"),
        )),
    }
}

/// `getBlob`: a presigned GET (or HEAD) URL for a verified blob.
async fn get_blob(
    req: &Request,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    Policy::load(config).await?.require_read(config, caller)?;
    let digest = digest_param(req)?;
    let method = query_param(req, "method").unwrap_or_else(|| "GET".into());
    if method != "GET" && method != "HEAD" {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            "method must be GET or HEAD",
        ));
    }
    let key = blob_key(&digest);
    if store.size(&key).await?.is_none() {
        return Err(blob_not_found(&digest));
    }
    let url = store.presign_read(&key, &method, Duration::from_secs(config.read_url_seconds))?;
    json(&PresignedUrl {
        url,
        expires_at: now_secs() + config.read_url_seconds,
    })
}

/// `statBlob`: the size of a verified blob.
async fn stat_blob(
    req: &Request,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    Policy::load(config).await?.require_read(config, caller)?;
    let digest = digest_param(req)?;
    match store.size(&blob_key(&digest)).await? {
        Some(size) => json(&BlobStat { digest, size }),
        None => Err(blob_not_found(&digest)),
    }
}

/// `startUpload`: opens a multipart upload under a staging key.
async fn start_upload(
    input: StartUploadInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let owner = Policy::load(config).await?.require_write(config, caller)?;
    let id = random_id()?;
    let upload_id = store.start_multipart(&upload_key(&id)).await?;
    let expires_at = now_secs() + SESSION_LIFETIME_SECS;
    let session = UploadSession {
        id,
        upload_id,
        digest: input.digest,
        owner,
        expires_at,
    };
    json(&UploadStarted {
        session: session.seal(&config.session_key),
        expires_at,
    })
}

/// `getUploadPartUrl`: a presigned PUT for one part of an open upload.
fn part_url(
    input: PartUrlInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let session = open_session(&input.session, config, caller)?;
    if input.part_number == 0 || input.part_number > MAX_PARTS {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            format!("partNumber must be 1..={MAX_PARTS}"),
        ));
    }
    let url = store.presign_part(
        &upload_key(&session.id),
        &session.upload_id,
        input.part_number,
        PART_URL_LIFETIME,
    )?;
    json(&PresignedUrl {
        url,
        expires_at: now_secs() + PART_URL_LIFETIME.as_secs(),
    })
}

/// `completeUpload`: assembles the parts, hashes the result, and publishes it
/// under its digest only if the digest matches; otherwise discards it.
async fn complete_upload(
    input: CompleteInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let session = open_session(&input.session, config, caller)?;
    if input.parts.is_empty() {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            "an upload needs at least one part",
        ));
    }
    let expected = match (input.digest, session.digest) {
        (Some(given), Some(started)) if given != started => {
            let msg = format!("the upload was started for {started}, not {given}");
            return Err(Failure::new(HoldError::InvalidRequest, msg));
        }
        (Some(digest), _) | (None, Some(digest)) => digest,
        (None, None) => {
            return Err(Failure::new(
                HoldError::InvalidRequest,
                "name the digest the upload must have",
            ))
        }
    };
    let mut parts: Vec<(u32, &str)> = input
        .parts
        .iter()
        .map(|p| (p.part_number, p.etag.as_str()))
        .collect();
    parts.sort_by_key(|(n, _)| *n);
    let staging = upload_key(&session.id);
    store
        .complete_multipart(&staging, &session.upload_id, &parts)
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::NotFound => {
                Failure::new(HoldError::UploadNotFound, "the upload no longer exists")
            }
            other => other.into(),
        })?;

    let started = Date::now().as_millis();
    let hashed = store.hash(&staging, expected.algorithm()).await;
    let verify_ms = Date::now().as_millis().saturating_sub(started);
    let (actual, size) = match hashed {
        Ok(h) => h,
        Err(e) => {
            store.delete(&staging).await.ok();
            return Err(e.into());
        }
    };
    if actual != expected {
        store.delete(&staging).await?;
        return Err(Failure::new(
            HoldError::DigestMismatch,
            format!(
                "the uploaded bytes have digest {actual}, not {expected}; the upload was discarded"
            ),
        ));
    }
    store.copy(&staging, &blob_key(&actual)).await?;
    store.delete(&staging).await?;
    json(&UploadCompleted {
        digest: actual,
        size,
        verify_ms,
    })
}

/// `abortUpload`: discards the parts and the staging object.
async fn abort_upload(
    input: SessionInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let session = open_session(&input.session, config, caller)?;
    let staging = upload_key(&session.id);
    match store.abort_multipart(&staging, &session.upload_id).await {
        Ok(()) | Err(crate::storage::StorageError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    store.delete(&staging).await?;
    json(&serde_json::json!({}))
}

/// `deleteBlob`: removes a blob; only the hold's owner may.
async fn delete_blob(
    input: DigestInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    require_owner(config, caller)?;
    store.delete(&blob_key(&input.digest)).await?;
    json(&serde_json::json!({}))
}

fn open_session(
    token: &str,
    config: &HoldConfig,
    caller: &Caller,
) -> Result<UploadSession, Failure> {
    let Caller::User(did) = caller else {
        return Err(Failure::new(
            HoldError::AuthRequired,
            "uploads need a service token",
        ));
    };
    UploadSession::open(token, &config.session_key, did, now_secs()).map_err(|e| match e {
        SessionError::NotYours => Failure::new(HoldError::Forbidden, e.to_string()),
        SessionError::Expired | SessionError::Invalid => {
            Failure::new(HoldError::UploadNotFound, e.to_string())
        }
    })
}

fn blob_not_found(digest: &Digest) -> Failure {
    Failure::new(
        HoldError::BlobNotFound,
        format!("this hold has no blob {digest}"),
    )
}

fn digest_param(req: &Request) -> Result<Digest, Failure> {
    let raw = query_param(req, "digest").ok_or_else(|| {
        Failure::new(
            HoldError::InvalidRequest,
            "the digest parameter is required",
        )
    })?;
    raw.parse()
        .map_err(|e: atcr_protocol::digest::DigestError| {
            Failure::new(HoldError::InvalidRequest, e.to_string())
        })
}

async fn body<T: DeserializeOwned>(req: &mut Request) -> Result<T, Failure> {
    let text = req.text().await?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            HoldError::InvalidRequest,
            format!("invalid request body: {e}"),
        )
    })
}

fn json<T: serde::Serialize>(value: &T) -> Outcome {
    Ok(Response::from_json(value)?)
}

fn now_secs() -> u64 {
    Date::now().as_millis() / 1000
}
