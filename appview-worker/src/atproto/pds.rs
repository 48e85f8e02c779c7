//! Calls the appview makes to a user's PDS: public reads of records and
//! blobs, and the XRPC calls of a session (sign-in, refresh, authorized
//! procedures). Which session to use is `auth`'s business.

use atcr_protocol::manifest::repository_key_prefix;
use atcr_protocol::Did;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit};
use worker_support::PDS_WRITE_TIMEOUT;

#[derive(Debug)]
pub enum LoginError {
    /// The PDS refused the credentials.
    Refused(String),
    Unavailable(String),
}

/// The tokens of a PDS session (`createSession`, `refreshSession`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PdsTokens {
    pub access_jwt: String,
    pub refresh_jwt: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedSession {
    did: Did,
    access_jwt: String,
    refresh_jwt: String,
}

/// `com.atproto.server.createSession` with an app password. The PDS must
/// answer for the DID it was asked about.
pub async fn create_session(pds: &str, did: &Did, password: &str) -> Result<PdsTokens, LoginError> {
    let url = format!("{pds}/xrpc/com.atproto.server.createSession");
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let body = serde_json::json!({ "identifier": did, "password": password }).to_string();
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    let req =
        Request::new_with_init(&url, &init).map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let mut resp = worker_support::call(Fetch::Request(req))
        .await
        .map_err(|e| LoginError::Unavailable(unreachable(pds, e)))?;
    match resp.status_code() {
        200 => {
            let session: CreatedSession = resp
                .json()
                .await
                .map_err(|e| LoginError::Unavailable(e.to_string()))?;
            if &session.did != did {
                return Err(LoginError::Refused(format!(
                    "{pds} signed in {} instead of {did}",
                    session.did
                )));
            }
            Ok(PdsTokens {
                access_jwt: session.access_jwt,
                refresh_jwt: session.refresh_jwt,
            })
        }
        400 | 401 => Err(LoginError::Refused(
            "the PDS refused this handle and app password".into(),
        )),
        status => Err(LoginError::Unavailable(format!(
            "{pds} answered {status} to sign-in"
        ))),
    }
}

/// The body of an XRPC procedure call.
pub enum Body<'a> {
    Json(serde_json::Value),
    Bytes(&'a [u8], &'a str),
}

/// POSTs to an XRPC procedure with a session's access token; returns the
/// status and the JSON answer (`Null` when there is none).
pub async fn call(
    pds: &str,
    access_jwt: &str,
    nsid: &str,
    body: &Body<'_>,
) -> Result<(u16, serde_json::Value), String> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
    set("Authorization", &format!("Bearer {access_jwt}"))?;
    let mut init = RequestInit::new();
    match body {
        Body::Json(v) => {
            set("Content-Type", "application/json")?;
            init.with_body(Some(JsValue::from_str(&v.to_string())));
        }
        Body::Bytes(bytes, mime) => {
            set("Content-Type", mime)?;
            init.with_body(Some(js_sys::Uint8Array::from(*bytes).into()));
        }
    }
    init.with_method(Method::Post).with_headers(headers);
    let url = format!("{pds}/xrpc/{nsid}");
    let req = Request::new_with_init(&url, &init).map_err(|e| e.to_string())?;
    let mut resp = worker_support::send_within(Fetch::Request(req), PDS_WRITE_TIMEOUT)
        .await
        .map_err(|e| unreachable(pds, e))?;
    let status = resp.status_code();
    let answer = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, answer))
}

/// `com.atproto.server.refreshSession`: new tokens for a session, or `None`
/// when the PDS says the session has ended.
pub async fn refresh_session(pds: &str, refresh_jwt: &str) -> Result<Option<PdsTokens>, String> {
    let headers = Headers::new();
    headers
        .set("Authorization", &format!("Bearer {refresh_jwt}"))
        .map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers);
    let url = format!("{pds}/xrpc/com.atproto.server.refreshSession");
    let req = Request::new_with_init(&url, &init).map_err(|e| e.to_string())?;
    let mut resp = worker_support::call(Fetch::Request(req))
        .await
        .map_err(|e| unreachable(pds, e))?;
    if resp.status_code() != 200 {
        return Ok(None);
    }
    let s: CreatedSession = resp.json().await.map_err(|e| e.to_string())?;
    Ok(Some(PdsTokens {
        access_jwt: s.access_jwt,
        refresh_jwt: s.refresh_jwt,
    }))
}

/// The answer of a procedure call, or the PDS's words as an error.
pub fn finish(
    nsid: &str,
    status: u16,
    answer: serde_json::Value,
) -> Result<serde_json::Value, String> {
    if status == 200 {
        Ok(answer)
    } else {
        Err(format!(
            "{nsid} failed at the PDS ({status}): {}",
            answer["message"].as_str().unwrap_or("no message")
        ))
    }
}

/// Public read of one record; `Ok(None)` when it does not exist.
pub async fn get_record(
    pds: &str,
    did: &Did,
    collection: &str,
    rkey: &str,
) -> Result<Option<serde_json::Value>, String> {
    let url = format!(
        "{pds}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={collection}&rkey={}",
        url::form_urlencoded::byte_serialize(rkey.as_bytes()).collect::<String>()
    );
    let mut resp =
        worker_support::call(Fetch::Url(url.parse().map_err(|e| format!("{url}: {e}"))?))
            .await
            .map_err(|e| unreachable(pds, e))?;
    match resp.status_code() {
        200 => resp.json().await.map(Some).map_err(|e| e.to_string()),
        400 | 404 => Ok(None),
        s => Err(format!("the PDS {pds} answered {s} to getRecord")),
    }
}

/// Public read of a blob's bytes.
pub async fn get_blob(pds: &str, did: &Did, cid: &str) -> Result<Vec<u8>, String> {
    let url = format!("{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}");
    let mut resp =
        worker_support::call(Fetch::Url(url.parse().map_err(|e| format!("{url}: {e}"))?))
            .await
            .map_err(|e| unreachable(pds, e))?;
    if resp.status_code() != 200 {
        return Err(format!(
            "the PDS {pds} answered {} to getBlob",
            resp.status_code()
        ));
    }
    resp.bytes().await.map_err(|e| e.to_string())
}

pub use worker_support::KeyRange;

/// The record key at the end of an `at://` URI.
pub fn record_key(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or_default()
}

/// The records of `collection` that belong to `repository` of `did` (keyed
/// under the repository's prefix), in key order, after the key suffix
/// `after` when given, at most `max`: requests bounded by the answer, never
/// by the rest of the account.
pub async fn repository_records(
    pds: &str,
    did: &Did,
    collection: &str,
    repository: &str,
    after: Option<&str>,
    max: usize,
) -> Result<KeyRange, String> {
    let prefix = repository_key_prefix(repository);
    let mut range =
        worker_support::records_with_prefix(pds, did, collection, &prefix, after, max).await?;
    // Whoever wrote a record chose its key: its own field has the last word.
    range
        .records
        .retain(|r| r["value"]["repository"].as_str() == Some(repository));
    Ok(range)
}

/// What a client is told when a user's PDS does not answer: the PDS, named.
fn unreachable(pds: &str, e: impl std::fmt::Display) -> String {
    format!("the PDS {pds} is unreachable: {e}")
}
