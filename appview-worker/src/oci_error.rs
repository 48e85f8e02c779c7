//! How the registry says no: the OCI error envelope (distribution spec,
//! "Error Codes") with the code's status. A leaf: the registry and the token
//! service both answer through it, and it imports nothing of theirs.

use atcr_protocol::{ErrorEnvelope, OciCode, Refusal};
use worker::{Response, Result};

/// Every registry response names the API version it speaks.
pub const API_VERSION_HEADER: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

/// A runtime failure, as a refusal (500, logged when answered). A failed
/// D1 query is named as the database, so a client can tell what is down.
pub fn internal(e: worker::Error) -> Refusal {
    let message = e.to_string();
    if matches!(e, worker::Error::D1(_)) || message.contains("D1_") {
        return (
            OciCode::Internal,
            format!("the appview's database (D1) failed: {message}"),
        );
    }
    (OciCode::Internal, message)
}

/// An OCI error response: the status of `code` and the spec's JSON envelope.
pub fn error(code: OciCode, message: Option<String>) -> Result<Response> {
    let body = ErrorEnvelope::single(code, message, None).to_json();
    let mut resp = Response::ok(body)?.with_status(code.status());
    let headers = resp.headers_mut();
    headers.set("Content-Type", "application/json")?;
    headers.set(API_VERSION_HEADER.0, API_VERSION_HEADER.1)?;
    Ok(resp)
}

/// The response for a refusal.
pub fn refuse((code, message): Refusal) -> Result<Response> {
    error(code, Some(message))
}
