//! The hold's XRPC API: method names, request and response bodies, errors.
//!
//! Shared by the hold (server) and the appview (client). Every method takes a
//! service token in `Authorization: Bearer` whose `lxm` names the method;
//! reads of a public hold need none.
//!
//! | method | HTTP | what |
//! |---|---|---|
//! | `io.atcr.hold.getBlob` | GET `?digest=&method=GET\|HEAD` | presigned URL for a verified blob |
//! | `io.atcr.hold.statBlob` | GET `?digest=` | size of a verified blob, 404 if absent |
//! | `io.atcr.hold.statBlobs` | POST `{digests}` | sizes of the verified blobs among up to `MAX_STAT_BATCH` digests |
//! | `io.atcr.hold.startUpload` | POST `{digest?, size?}` | opens an upload: one checksummed PUT when digest and size are known, else multipart |
//! | `io.atcr.hold.getUploadPartUrl` | POST `{session, partNumber}` | presigned URL for one part |
//! | `io.atcr.hold.completeUpload` | POST `{session, parts, digest?}` | assembles, verifies the digest, publishes |
//! | `io.atcr.hold.abortUpload` | POST `{session}` | discards an upload |
//! | `io.atcr.hold.deleteBlob` | POST `{digest}` | removes a blob (owner only) |
//! | `io.atcr.hold.getQuota` | GET | the caller's per-user quota and usage |
//! | `io.atcr.hold.collectGarbage` | POST `{dryRun, graceSeconds?, limit?}` | removes blobs no manifest record names (owner only; `crate::gc`) |
//!
//! Native clients get tokens for the upload methods from the appview's
//! `getHoldAccess` ([`GET_HOLD_ACCESS`]).
//!
//! A shared hold may limit what each user stores (`crate::quota`):
//! `startUpload` (when the digest and size are known) and `completeUpload`
//! then answer `403 QuotaExceeded`, naming the limit and the user's usage,
//! and nothing is published.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

pub const GET_BLOB: &str = "io.atcr.hold.getBlob";
pub const STAT_BLOB: &str = "io.atcr.hold.statBlob";
pub const STAT_BLOBS: &str = "io.atcr.hold.statBlobs";
pub const START_UPLOAD: &str = "io.atcr.hold.startUpload";
pub const GET_UPLOAD_PART_URL: &str = "io.atcr.hold.getUploadPartUrl";
pub const COMPLETE_UPLOAD: &str = "io.atcr.hold.completeUpload";
pub const ABORT_UPLOAD: &str = "io.atcr.hold.abortUpload";
pub const DELETE_BLOB: &str = "io.atcr.hold.deleteBlob";
pub const GET_QUOTA: &str = "io.atcr.hold.getQuota";
pub const COLLECT_GARBAGE: &str = "io.atcr.hold.collectGarbage";

/// S3 allows at most 10,000 parts per upload.
pub const MAX_PARTS: u32 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedUrl {
    pub url: String,
    /// Unix seconds after which storage refuses the URL.
    pub expires_at: u64,
    /// The hold lets anyone read this blob (a public hold): the URL may be
    /// handed to any caller. Otherwise (and from holds that do not say)
    /// it is only for the caller it was asked for.
    #[serde(default)]
    pub public: bool,
    /// How long the appview may hand this URL out again: the hold's own
    /// policy cache (`HOLD_CREW_CACHE_SECONDS`), so a reused URL lags a
    /// change of who may read no more than the hold itself does. 0 (and
    /// holds that do not say): not at all.
    #[serde(default)]
    pub reuse_seconds: u64,
}

/// A presigned URL is reused only while more than half its lifetime
/// remains, and one that lives less than this is not reused at all: a
/// client that receives it must have time to use it.
pub const MIN_REUSED_URL_LIFETIME_SECS: u64 = 60;

