//! The hold's XRPC methods (see `atcr_protocol::hold_api` for the table).
//! Each handler: authenticate, authorize, act on storage, answer JSON.

use crate::access::{require_owner, Policy};
use crate::auth::{authenticate, Caller};
use crate::config::{HoldConfig, StorageConfig};
use crate::failure::Failure;
use crate::storage::{BlobStore, ObjectInfo, R2Store, S3Store, StorageError};
use crate::usage::{self, Charge, Ledger};
use atcr_protocol::hold_api::*;

use atcr_protocol::s3::sha256_checksum;
use atcr_protocol::upload_session::{SessionError, UploadSession};
use atcr_protocol::{Did, Digest};
use serde::de::DeserializeOwned;
use std::time::Duration;
use worker::{Date, Request, Response};
use worker_support::{query_param, random_id};

/// Each part URL is fetched right before its part is sent.
const PART_URL_LIFETIME: Duration = Duration::from_secs(900);
/// An upload session must complete within this time.
const SESSION_LIFETIME_SECS: u64 = 6 * 3600;

type Outcome = Result<Response, Failure>;

pub async fn dispatch(req: Request, config: &HoldConfig, method: &str) -> Outcome {
    let caller = authenticate(&req, config, method).await?;
    match &config.storage {
        StorageConfig::S3(s3) => {
            let store = S3Store { config: s3.clone() };
            call(req, config, &caller, method, &store).await
        }
        StorageConfig::R2 { bucket, url_key } => {
            let store = R2Store {
                bucket,
                base_url: &config.public_url,
                url_key,
            };
            call(req, config, &caller, method, &store).await
        }
    }
}

async fn call(
    mut req: Request,
    config: &HoldConfig,
    caller: &Caller,
    method: &str,
    store: &impl BlobStore,
) -> Outcome {
    match method {
        GET_BLOB => get_blob(&req, config, caller, store).await,
        STAT_BLOB => stat_blob(&req, config, caller, store).await,
        STAT_BLOBS => stat_blobs(body(&mut req).await?, config, caller, store).await,
        START_UPLOAD => start_upload(body(&mut req).await?, config, caller, store).await,
        GET_UPLOAD_PART_URL => part_url(body(&mut req).await?, config, caller, store),
        COMPLETE_UPLOAD => complete_upload(body(&mut req).await?, config, caller, store).await,
        ABORT_UPLOAD => abort_upload(body(&mut req).await?, config, caller, store).await,
        DELETE_BLOB => delete_blob(body(&mut req).await?, config, caller, store).await,
        GET_QUOTA => get_quota(config, caller).await,
        COLLECT_GARBAGE => {
            json(&crate::gc::collect(body(&mut req).await?, config, caller, store).await?)
        }
        _ => Err(Failure::new(
            HoldError::MethodNotImplemented,
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
    let policy = Policy::load(config).await?;
    policy.require_read(config, caller)?;
    let digest = digest_param(req)?;
    let method = query_param(req, "method").unwrap_or_else(|| "GET".into());
    if method != "GET" && method != "HEAD" {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            "method must be GET or HEAD",
        ));
    }
    let key = config.keys.blob_key(&digest);
    if store.stat(&key).await?.is_none() {
        return Err(blob_not_found(&digest));
    }
    let url = store.presign_read(&key, &method, Duration::from_secs(config.read_url_seconds))?;
    json(&PresignedUrl {
        url,
        expires_at: now_secs() + config.read_url_seconds,
        // Anyone may read here: the appview may hand this URL to anyone.
        public: policy.public,
        // Reused no longer than this hold reuses its own view of who may read.
        reuse_seconds: config.crew_cache_seconds,
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
    match store.stat(&config.keys.blob_key(&digest)).await? {
        Some(info) => json(&BlobStat {
            digest,
            size: info.size,
        }),
        None => Err(blob_not_found(&digest)),
    }
}

/// `statBlobs`: the sizes of the verified blobs among `digests`, asked of
/// storage all at once; absent blobs are left out.
async fn stat_blobs(
    input: StatBlobsInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    Policy::load(config).await?.require_read(config, caller)?;
    if input.digests.len() > MAX_STAT_BATCH {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            format!(
                "statBlobs takes at most {MAX_STAT_BATCH} digests, not {}",
                input.digests.len()
            ),
        ));
    }
    let stats = input.digests.iter().map(|digest| async move {
        let found = store.stat(&config.keys.blob_key(digest)).await?;
        Ok::<_, StorageError>(found.map(|info| BlobStat {
            digest: digest.clone(),
            size: info.size,
        }))
    });
    let blobs = futures_util::future::try_join_all(stats)
        .await?
        .into_iter()
        .flatten()
        .collect();
    json(&BlobStats { blobs })
}

/// `startUpload`: opens an upload under a staging key: one checksummed PUT
/// when the digest (sha256) and size are known and small enough, else a
/// multipart upload.
async fn start_upload(
    input: StartUploadInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let writer = Policy::load(config).await?.require_write(config, caller)?;
    // Over the quota already: refuse before any bytes are sent.
    if let (true, Some(ledger), Some(digest)) = (writer.limited, Ledger::of(config), &input.digest)
    {
        if let Err(exceeded) = ledger.precheck(&writer.did, digest, input.size).await? {
            return Err(usage::refusal(config, &writer.did, exceeded).await);
        }
    }
    let owner = writer.did;
    let id = random_id()?;
    let staging = config.keys.upload_key(&id);
    let expires_at = now_secs() + SESSION_LIFETIME_SECS;
    let checksum = input.digest.as_ref().and_then(sha256_checksum);
    let (upload_id, single_put) = match (checksum, input.size) {
        (Some(checksum), Some(size)) if size <= config.single_put_max_bytes => {
            let (url, headers) =
                store.presign_checked_put(&staging, size, &checksum, PART_URL_LIFETIME)?;
            let put = SignedPut {
                url,
                headers,
                expires_at: now_secs() + PART_URL_LIFETIME.as_secs(),
            };
            (None, Some(put))
        }
        _ => (Some(store.start_multipart(&staging).await?), None),
    };
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
        single_put,
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
    let Some(upload_id) = &session.upload_id else {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            "this upload is one PUT to the URL startUpload returned; it has no parts",
        ));
    };
    let url = store.presign_part(
        &config.keys.upload_key(&session.id),
        upload_id,
        input.part_number,
        PART_URL_LIFETIME,
    )?;
    json(&PresignedUrl {
        url,
        expires_at: now_secs() + PART_URL_LIFETIME.as_secs(),
        public: false,
        reuse_seconds: 0,
    })
}

