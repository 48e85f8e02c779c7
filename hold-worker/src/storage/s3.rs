//! `BlobStore` on any S3-compatible endpoint: URLs are SigV4-presigned, so
//! the bytes go between clients and storage; the hold itself sends only
//! small signed requests (multipart control, copy, delete, stat) and the one
//! streaming read that verifies a digest.

use super::{failed, hash_body, BlobStore, ObjectInfo, Result, StorageError};
use atcr_protocol::digest::{Algorithm, Digest};
use atcr_protocol::gc::{
    parse_list_multipart_uploads, parse_list_objects_v2, ListPage, PendingUpload,
};
use atcr_protocol::s3::{
    complete_multipart_xml, xml_element, S3Config, CHECKSUM_SHA256_HEADER, EMPTY_SHA256,
};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit, Response};
use worker_support::now;

/// Any S3-compatible endpoint, reached with SigV4-signed `fetch`.
pub struct S3Store {
    pub config: std::rc::Rc<S3Config>,
}

impl S3Store {
    fn url(&self, key: &str, query: &str) -> String {
        let base = self.config.object_url(key);
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// Sends one signed request; `body` is small (XML) or absent.
    async fn send(
        &self,
        method: Method,
        url: &str,
        extra: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Response> {
        let payload_hash = match &body {
            Some(b) => hex(&Sha256::digest(b.as_bytes())),
            None => EMPTY_SHA256.to_string(),
        };
        let signed = self
            .config
            .sign_headers(method.as_ref(), url, extra, &payload_hash, now())
            .map_err(|e| StorageError::Failed(e.to_string()))?;
        let headers = Headers::new();
        for (k, v) in extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(signed)
        {
            headers.set(&k, &v).map_err(failed)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if let Some(b) = body {
            init.with_body(Some(JsValue::from_str(&b)));
        }
        let req = Request::new_with_init(url, &init).map_err(failed)?;
        worker_support::subrequests::note();
        Fetch::Request(req)
            .send()
            .await
            .map_err(|e| StorageError::Failed(format!("storage unreachable: {e}")))
    }

    /// Like `check`, for operations where S3 may answer 200 and put the
    /// failure in the body (CompleteMultipartUpload, CopyObject).
    async fn check_body(resp: Response, what: &str) -> Result<()> {
        let mut resp = Self::check(resp, what).await?;
        let body = resp.text().await.map_err(failed)?;
        match xml_element(&body, "Code") {
            Some(code) => Err(StorageError::Failed(format!(
                "storage refused {what}: {code}"
            ))),
            None => Ok(()),
        }
    }

    /// Maps a non-2xx answer to an error, keeping S3's error code.
    async fn check(mut resp: Response, what: &str) -> Result<Response> {
        match resp.status_code() {
            200..=299 => Ok(resp),
            404 => Err(StorageError::NotFound),
            status => {
                let body = resp.text().await.unwrap_or_default();
                let code = xml_element(&body, "Code").unwrap_or_default();
                if code == "NoSuchUpload" || code == "NoSuchKey" {
                    return Err(StorageError::NotFound);
                }
                Err(StorageError::Failed(format!(
                    "storage refused {what}: {status} {code}"
                )))
            }
        }
    }
}

impl BlobStore for S3Store {
    fn presign_read(&self, key: &str, method: &str, expires_in: Duration) -> Result<String> {
        self.config
            .presign(method, key, &[], expires_in, now())
            .map_err(|e| StorageError::Failed(e.to_string()))
    }

    fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        expires_in: Duration,
    ) -> Result<String> {
        let part = part.to_string();
        self.config
            .presign(
                "PUT",
                key,
                &[("partNumber", &part), ("uploadId", upload_id)],
                expires_in,
                now(),
            )
            .map_err(|e| StorageError::Failed(e.to_string()))
    }

    fn presign_checked_put(
        &self,
        key: &str,
        size: u64,
        checksum: &str,
        expires_in: Duration,
    ) -> Result<(String, BTreeMap<String, String>)> {
        let size = size.to_string();
        let headers = [
            ("content-length", size.as_str()),
            (CHECKSUM_SHA256_HEADER, checksum),
        ];
        let url = self
            .config
            .presign_with_headers("PUT", key, &[], &headers, expires_in, now())
            .map_err(|e| StorageError::Failed(e.to_string()))?;
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok((url, headers))
    }

    async fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let resp = self
            .send(
                Method::Head,
                &self.url(key, ""),
                &[("x-amz-checksum-mode", "ENABLED")],
                None,
            )
            .await?;
        let resp = match Self::check(resp, "HEAD").await {
            Ok(resp) => resp,
            Err(StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = |name: &str| resp.headers().get(name).ok().flatten();
        let size = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StorageError::Failed("storage sent no Content-Length".into()))?;
        Ok(Some(ObjectInfo {
            size,
            sha256: header(CHECKSUM_SHA256_HEADER),
        }))
    }

    async fn start_multipart(&self, key: &str) -> Result<String> {
        let resp = self
            .send(Method::Post, &self.url(key, "uploads="), &[], None)
            .await?;
        let mut resp = Self::check(resp, "CreateMultipartUpload").await?;
        let body = resp.text().await.map_err(failed)?;
        xml_element(&body, "UploadId")
            .ok_or_else(|| StorageError::Failed("storage returned no UploadId".into()))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, &str)],
    ) -> Result<()> {
        let url = self.url(key, &format!("uploadId={}", encode_query(upload_id)));
        let resp = self
            .send(Method::Post, &url, &[], Some(complete_multipart_xml(parts)))
            .await?;
        Self::check_body(resp, "CompleteMultipartUpload").await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let url = self.url(key, &format!("uploadId={}", encode_query(upload_id)));
        let resp = self.send(Method::Delete, &url, &[], None).await?;
        Self::check(resp, "AbortMultipartUpload").await.map(|_| ())
    }

