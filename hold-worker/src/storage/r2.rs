//! `BlobStore` on an R2 bucket binding. A binding cannot presign, so the
//! URLs it hands out are the hold's own (`atcr_protocol::hold_storage`),
//! signed here and served by `endpoint`. Every body passes as a JS stream
//! (request → R2, R2 → response or hasher): none enters WebAssembly memory.

use super::{failed, hash_body, BlobStore, ObjectInfo, Result, StorageError};
use atcr_protocol::digest::{Algorithm, Digest};
use atcr_protocol::gc::{ListPage, ListedObject};
use atcr_protocol::hold_storage::{sha256_bytes, ByteRange, Grant, StorageUrl};
use atcr_protocol::s3::sha256_checksum;
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{Bucket, Data, Object, Range, UploadedPart};

/// R2's error numbers (the `(100xx)` its binding ends messages with).
const NO_SUCH_KEY: u32 = 10007;
const NO_SUCH_UPLOAD: u32 = 10024;
const BAD_DIGEST: u32 = 10037;

pub struct R2Store<'a> {
    pub bucket: &'a Bucket,
    /// The hold's public URL: the URLs it signs point back at it.
    pub base_url: &'a str,
    /// Signs those URLs (`hold_storage::url_key`).
    pub url_key: &'a [u8],
}

/// How a write through the binding can fail.
pub enum WriteError {
    /// R2 computed another SHA-256 than the one the write named.
    BadDigest,
    Storage(StorageError),
}

impl R2Store<'_> {
    fn sign(&self, method: &str, key: &str, grant: Grant, expires_in: Duration) -> String {
        StorageUrl {
            method: method.into(),
            key: key.into(),
            grant,
            expires_at: now_secs() + expires_in.as_secs(),
        }
        .sign(self.base_url, self.url_key)
    }

    /// The object's metadata without its body, or `None` when absent.
    pub async fn head(&self, key: &str) -> Result<Option<Object>> {
        self.bucket.head(key).await.map_err(r2_error)
    }

    /// The object (or `range` of it) with its body as a stream.
    pub async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<Option<Object>> {
        let mut get = self.bucket.get(key);
        if let Some(r) = range {
            get = get.range(Range::OffsetWithLength {
                offset: r.first,
                length: r.length(),
            });
        }
        get.execute().await.map_err(r2_error)
    }

    /// Streams `body` into part `part` of multipart upload `upload_id`;
    /// answers the part's ETag. R2 needs the length known up front (the
    /// request's `Content-Length`).
    pub async fn write_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        body: Data,
    ) -> Result<String> {
        let part = u16::try_from(part)
            .map_err(|_| StorageError::Failed(format!("part number {part} is too large")))?;
        let upload = self
            .bucket
            .resume_multipart_upload(key, upload_id)
            .map_err(r2_error)?;
        let uploaded = upload.upload_part(part, body).await.map_err(r2_error)?;
        Ok(uploaded.etag())
    }

    /// Streams `body` to `key`; R2 keeps it only if its SHA-256 is `sha256`.
    /// Answers the object's ETag.
    pub async fn write_checked(
        &self,
        key: &str,
        body: Data,
        sha256: Vec<u8>,
    ) -> std::result::Result<String, WriteError> {
        match self.bucket.put(key, body).sha256(sha256).execute().await {
            Ok(Some(object)) => Ok(object.http_etag()),
            Ok(None) => Err(WriteError::Storage(StorageError::Failed(
                "R2 stored nothing".into(),
            ))),
            Err(e) if r2_code(&e) == Some(BAD_DIGEST) => Err(WriteError::BadDigest),
            Err(e) => Err(WriteError::Storage(r2_error(e))),
        }
    }
}