/// How long (milliseconds from `now_secs`) a presigned URL may be handed
/// out again: half its remaining lifetime, at most the `reuse_seconds` the
/// hold allowed, or `None` when it lives too briefly to be reused or the
/// hold allowed no reuse.
pub fn url_reuse_window_ms(now_secs: u64, url: &PresignedUrl) -> Option<u64> {
    let lifetime = url.expires_at.saturating_sub(now_secs);
    let window = (lifetime * 1000 / 2).min(url.reuse_seconds.saturating_mul(1000));
    (lifetime >= MIN_REUSED_URL_LIFETIME_SECS && window > 0).then_some(window)
}

#[cfg(test)]
mod reuse_tests {
    use super::*;

    #[test]
    fn urls_are_reused_for_half_their_lifetime() {
        // (now, expires_at, reuse_seconds, window in ms)
        let cases = [
            (1_000, 1_300, 3_600, Some(150_000)), // the hold's default 300 s
            (1_000, 1_300, 30, Some(30_000)),     // the hold's policy cache is shorter
            (1_000, 1_300, 0, None),              // the hold allows no reuse
            (1_000, 1_060, 3_600, Some(30_000)),  // the shortest reused
            (1_000, 1_059, 3_600, None),          // too short to hand out twice
            (1_000, 1_000, 3_600, None),          // expired as it arrived
            (1_000, 900, 3_600, None),            // already expired (clock skew)
            (1_000, 1_000 + 3_600, 3_600, Some(1_800_000)),
        ];
        for (now, expires_at, reuse_seconds, window) in cases {
            let url = PresignedUrl {
                url: "https://s3/x".into(),
                expires_at,
                public: false,
                reuse_seconds,
            };
            assert_eq!(url_reuse_window_ms(now, &url), window, "{now} {expires_at}");
        }
    }

    #[test]
    fn holds_that_do_not_say_are_private() {
        let url: PresignedUrl =
            serde_json::from_str(r#"{"url":"https://s3/x","expiresAt":5}"#).unwrap();
        assert!(!url.public);
        assert_eq!(url_reuse_window_ms(0, &url), None);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobStat {
    pub digest: Digest,
    pub size: u64,
}

/// The most digests one `statBlobs` call may name: each costs the hold a
/// storage request, and a Worker on the Free plan may make 50.
pub const MAX_STAT_BATCH: usize = 40;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatBlobsInput {
    pub digests: Vec<Digest>,
}

/// The blobs the hold has among those asked for; the others are absent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobStats {
    pub blobs: Vec<BlobStat>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestInput {
    pub digest: Digest,
}

/// The digest may be named at the start or, when the client learns it only
/// at the end (OCI upload sessions), at completion. With a sha256 digest and
/// the size, the hold may answer with a single checksummed PUT instead of a
/// multipart upload: storage itself then refuses bytes with another hash.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartUploadInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadStarted {
    /// Opaque, signed; names the upload in every later call.
    pub session: String,
    /// The session's deadline (unix seconds).
    pub expires_at: u64,
    /// When present, the whole blob goes in this one PUT (then
    /// `completeUpload` with no parts); otherwise ask for part URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_put: Option<SignedPut>,
}

/// A presigned PUT whose signature covers headers the sender must repeat
/// exactly (`content-length`, `x-amz-checksum-sha256`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedPut {
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartUrlInput {
    pub session: String,
    pub part_number: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    pub part_number: u32,
    /// The `ETag` storage answered the part's PUT with.
    pub etag: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteInput {
    pub session: String,
    /// Empty for a single-PUT upload.
    #[serde(default)]
    pub parts: Vec<CompletedPart>,
    /// Required unless the session was started with a digest; must match it if both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadCompleted {
    pub digest: Digest,
    pub size: u64,
    /// Time the hold spent confirming the digest and publishing the blob.
    pub verify_ms: u64,
    pub verified_by: Verification,
}

/// Who established that the bytes have their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verification {
    /// Storage checked the SHA-256: as the bytes arrived (a checksummed
    /// PUT), or as it copied them to the digest's key.
    StorageChecksum,
    /// The hold read the assembled object back and hashed it.
    HoldHash,
}

/// `getQuota`: what the caller may store on the hold and stores now. Not
/// `limited` (the owner, crew, or a hold without quotas): no limits, no
/// usage kept. A limit of 0 is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    pub limited: bool,
    pub max_bytes: u64,
    pub max_blobs: u64,
    pub used_bytes: u64,
    pub used_blobs: u64,
}

/// `collectGarbage`: which blobs to consider. A blob goes only when no
/// `io.atcr.manifest` record of the hold's users names it and it is older
/// than `grace_seconds` (default `crate::gc::DEFAULT_GRACE_SECS`). At most
/// `limit` blobs go per call (default [`GC_DEFAULT_LIMIT`]): each removal is
/// a subrequest, and a Worker request has a budget of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectGarbageInput {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Removals per `collectGarbage` call unless the caller asks for fewer or more.
pub const GC_DEFAULT_LIMIT: u32 = 100;
/// The most removals one call makes, whatever it asks.
pub const GC_MAX_LIMIT: u32 = 500;

/// What a collection removed (or, on a dry run, would remove) and kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GarbageCollected {
    pub dry_run: bool,
    pub grace_seconds: u64,
    /// The users whose records were read (owner, crew, users with usage).
    pub users: Vec<String>,
    /// `io.atcr.manifest` records read, and the distinct digests they name.
    pub records: u64,
    pub referenced_digests: u64,
    pub removed: Vec<crate::gc::Garbage>,
    pub removed_bytes: u64,
    pub kept: crate::gc::Kept,
    /// More garbage than `limit` was found: call again for the rest.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInput {
    pub session: String,
}

