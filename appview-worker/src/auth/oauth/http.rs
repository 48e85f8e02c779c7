//! HTTP with DPoP proofs: every request to an authorization server or to a
//! PDS on an OAuth session carries a fresh proof, signed by the session's
//! key, with the server's latest nonce; a server that asks for a (new)
//! nonce gets the request once more with it (`dpop::needs_nonce_retry`).
//!
//! Nonces are kept per origin in this isolate; a session's row in D1 keeps
//! its PDS's last one too, so a new isolate starts with it.

use atcr_protocol::oauth::discovery::origin;
use atcr_protocol::oauth::dpop::{needs_nonce_retry, DpopKey, ProofRequest};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{Fetch, Headers, Method, Request, RequestInit};

thread_local! {
    static NONCES: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// The nonce last heard from `url`'s origin.
pub fn nonce_for(url: &str) -> Option<String> {
    let origin = origin(url).ok()?;
    NONCES.with(|n| n.borrow().get(&origin).cloned())
}

/// Remembers a nonce for `url`'s origin unless one is known already.
pub fn seed_nonce(url: &str, nonce: &str) {
    if let Ok(origin) = origin(url) {
        NONCES.with(|n| {
            n.borrow_mut().entry(origin).or_insert_with(|| nonce.into());
        });
    }
}

fn remember_nonce(url: &str, nonce: &str) {
    if let Ok(origin) = origin(url) {
        NONCES.with(|n| n.borrow_mut().insert(origin, nonce.into()));
    }
}

/// One request to send with a DPoP proof.
pub struct DpopRequest<'a> {
    pub method: Method,
    pub url: &'a str,
    /// `(content type, bytes)`.
    pub body: Option<(&'a str, &'a [u8])>,
    /// Sent as `Authorization: DPoP <token>`, and hashed into the proof's `ath`.
    pub access_token: Option<&'a str>,
}

pub struct DpopResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub www_authenticate: Option<String>,
    /// The nonce the server handed out with this answer, if any.
    pub nonce: Option<String>,
}

impl DpopResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `request` with a proof by `key`, once more if the server wants a
/// nonce it did not get.
pub async fn send(key: &DpopKey, request: &DpopRequest<'_>) -> Result<DpopResponse, String> {
    let first = send_once(key, request).await?;
    if needs_nonce_retry(first.status, first.www_authenticate.as_deref(), &first.body)
        && first.nonce.is_some()
    {
        return send_once(key, request).await;
    }
    Ok(first)
}

/// A form POST to one of an authorization server's endpoints (PAR, token,
/// revocation), with a DPoP proof by `key`.
pub async fn post_form(key: &DpopKey, url: &str, form: &str) -> Result<DpopResponse, String> {
    send(
        key,
        &DpopRequest {
            method: Method::Post,
            url,
            body: Some(("application/x-www-form-urlencoded", form.as_bytes())),
            access_token: None,
        },
    )
    .await
}

async fn send_once(key: &DpopKey, request: &DpopRequest<'_>) -> Result<DpopResponse, String> {
    let nonce = nonce_for(request.url);
    let jti = worker_support::random_id().map_err(|e| e.to_string())?;
    let proof = key.proof(&ProofRequest {
        method: method_name(&request.method),
        url: request.url,
        iat: worker::Date::now().as_millis() / 1000,
        jti: &jti,
        nonce: nonce.as_deref(),
        access_token: request.access_token,
    });
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
    set("DPoP", &proof)?;
    set("Accept", "application/json")?;
    if let Some(token) = request.access_token {
        set("Authorization", &format!("DPoP {token}"))?;
    }
    let mut init = RequestInit::new();
    if let Some((content_type, bytes)) = request.body {
        set("Content-Type", content_type)?;
        init.with_body(Some(js_sys::Uint8Array::from(bytes).into()));
    }
    init.with_method(request.method.clone())
        .with_headers(headers);
    let req = Request::new_with_init(request.url, &init).map_err(|e| e.to_string())?;
    // Writes to the PDS wait their turn behind the repository's other writes.
    let timeout = match request.method {
        Method::Post => worker_support::PDS_WRITE_TIMEOUT,
        _ => worker_support::CALL_TIMEOUT,
    };
    let mut resp = worker_support::send_within(Fetch::Request(req), timeout)
        .await
        .map_err(|e| {
            format!(
                "{} unreachable: {e}",
                origin(request.url).unwrap_or_default()
            )
        })?;
    let header = |name: &str| resp.headers().get(name).ok().flatten();
    let nonce = header("DPoP-Nonce");
    let www_authenticate = header("WWW-Authenticate");
    if let Some(n) = &nonce {
        remember_nonce(request.url, n);
    }
    Ok(DpopResponse {
        status: resp.status_code(),
        body: resp.bytes().await.unwrap_or_default(),
        www_authenticate,
        nonce,
    })
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        _ => "POST",
    }
}

/// A public GET of a JSON document (discovery, profiles).
pub async fn get_json(url: &str) -> Result<serde_json::Value, String> {
    let parsed = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let mut resp = worker_support::call(Fetch::Url(parsed))
        .await
        .map_err(|e| format!("{url} unreachable: {e}"))?;
    if resp.status_code() != 200 {
        return Err(format!("{url} answered {}", resp.status_code()));
    }
    resp.json()
        .await
        .map_err(|e| format!("{url} answered no JSON: {e}"))
}