    async fn hash(&self, key: &str, algorithm: Algorithm) -> Result<(Digest, u64)> {
        let resp = self
            .send(Method::Get, &self.url(key, ""), &[], None)
            .await?;
        let resp = Self::check(resp, "GET").await?;
        let size: u64 = resp
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StorageError::Failed("storage sent no Content-Length".into()))?;
        let digest = hash_body(resp.body(), algorithm).await?;
        Ok((digest, size))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let source = format!(
            "/{}/{}",
            self.config.bucket,
            atcr_protocol::s3::encode_key(from)
        );
        let resp = self
            .send(
                Method::Put,
                &self.url(to, ""),
                &[("x-amz-copy-source", &source)],
                None,
            )
            .await?;
        Self::check_body(resp, "CopyObject").await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let resp = self
            .send(Method::Delete, &self.url(key, ""), &[], None)
            .await?;
        match Self::check(resp, "DELETE").await {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `ListObjectsV2` on the bucket, continued by its continuation token.
    async fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<ListPage> {
        let mut query = format!("list-type=2&max-keys=1000&prefix={}", encode_query(prefix));
        if let Some(cursor) = cursor {
            query.push_str(&format!("&continuation-token={}", encode_query(cursor)));
        }
        let resp = self
            .send(Method::Get, &self.url("", &query), &[], None)
            .await?;
        let mut resp = Self::check(resp, "ListObjectsV2").await?;
        let body = resp.text().await.map_err(failed)?;
        parse_list_objects_v2(&body).map_err(|e| StorageError::Failed(e.to_string()))
    }

    /// `ListMultipartUploads` (first page); `None` when the server lacks it.
    async fn list_multipart(&self, prefix: &str) -> Result<Option<Vec<PendingUpload>>> {
        let query = format!("uploads=&max-uploads=1000&prefix={}", encode_query(prefix));
        let resp = self
            .send(Method::Get, &self.url("", &query), &[], None)
            .await?;
        let mut resp = match resp.status_code() {
            // Servers without it (s3s-fs) answer 501 NotImplemented.
            501 => return Ok(None),
            _ => Self::check(resp, "ListMultipartUploads").await?,
        };
        let body = resp.text().await.map_err(failed)?;
        match parse_list_multipart_uploads(&body) {
            Ok(uploads) => Ok(Some(uploads)),
            Err(e) => Err(StorageError::Failed(e.to_string())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes a query value (upload ids may hold `+`, `/`, `=`).
fn encode_query(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