/// The appview's `io.atcr.auth.getHoldAccess` (GET `?repository=<name>`,
/// with a registry token granting push there): where the caller's blobs go
/// and service tokens to call that hold directly, one per upload method,
/// so a native client sends blobs straight to storage. The tokens are the
/// appview's (`iss` its DID, `sub` the caller, `lxm` one method) and live
/// `HOLD_ACCESS_TOKEN_SECS`: the hold still decides who may write (owner,
/// crew, or everyone on a shared hold), charges its quota and verifies
/// every digest.
pub const GET_HOLD_ACCESS: &str = "io.atcr.auth.getHoldAccess";

/// The methods `getHoldAccess` grants tokens for: what an upload needs.
pub const UPLOAD_METHODS: [&str; 4] = [
    START_UPLOAD,
    GET_UPLOAD_PART_URL,
    COMPLETE_UPLOAD,
    ABORT_UPLOAD,
];

/// How long `getHoldAccess` tokens live (holds accept at most 120 s from
/// an appview).
pub const HOLD_ACCESS_TOKEN_SECS: u64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldAccess {
    /// The hold the repository's owner pushes to.
    pub hold: crate::Did,
    /// Its base URL (from its DID document), without a trailing `/`.
    pub endpoint: String,
    /// A service token per method in `UPLOAD_METHODS`.
    pub tokens: std::collections::BTreeMap<String, String>,
    /// Unix seconds at which the tokens expire.
    pub expires_at: u64,
}

/// XRPC errors: `{"error": <name>, "message": <words for a person>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldError {
    InvalidRequest,
    AuthRequired,
    InvalidToken,
    Forbidden,
    /// A per-user quota of a shared hold (`crate::quota`) would be crossed.
    QuotaExceeded,
    BlobNotFound,
    UploadNotFound,
    DigestMismatch,
    StorageError,
    /// The hold has no such method (an older hold, say).
    MethodNotImplemented,
}

impl HoldError {
    pub fn name_and_status(self) -> (&'static str, u16) {
        match self {
            HoldError::InvalidRequest => ("InvalidRequest", 400),
            HoldError::AuthRequired => ("AuthRequired", 401),
            HoldError::InvalidToken => ("InvalidToken", 401),
            HoldError::Forbidden => ("Forbidden", 403),
            HoldError::QuotaExceeded => ("QuotaExceeded", 403),
            HoldError::BlobNotFound => ("BlobNotFound", 404),
            HoldError::UploadNotFound => ("UploadNotFound", 404),
            HoldError::DigestMismatch => ("DigestMismatch", 400),
            HoldError::StorageError => ("StorageError", 502),
            HoldError::MethodNotImplemented => ("MethodNotImplemented", 501),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct XrpcError {
    pub error: String,
    pub message: String,
}
