//! The bucket behind the hold, as one trait with two implementations.
//!
//! Everything the hold does to storage goes through `BlobStore`: URLs that
//! move the bytes, multipart control, stat, copy, delete and the one
//! streaming read that verifies a digest.
//!
//! - `s3`: any S3-compatible endpoint. URLs are SigV4-presigned, so bytes go
//!   between clients and storage and never through the hold.
//! - `r2`: an R2 bucket binding. A binding cannot presign, so URLs point at
//!   the hold's own `/storage/` endpoint (`endpoint`), which streams the
//!   bytes between the client and the binding.

mod endpoint;
mod r2;
mod s3;

pub use endpoint::serve as serve_storage_url;
pub use r2::R2Store;
pub use s3::S3Store;

use atcr_protocol::digest::{Algorithm, Digest};
use atcr_protocol::gc::{ListPage, PendingUpload};
use std::collections::BTreeMap;
use std::time::Duration;
use wasm_bindgen_futures::JsFuture;
use worker::crypto::{DigestStream, DigestStreamAlgorithm};
use worker::ResponseBody;
use worker_support::blocks::BlockReader;

#[derive(Debug)]
pub enum StorageError {
    /// The object or upload does not exist.
    NotFound,
    /// Storage refused or failed; the text says what it answered.
    Failed(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found in storage"),
            StorageError::Failed(why) => f.write_str(why),
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

#[allow(async_fn_in_trait)] // Workers run one request per thread: no Send needed.
pub trait BlobStore {
    /// A URL that allows `method` (GET or HEAD) on `key` for `expires_in`.
    fn presign_read(&self, key: &str, method: &str, expires_in: Duration) -> Result<String>;
    /// A URL that uploads part `part` of multipart upload `upload_id`.
    fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        expires_in: Duration,
    ) -> Result<String>;
    /// A URL for one PUT of exactly `size` bytes to `key`, which storage
    /// accepts only if their SHA-256 is `checksum` (base64), and the headers
    /// the sender must repeat.
    fn presign_checked_put(
        &self,
        key: &str,
        size: u64,
        checksum: &str,
        expires_in: Duration,
    ) -> Result<(String, BTreeMap<String, String>)>;
    /// Size and stored SHA-256 checksum of `key`, or `None` when absent.
    async fn stat(&self, key: &str) -> Result<Option<ObjectInfo>>;
    async fn start_multipart(&self, key: &str) -> Result<String>;
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, &str)],
    ) -> Result<()>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;
    /// Reads `key` once, hashing as the bytes stream past: (digest, size).
    /// Memory stays flat whatever the object's size.
    async fn hash(&self, key: &str, algorithm: Algorithm) -> Result<(Digest, u64)>;
    /// Copies inside storage; the bytes never enter the Worker's memory.
    async fn copy(&self, from: &str, to: &str) -> Result<()>;
    /// Copies `from` to `to` only if its bytes have digest `expected`, with
    /// storage checking them on the way: one pass instead of a hashing read
    /// and a copy. `Some(true)`: copied; `Some(false)`: other bytes, nothing
    /// written; `None`: this store cannot check while copying.
    async fn copy_if_digest(
        &self,
        _from: &str,
        _to: &str,
        _expected: &Digest,
    ) -> Result<Option<bool>> {
        Ok(None)
    }
    async fn delete(&self, key: &str) -> Result<()>;
    /// One page (up to 1000) of the objects whose keys start with `prefix`,
    /// continuing a listing at `cursor`: key, size and last write.
    async fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<ListPage>;
    /// Incomplete multipart uploads under `prefix` (first 1000), or `None`
    /// when this store cannot list them (the R2 binding; S3 servers without
    /// `ListMultipartUploads`): a lifecycle rule must abort those.
    async fn list_multipart(&self, _prefix: &str) -> Result<Option<Vec<PendingUpload>>> {
        Ok(None)
    }
}

pub struct ObjectInfo {
    pub size: u64,
    /// The SHA-256 storage computed when the object was written (base64),
    /// if the object was written with a checksum and storage keeps them.
    pub sha256: Option<String>,
}

/// Hashes a body as it streams past, in the runtime's own DigestStream: the
/// bytes never enter WebAssembly memory, whatever the object's size. They
/// are read in blocks the runtime fills itself: piping the body in the
/// chunks it arrives in cost the runtime 8 ms of CPU per MB.
async fn hash_body(body: &ResponseBody, algorithm: Algorithm) -> Result<Digest> {
    let hasher = DigestStream::new(match algorithm {
        Algorithm::Sha256 => DigestStreamAlgorithm::Sha256,
        Algorithm::Sha512 => DigestStreamAlgorithm::Sha512,
    });
    let writer = hasher.raw().get_writer().map_err(js_failed)?;
    if let ResponseBody::Stream(body) = body {
        let mut blocks = BlockReader::new(body, HASH_BLOCK);
        while let Some(block) = blocks
            .next_block()
            .await
            .map_err(|e| StorageError::Failed(format!("reading from storage failed: {e:?}")))?
        {
            JsFuture::from(writer.write_with_chunk(&block))
                .await
                .map_err(js_failed)?;
        }
    }
    // An empty object closes the hasher with nothing written.
    JsFuture::from(writer.close()).await.map_err(js_failed)?;
    let hash = hasher.digest().await.map_err(failed)?.to_vec();
    Digest::from_hash(algorithm, &hash).map_err(|e| StorageError::Failed(e.to_string()))
}

/// Bytes hashed per call into the runtime.
const HASH_BLOCK: u32 = 4 * 1024 * 1024;

fn js_failed(e: wasm_bindgen::JsValue) -> StorageError {
    StorageError::Failed(format!("hashing failed: {e:?}"))
}

fn failed(e: worker::Error) -> StorageError {
    StorageError::Failed(e.to_string())
}
