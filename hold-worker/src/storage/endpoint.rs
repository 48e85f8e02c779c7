//! `GET|HEAD|PUT /storage/<key>`: the hold's own byte path, for an R2
//! binding, which cannot presign. Only URLs this hold signed are honoured,
//! for exactly what they were signed for (`hold_storage::StorageUrl`); the
//! body streams between the client and R2 without entering WebAssembly
//! memory. Answers, refusals included, are shaped like S3's, so a client
//! treats these URLs like presigned S3 ones.

use super::r2::{R2Store, WriteError};
use super::StorageError;
use atcr_protocol::hold_storage::{
    error_xml, resolve_range, sha256_bytes, Grant, RangeRequest, StorageUrl, PREFIX,
};
use worker::{Data, Headers, Method, Object, Request, Response, ResponseBody, Result};

pub async fn serve(req: Request, store: &R2Store<'_>) -> Result<Response> {
    let url = req.url()?;
    let key = url.path().strip_prefix(PREFIX).unwrap_or_default();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let verified = StorageUrl::verify(
        req.method().as_ref(),
        key,
        query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        store.url_key,
        worker::Date::now().as_millis() / 1000,
    );
    let signed = match verified {
        Ok(signed) => signed,
        Err(refusal) => {
            let (code, status) = refusal.code_and_status();
            return s3_error(status, code, &refusal.to_string());
        }
    };
    let key = signed.key.as_str();
    match (req.method(), &signed.grant) {
        (Method::Get, Grant::Read) => get(&req, store, key).await,
        (Method::Head, Grant::Read) => head(store, key).await,
        (Method::Put, Grant::Part { upload_id, part }) => {
            put_part(&req, store, key, upload_id, *part).await
        }
        (Method::Put, Grant::Put { sha256, size }) => {
            put_checked(&req, store, key, sha256, *size).await
        }
        // The signature binds the method, and the hold signs no other pairs.
        _ => s3_error(
            405,
            "MethodNotAllowed",
            "this URL does not allow this method",
        ),
    }
}

/// The object, or the one byte range asked for.
async fn get(req: &Request, store: &R2Store<'_>, key: &str) -> Result<Response> {
    let range = req.headers().get("Range")?;
    let mut wanted = None;
    if range.is_some() {
        // Resolving a range needs the size first.
        let meta = match store.head(key).await {
            Ok(Some(meta)) => meta,
            Ok(None) | Err(StorageError::NotFound) => return no_such_key(),
            Err(StorageError::Failed(why)) => return storage_failed(&why),
        };
        match resolve_range(range.as_deref(), meta.size()) {
            RangeRequest::Whole => {}
            RangeRequest::Partial(r) => wanted = Some(r),
            RangeRequest::Unsatisfiable => {
                let mut resp = s3_error(416, "InvalidRange", "the range is not satisfiable")?;
                let unsatisfied = format!("bytes */{}", meta.size());
                resp.headers_mut().set("Content-Range", &unsatisfied)?;
                return Ok(resp);
            }
        }
    }
    let object = match store.read(key, wanted).await {
        Ok(Some(object)) => object,
        Ok(None) | Err(StorageError::NotFound) => return no_such_key(),
        Err(StorageError::Failed(why)) => return storage_failed(&why),
    };
    let body = match object.body() {
        Some(body) => body.response_body()?,
        None => ResponseBody::Empty,
    };
    let headers = object_headers(&object)?;
    let resp = match wanted {
        Some(range) => {
            headers.set("Content-Length", &range.length().to_string())?;
            headers.set("Content-Range", &range.content_range(object.size()))?;
            Response::from_body(body)?.with_status(206)
        }
        None => Response::from_body(body)?,
    };
    Ok(resp.with_headers(headers))
}

async fn head(store: &R2Store<'_>, key: &str) -> Result<Response> {
    match store.head(key).await {
        Ok(Some(object)) => Ok(Response::empty()?.with_headers(object_headers(&object)?)),
        Ok(None) | Err(StorageError::NotFound) => no_such_key(),
        Err(StorageError::Failed(why)) => storage_failed(&why),
    }
}

async fn put_part(
    req: &Request,
    store: &R2Store<'_>,
    key: &str,
    upload_id: &str,
    part: u32,
) -> Result<Response> {
    let Some(body) = known_length_body(req)? else {
        return length_required();
    };
    match store.write_part(key, upload_id, part, body).await {
        Ok(etag) => etag_response(&format!("\"{etag}\"")),
        Err(StorageError::NotFound) => s3_error(
            404,
            "NoSuchUpload",
            "the upload was completed or aborted, or never existed",
        ),
        Err(StorageError::Failed(why)) => storage_failed(&why),
    }
}

/// One whole object, kept only if R2 computes the signed SHA-256 for it.
async fn put_checked(
    req: &Request,
    store: &R2Store<'_>,
    key: &str,
    sha256: &str,
    size: u64,
) -> Result<Response> {
    let Some(expected) = sha256_bytes(sha256) else {
        return s3_error(400, "InvalidDigest", "the signed SHA-256 is malformed");
    };
    match content_length(req) {
        None => return length_required(),
        Some(sent) if sent != size => {
            let message = format!("this URL was signed for {size} bytes; the request sends {sent}");
            return s3_error(403, "SignatureDoesNotMatch", &message);
        }
        Some(_) => {}
    }
    let body = known_length_body(req)?.unwrap_or(Data::Empty);
    match store.write_checked(key, body, expected).await {
        Ok(etag) => etag_response(&etag),
        Err(WriteError::BadDigest) => s3_error(
            400,
            "BadDigest",
            "the bytes do not have the SHA-256 this URL was signed for; nothing was stored",
        ),
        Err(WriteError::Storage(StorageError::NotFound)) => no_such_key(),
        Err(WriteError::Storage(StorageError::Failed(why))) => storage_failed(&why),
    }
}

/// The request body as R2 takes it: R2 streams only bodies whose length is
/// known, which a request's is when it carries `Content-Length`.
fn known_length_body(req: &Request) -> Result<Option<Data>> {
    if content_length(req).is_none() {
        return Ok(None);
    }
    Ok(Some(match req.inner().body() {
        Some(stream) => Data::ReadableStream(stream),
        None => Data::Empty,
    }))
}

fn content_length(req: &Request) -> Option<u64> {
    req.headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
}

fn object_headers(object: &Object) -> Result<Headers> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/octet-stream")?;
    headers.set("Content-Length", &object.size().to_string())?;
    headers.set("ETag", &object.http_etag())?;
    headers.set("Accept-Ranges", "bytes")?;
    Ok(headers)
}

fn etag_response(etag: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("ETag", etag)?;
    Ok(Response::empty()?.with_headers(headers))
}

fn no_such_key() -> Result<Response> {
    s3_error(404, "NoSuchKey", "no such object")
}

fn length_required() -> Result<Response> {
    s3_error(
        411,
        "MissingContentLength",
        "send Content-Length: the body streams to storage, which needs its length",
    )
}

fn storage_failed(why: &str) -> Result<Response> {
    worker::console_error!("storage endpoint: {why}");
    s3_error(502, "InternalError", why)
}

fn s3_error(status: u16, code: &str, message: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/xml")?;
    Ok(Response::ok(error_xml(code, message))?
        .with_status(status)
        .with_headers(headers))
}
