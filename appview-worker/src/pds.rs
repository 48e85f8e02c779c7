//! Calls the appview makes to a user's PDS.

use crate::sessions::PdsTokens;
use atcr_protocol::Did;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit};

#[derive(Debug)]
pub enum LoginError {
    /// The PDS refused the credentials.
    Refused(String),
    Unavailable(String),
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
    headers.set("content-type", "application/json").map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let body = serde_json::json!({ "identifier": did, "password": password }).to_string();
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&body)));
    let req = Request::new_with_init(&url, &init).map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let mut resp = Fetch::Request(req).send().await.map_err(|e| LoginError::Unavailable(format!("{pds} unreachable: {e}")))?;
    match resp.status_code() {
        200 => {
            let session: CreatedSession = resp.json().await.map_err(|e| LoginError::Unavailable(e.to_string()))?;
            if &session.did != did {
                return Err(LoginError::Refused(format!("{pds} signed in {} instead of {did}", session.did)));
            }
            Ok(PdsTokens { access_jwt: session.access_jwt, refresh_jwt: session.refresh_jwt })
        }
        400 | 401 => Err(LoginError::Refused("the PDS refused this handle and app password".into())),
        status => Err(LoginError::Unavailable(format!("{pds} answered {status} to sign-in"))),
    }
}