/// `completeUpload`: confirms the staged bytes have the expected digest and
/// publishes them under it; otherwise discards them. A single PUT was
/// checksummed by storage as it arrived; assembled parts are read back and
/// hashed here. A user under a quota is charged first: over it, the bytes
/// are discarded and nothing is published.
async fn complete_upload(
    input: CompleteInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let session = open_session(&input.session, config, caller)?;
    let expected = match (input.digest, &session.digest) {
        (Some(given), Some(started)) if &given != started => {
            let msg = format!("the upload was started for {started}, not {given}");
            return Err(Failure::new(HoldError::InvalidRequest, msg));
        }
        (Some(digest), _) => digest,
        (None, Some(digest)) => digest.clone(),
        (None, None) => {
            return Err(Failure::new(
                HoldError::InvalidRequest,
                "name the digest the upload must have",
            ))
        }
    };
    let staging = config.keys.upload_key(&session.id);
    let ledger = ledger_for(config, &session.owner).await?;
    if let Some(upload_id) = &session.upload_id {
        assemble(store, &staging, upload_id, &input.parts).await?;
    }

    let started = Date::now().as_millis();
    let published = charge_and_publish(
        config,
        store,
        &staging,
        &expected,
        &session.owner,
        ledger.as_ref(),
    )
    .await;
    let verify_ms = Date::now().as_millis().saturating_sub(started);
    // Published or refused, the staged bytes have served their purpose.
    let discarded = store.delete(&staging).await;
    let (size, verified_by) = published?;
    discarded?;
    json(&UploadCompleted {
        digest: expected,
        size,
        verify_ms,
        verified_by,
    })
}

/// Completes the storage-side multipart upload from the parts' ETags.
async fn assemble(
    store: &impl BlobStore,
    staging: &str,
    upload_id: &str,
    parts: &[CompletedPart],
) -> Result<(), Failure> {
    if parts.is_empty() {
        return Err(Failure::new(
            HoldError::InvalidRequest,
            "an upload needs at least one part",
        ));
    }
    let mut parts: Vec<(u32, &str)> = parts
        .iter()
        .map(|p| (p.part_number, p.etag.as_str()))
        .collect();
    parts.sort_by_key(|(n, _)| *n);
    store
        .complete_multipart(staging, upload_id, &parts)
        .await
        .map_err(|e| match e {
            StorageError::NotFound => {
                Failure::new(HoldError::UploadNotFound, "the upload no longer exists")
            }
            other => other.into(),
        })
}

