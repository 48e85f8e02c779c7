//! Token exchange: a service-auth token from the user's own PDS becomes a
//! registry token, so a client holding any session with the PDS (OAuth,
//! app password) gets registry access without giving the appview a
//! password (`atcr_protocol::token_exchange` has the rules).
//!
//! Two doors, one answer (the `/auth/token` response, without a refresh
//! token):
//! - `GET` or `POST /auth/token?service=…&scope=…` with
//!   `Authorization: Bearer <service-auth token>`: the Docker token
//!   service's shape, for tools that already speak it;
//! - `POST /xrpc/io.atcr.auth.exchange?scope=…` with the same header: the
//!   method the token's `lxm` names (`lexicons/io.atcr.auth.exchange.json`).
//!
//! The exchange only says who the caller is: it writes nothing, and a push
//! still needs a session the appview holds for the user (OAuth sign-in at
//! `/login`, or an app password) to write their records.

use crate::auth::token::{check_service, param, respond, scopes};
use crate::config::AppConfig;
use crate::oci_error::API_VERSION_HEADER;
use atcr_protocol::service_auth::AuthError;
use atcr_protocol::token_exchange::{verify, EXCHANGE_METHOD};
use atcr_protocol::{ErrorEnvelope, OciCode};
use worker::{Method, Request, Response, Result};
use worker_support::now;
use worker_support::service_tokens::{verify_with_issuer_key, TokenRefusal};

/// Where the XRPC form of the exchange is served.
pub fn xrpc_path() -> String {
    format!("/xrpc/{EXCHANGE_METHOD}")
}

/// The service-auth token a request presents in `Authorization: Bearer`.
pub fn presented(req: &Request) -> Option<String> {
    let header = req.headers().get("Authorization").ok().flatten()?;
    let token = header.strip_prefix("Bearer ")?.trim();
    Some(token.to_string())
}

pub async fn exchange(mut req: Request, config: &AppConfig) -> Result<Response> {
    let Some(token) = presented(&req) else {
        return refuse(
            OciCode::Unauthorized,
            "AuthMissing",
            format!(
                "send a service-auth token from your PDS (getServiceAuth, aud {}, lxm {EXCHANGE_METHOD}) \
                 as 'Authorization: Bearer <token>'",
                config.did
            ),
        );
    };
    let params = parameters(&mut req).await?;
    if let Err(msg) = check_service(config, param(&params, "service").as_deref()) {
        return refuse(OciCode::Denied, "InvalidRequest", msg);
    }
    let verified = verify_with_issuer_key(&token, &config.plc_url, |_, key| {
        verify(&token, key, &config.did, now())
    })
    .await;
    let user = match verified {
        Ok(user) => user,
        Err(refusal) => {
            return refuse(
                OciCode::Unauthorized,
                error_name(&refusal),
                refusal.to_string(),
            )
        }
    };
    respond(config, Some(&user), &scopes(&params), None).await
}

/// `service` and `scope` from the query, and from a form body on POST.
async fn parameters(req: &mut Request) -> Result<Vec<(String, String)>> {
    let mut params: Vec<(String, String)> = req
        .url()?
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let form = req
        .headers()
        .get("Content-Type")?
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if req.method() == Method::Post && form {
        let body = req.text().await?;
        params.extend(
            url::form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    Ok(params)
}

/// The XRPC error name for a refusal (as atproto services name them).
fn error_name(refusal: &TokenRefusal) -> &'static str {
    match refusal {
        TokenRefusal::Token(AuthError::Expired) => "JwtExpired",
        TokenRefusal::Token(AuthError::Audience(_)) => "BadJwtAudience",
        TokenRefusal::Token(AuthError::Method(..)) => "BadJwtLexiconMethod",
        TokenRefusal::Token(AuthError::Signature(_)) => "BadJwtSignature",
        TokenRefusal::Token(AuthError::TooLong(_)) => "BadJwtLifetime",
        TokenRefusal::Token(_) => "BadJwt",
        TokenRefusal::Unresolved(..) | TokenRefusal::NoKey(..) => "BadJwtIssuer",
    }
}

/// A refusal both kinds of client read: XRPC's `error`/`message` and the
/// OCI envelope's `errors` (`UNAUTHORIZED` for a token refused, `DENIED`
/// for a request for another registry), with the same words.
fn refuse(code: OciCode, name: &str, message: String) -> Result<Response> {
    let mut body = serde_json::to_value(ErrorEnvelope::single(code, Some(message.clone()), None))?;
    body["error"] = name.into();
    body["message"] = message.into();
    let mut resp = Response::from_json(&body)?.with_status(code.status());
    let headers = resp.headers_mut();
    if code == OciCode::Unauthorized {
        headers.set(
            "WWW-Authenticate",
            &format!(r#"Bearer error="invalid_token", error_description="{name}""#),
        )?;
    }
    headers.set(API_VERSION_HEADER.0, API_VERSION_HEADER.1)?;
    headers.set("Cache-Control", "no-store")?;
    Ok(resp)
}
