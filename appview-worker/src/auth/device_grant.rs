//! The credential helper's device login (RFC 8628 in shape):
//!
//! | path | what |
//! |---|---|
//! | `POST /auth/device/code` | starts a login: a device code to poll with, a user code to approve at `<PUBLIC_URL>/device` |
//! | `POST /auth/device/token` | the poll: `authorization_pending`, `slow_down`, `expired_token`, `access_denied`, `invalid_grant`, or once the device secret |
//! | `POST /auth/device/revoke` | the helper's `logout`: Basic auth with the device secret forgets the device |
//!
//! The approval page is `web/devices.rs`; `/auth/token` takes the device
//! secret as a password (`token.rs`).

use crate::auth::{devices, limiter};
use crate::config::{AppConfig, SIGN_IN_LIMIT_PERIOD_SECS};
use atcr_protocol::device::{self, device_name};
use serde_json::json;
use worker::{Request, Response, Result};
use worker_support::json as json_response;

fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn no_store(mut resp: Response) -> Result<Response> {
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}

/// An OAuth error answer (RFC 6749 §5.2).
fn oauth_error(status: u16, error: &str, description: &str) -> Result<Response> {
    no_store(json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )?)
}

/// `POST /auth/device/code`. Each start writes a D1 row: only so many per
/// source address (the sign-in limiter).
pub async fn start(req: &mut Request, env: &worker::Env, config: &AppConfig) -> Result<Response> {
    let source = limiter::source_address(req);
    if !limiter::allowed(env, format!("device {source}")).await {
        let mut resp = oauth_error(
            429,
            "slow_down",
            &format!("too many device logins from {source}: wait a minute"),
        )?;
        resp.headers_mut()
            .set("Retry-After", &SIGN_IN_LIMIT_PERIOD_SECS.to_string())?;
        return Ok(resp);
    }
    let fields = form(&req.text().await?);
    let name = device_name(field(&fields, "device_name"), "docker-credential-atcr");
    let started = devices::start(env, &name, config.device_code_seconds).await?;
    let verification_uri = format!("{}/device", config.public_url);
    no_store(json_response(
        200,
        &json!({
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": format!("{verification_uri}?user_code={}", started.user_code),
            "expires_in": config.device_code_seconds,
            "interval": device::POLL_INTERVAL_SECS,
        }),
    )?)
}

/// `POST /auth/device/token`.
pub async fn token(req: &mut Request, env: &worker::Env) -> Result<Response> {
    let fields = form(&req.text().await?);
    if field(&fields, "grant_type") != Some(device::GRANT_TYPE) {
        return oauth_error(
            400,
            "unsupported_grant_type",
            &format!("grant_type must be {}", device::GRANT_TYPE),
        );
    }
    let Some(code) = field(&fields, "device_code").filter(|c| !c.is_empty()) else {
        return oauth_error(400, "invalid_request", "device_code is missing");
    };
    match devices::poll(env, code).await? {
        Ok(issued) => no_store(Response::from_json(&issued)?),
        Err(refusal) => oauth_error(
            400,
            refusal.error().unwrap_or("invalid_grant"),
            refusal.description(),
        ),
    }
}

/// `POST /auth/device/revoke`: Basic auth whose password is the device secret.
pub async fn revoke(req: &Request, env: &worker::Env) -> Result<Response> {
    let secret = crate::auth::token::basic_credentials(req)
        .and_then(|r| r.ok())
        .map(|(_, password)| password)
        .filter(|p| device::is_device_secret(p));
    let Some(secret) = secret else {
        return oauth_error(
            401,
            "invalid_client",
            "send the device secret as the Basic auth password",
        );
    };
    if devices::revoke_secret(env, &secret).await? {
        no_store(json_response(200, &json!({ "revoked": true }))?)
    } else {
        oauth_error(
            401,
            "invalid_client",
            "this device secret is unknown or was revoked already",
        )
    }
}