/// The ledger that charges `did`'s uploads: `None` when the hold has no
/// quota, or `did` is its owner or crew (decided as the blob is published).
async fn ledger_for<'a>(config: &'a HoldConfig, did: &Did) -> Result<Option<Ledger<'a>>, Failure> {
    let Some(ledger) = Ledger::of(config) else {
        return Ok(None);
    };
    if did == &config.owner || !Policy::load(config).await?.limits(config, did) {
        return Ok(None);
    }
    Ok(Some(ledger))
}

/// Charges `did` for the staged blob when a ledger limits them (refused over
/// the quota, before anything is visible), then publishes it; a publish that
/// fails gives the charge back.
async fn charge_and_publish(
    config: &HoldConfig,
    store: &impl BlobStore,
    staging: &str,
    expected: &Digest,
    did: &Did,
    ledger: Option<&Ledger<'_>>,
) -> Result<(u64, Verification), Failure> {
    let Some(info) = store.stat(staging).await? else {
        return Err(Failure::new(
            HoldError::UploadNotFound,
            "nothing was uploaded for this session",
        ));
    };
    let charged = match ledger {
        None => false,
        Some(ledger) => match ledger.charge(did, expected, info.size).await? {
            Ok(charge) => charge == Charge::New,
            Err(exceeded) => return Err(usage::refusal(config, did, exceeded).await),
        },
    };
    let target = config.keys.blob_key(expected);
    let published = publish(store, staging, &target, expected, &info).await;
    if let (Err(_), true, Some(ledger)) = (&published, charged, ledger) {
        if let Err(e) = ledger.refund(did, expected).await {
            worker::console_error!("refund of {expected} for {did}: {}", e.message);
        }
    }
    published
}

/// Publishes the staged object under `expected` once its digest is
/// confirmed: by the checksum storage recorded as the bytes arrived; else by
/// storage checking them while it copies; else by a hashing read, then a
/// copy, to `target`, the digest's key. Other bytes are refused.
async fn publish(
    store: &impl BlobStore,
    staging: &str,
    target: &str,
    expected: &Digest,
    info: &ObjectInfo,
) -> Result<(u64, Verification), Failure> {
    let refused = |actual: String| {
        Failure::new(
            HoldError::DigestMismatch,
            format!("the uploaded bytes have {actual}, not {expected}; the upload was discarded"),
        )
    };
    if info.sha256.is_some() && info.sha256 == sha256_checksum(expected) {
        store.copy(staging, target).await?;
        return Ok((info.size, Verification::StorageChecksum));
    }
    match store.copy_if_digest(staging, target, expected).await? {
        Some(true) => return Ok((info.size, Verification::StorageChecksum)),
        Some(false) => return Err(refused("another digest".into())),
        None => {}
    }
    let (actual, size) = store.hash(staging, expected.algorithm()).await?;
    if actual != *expected {
        return Err(refused(format!("digest {actual}")));
    }
    store.copy(staging, target).await?;
    Ok((size, Verification::HoldHash))
}

/// `abortUpload`: discards the parts and the staging object.
async fn abort_upload(
    input: SessionInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Outcome {
    let session = open_session(&input.session, config, caller)?;
    let staging = config.keys.upload_key(&session.id);
    if let Some(upload_id) = &session.upload_id {
        match store.abort_multipart(&staging, upload_id).await {
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
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
    store.delete(&config.keys.blob_key(&input.digest)).await?;
    usage::forget_blob(config, &input.digest).await?;
    json(&serde_json::json!({}))
}

/// `getQuota`: the caller's limits on this hold and what they store.
async fn get_quota(config: &HoldConfig, caller: &Caller) -> Outcome {
    let Caller::User(did) = caller else {
        return Err(Failure::new(
            HoldError::AuthRequired,
            "getQuota needs a service token",
        ));
    };
    let Some(ledger) = ledger_for(config, did).await? else {
        return json(&QuotaStatus::default());
    };
    let (usage, _) = ledger.usage(did, None).await?;
    json(&QuotaStatus {
        limited: true,
        max_bytes: ledger.quota.max_bytes,
        max_blobs: ledger.quota.max_blobs,
        used_bytes: usage.bytes,
        used_blobs: usage.blobs,
    })
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