impl BlobStore for R2Store<'_> {
    fn presign_read(&self, key: &str, method: &str, expires_in: Duration) -> Result<String> {
        Ok(self.sign(method, key, Grant::Read, expires_in))
    }

    fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        expires_in: Duration,
    ) -> Result<String> {
        let grant = Grant::Part {
            upload_id: upload_id.into(),
            part,
        };
        Ok(self.sign("PUT", key, grant, expires_in))
    }

    /// The checksum and size travel signed in the URL; the sender repeats
    /// only `content-length`, which R2 needs to stream the body.
    fn presign_checked_put(
        &self,
        key: &str,
        size: u64,
        checksum: &str,
        expires_in: Duration,
    ) -> Result<(String, BTreeMap<String, String>)> {
        let grant = Grant::Put {
            sha256: checksum.into(),
            size,
        };
        let url = self.sign("PUT", key, grant, expires_in);
        let headers = BTreeMap::from([("content-length".to_string(), size.to_string())]);
        Ok((url, headers))
    }

    async fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let Some(object) = self.head(key).await? else {
            return Ok(None);
        };
        // R2 keeps the SHA-256 a put was checked against (none for multipart).
        let sha256 = object
            .checksum()
            .sha256
            .and_then(|hash| Digest::from_hash(Algorithm::Sha256, &hash).ok())
            .and_then(|digest| sha256_checksum(&digest));
        Ok(Some(ObjectInfo {
            size: object.size(),
            sha256,
        }))
    }

    async fn start_multipart(&self, key: &str) -> Result<String> {
        let upload = self
            .bucket
            .create_multipart_upload(key)
            .execute()
            .await
            .map_err(r2_error)?;
        Ok(upload.upload_id().await)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, &str)],
    ) -> Result<()> {
        let parts = parts
            .iter()
            .map(|(number, etag)| {
                let number = u16::try_from(*number).map_err(|_| {
                    StorageError::Failed(format!("part number {number} is too large"))
                })?;
                // The endpoint answers ETags quoted, as HTTP writes them.
                Ok(UploadedPart::new(
                    number,
                    etag.trim_matches('"').to_string(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let upload = self
            .bucket
            .resume_multipart_upload(key, upload_id)
            .map_err(r2_error)?;
        upload.complete(parts).await.map_err(r2_error)?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let upload = self
            .bucket
            .resume_multipart_upload(key, upload_id)
            .map_err(r2_error)?;
        upload.abort().await.map_err(r2_error)
    }

    async fn hash(&self, key: &str, algorithm: Algorithm) -> Result<(Digest, u64)> {
        let object = self.read(key, None).await?.ok_or(StorageError::NotFound)?;
        let body = body_of(&object)?;
        let digest = hash_body(&body, algorithm).await?;
        Ok((digest, object.size()))
    }

    /// The binding has no server-side copy: the bytes stream from R2 back to
    /// R2 inside the runtime. A checksum R2 kept for the source goes with
    /// the copy, so R2 checks the bytes once more on the way.
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let object = self.read(from, None).await?.ok_or(StorageError::NotFound)?;
        let body = match body_of(&object)? {
            worker::ResponseBody::Stream(stream) => Data::ReadableStream(stream),
            _ => Data::Empty,
        };
        let mut put = self.bucket.put(to, body);
        if let Some(sha256) = object.checksum().sha256 {
            put = put.sha256(sha256);
        }
        put.execute().await.map_err(r2_error)?;
        Ok(())
    }

    /// R2 checks a put against a SHA-256: streaming the staged object into
    /// the digest's key with that check verifies and publishes in one read.
    async fn copy_if_digest(
        &self,
        from: &str,
        to: &str,
        expected: &Digest,
    ) -> Result<Option<bool>> {
        let Some(sha256) = sha256_checksum(expected).and_then(|b64| sha256_bytes(&b64)) else {
            return Ok(None);
        };
        let object = self.read(from, None).await?.ok_or(StorageError::NotFound)?;
        let body = match body_of(&object)? {
            worker::ResponseBody::Stream(stream) => Data::ReadableStream(stream),
            _ => Data::Empty,
        };
        match self.write_checked(to, body, sha256).await {
            Ok(_) => Ok(Some(true)),
            Err(WriteError::BadDigest) => Ok(Some(false)),
            Err(WriteError::Storage(e)) => Err(e),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.bucket.delete(key).await.map_err(r2_error)
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<ListPage> {
        let mut list = self.bucket.list().prefix(prefix).limit(1000);
        if let Some(cursor) = cursor {
            list = list.cursor(cursor);
        }
        let listed = list.execute().await.map_err(r2_error)?;
        let objects = listed
            .objects()
            .iter()
            .map(|o| ListedObject {
                key: o.key(),
                size: o.size(),
                modified_ms: o.uploaded().as_millis(),
            })
            .collect();
        let cursor = if listed.truncated() {
            Some(listed.cursor().ok_or_else(|| {
                StorageError::Failed("R2 cut a listing short without a cursor".into())
            })?)
        } else {
            None
        };
        Ok(ListPage { objects, cursor })
    }
}

fn body_of(object: &Object) -> Result<worker::ResponseBody> {
    object
        .body()
        .ok_or_else(|| StorageError::Failed("R2 returned no body".into()))?
        .response_body()
        .map_err(failed)
}

/// The R2 error number at the end of a binding error's message.
fn r2_code(e: &worker::Error) -> Option<u32> {
    let text = e.to_string();
    let inner = text.trim_end().strip_suffix(')')?;
    let (_, number) = inner.rsplit_once('(')?;
    number.parse().ok()
}

fn r2_error(e: worker::Error) -> StorageError {
    match r2_code(&e) {
        Some(NO_SUCH_KEY | NO_SUCH_UPLOAD) => StorageError::NotFound,
        _ => StorageError::Failed(format!("R2: {e}")),
    }
}

fn now_secs() -> u64 {
    worker::Date::now().as_millis() / 1000
}
