//! The OCI Distribution API under `/v2/`.

use crate::config::AppConfig;
use atcr_protocol::challenge::BearerChallenge;
use atcr_protocol::{ErrorEnvelope, OciCode};
use worker::{Request, Response, Result};

/// Every registry response names the API version it speaks.
const API_VERSION_HEADER: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

/// `GET /v2/`: "if the response is 401 Unauthorized, the client should take
/// action based on the contents of the WWW-Authenticate header".
/// No request carries a registry token the appview would accept yet, so every
/// `/v2/` request is challenged.
pub fn handle(_req: &Request, config: &AppConfig) -> Result<Response> {
    let challenge = BearerChallenge::new(config.token_realm(), &config.service);
    let mut resp = error(OciCode::Unauthorized, None)?;
    resp.headers_mut().set("WWW-Authenticate", &challenge.to_header())?;
    Ok(resp)
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
