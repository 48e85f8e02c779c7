//! Signing a user in: from what they typed to a pushed authorization
//! request and the authorization server's page (`start`), and from the
//! callback to a stored OAuth session (`finish`).
//!
//! Nothing is written before the user comes back: the PKCE verifier, the
//! DPoP key, the issuer and the identity travel in the sealed `state`,
//! bound to the browser's sign-in cookie. The callback's `iss` must be that
//! issuer and the token's `sub` that identity.

use super::client::OAuthClient;
use super::http::{self, get_json};
use super::server;
use super::store::{self, Secrets};
use crate::atproto::resolve::{resolve_user, ResolveError};
use crate::config::AppConfig;
use atcr_protocol::oauth::dpop::DpopKey;
use atcr_protocol::oauth::flow::{
    authorization_url, code_request_body, CallbackParams, ParRequest, ParResponse,
    TokenExpectations, TokenResponse,
};
use atcr_protocol::oauth::pkce::Pkce;
use atcr_protocol::oauth::scope;
use atcr_protocol::oauth::state::{self, AuthState};
use atcr_protocol::Did;
use worker::Env;

/// Why a sign-in did not happen, as the page will say it.
#[derive(Debug)]
pub enum SignInError {
    /// What was typed or sent back is wrong (400).
    Invalid(String),
    /// The authorization server or the checks refused (403).
    Refused(String),
    /// A server on the way could not be reached or misbehaved (502).
    Unavailable(String),
    /// The appview failed (500).
    Internal(String),
}

impl SignInError {
    pub fn status(&self) -> u16 {
        match self {
            SignInError::Invalid(_) => 400,
            SignInError::Refused(_) => 403,
            SignInError::Unavailable(_) => 502,
            SignInError::Internal(_) => 500,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SignInError::Invalid(m)
            | SignInError::Refused(m)
            | SignInError::Unavailable(m)
            | SignInError::Internal(m) => m,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> SignInError {
    SignInError::Internal(e.to_string())
}

fn random32() -> Result<[u8; 32], SignInError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| internal(format!("no randomness: {e}")))?;
    Ok(bytes)
}

fn now() -> u64 {
    worker::Date::now().as_millis() / 1000
}

/// Resolves `typed` (a handle or DID) to its authorization server, pushes
/// the authorization request and returns where to send the browser.
pub async fn start(
    config: &AppConfig,
    typed: &str,
    sign_in_cookie: &str,
    return_to: String,
) -> Result<String, SignInError> {
    let typed = typed.trim().trim_start_matches('@');
    if typed.is_empty() {
        return Err(SignInError::Invalid("Type your handle or DID.".into()));
    }
    let identity = resolve_user(typed, config).await.map_err(|e| match e {
        ResolveError::Unknown(m) => SignInError::Invalid(format!("Cannot sign in {typed}: {m}.")),
        ResolveError::Unavailable(m) => SignInError::Unavailable(m),
    })?;
    let client = OAuthClient::for_config(config).map_err(SignInError::Internal)?;
    let issuer = server::issuer_of(&identity.pds)
        .await
        .map_err(SignInError::Unavailable)?;
    let metadata = server::metadata(&issuer, client.is_confidential())
        .await
        .map_err(SignInError::Unavailable)?;
    let pkce = Pkce::from_random(random32()?);
    let key = loop {
        if let Ok(key) = DpopKey::from_random(random32()?) {
            break key;
        }
    };
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce).map_err(internal)?;
    let sealed = AuthState {
        verifier: pkce.verifier.clone(),
        dpop_key: key.to_secret(),
        issuer: issuer.clone(),
        did: identity.did.to_string(),
        handle: identity.doc.handle().map(|h| h.to_string()),
        pds: identity.pds.clone(),
        redirect_uri: client.redirect_uri().into(),
        return_to: Some(return_to),
        binding: state::binding(sign_in_cookie),
        expires_at: now() + state::LIFETIME,
    }
    .seal(&config.secret_key, nonce);
    let login_hint = identity.doc.handle().map(|h| h.to_string());
    let body = ParRequest {
        client: &client.auth_for(&issuer).map_err(internal)?,
        redirect_uri: client.redirect_uri(),
        scope: scope::APPVIEW,
        state: &sealed,
        code_challenge: &pkce.challenge,
        login_hint: Some(login_hint.as_deref().unwrap_or(typed)),
    }
    .body();
    let par_endpoint = metadata
        .pushed_authorization_request_endpoint
        .as_deref()
        .ok_or_else(|| SignInError::Unavailable(format!("{issuer} offers no PAR endpoint")))?;
    let answer = http::post_form(&key, par_endpoint, &body)
        .await
        .map_err(SignInError::Unavailable)?;
    if !matches!(answer.status, 200 | 201) {
        return Err(SignInError::Unavailable(format!(
            "{issuer} refused the authorization request ({}): {}",
            answer.status,
            server_words(&answer.json())
        )));
    }
    let par: ParResponse = serde_json::from_slice(&answer.body).map_err(|e| {
        SignInError::Unavailable(format!("{issuer} answered PAR with nonsense: {e}"))
    })?;
    Ok(authorization_url(
        &metadata.authorization_endpoint,
        client.client_id(),
        &par.request_uri,
    ))
}

/// Who signed in.
pub struct SignedIn {
    pub did: Did,
    pub handle: String,
    pub avatar_url: Option<String>,
    pub return_to: String,
}

/// Checks the callback (`state` opened with the browser's cookie, `iss`),
/// redeems the code, checks the tokens (`sub`, issuer, DPoP, scope) and
/// stores the session.
pub async fn finish(
    env: &Env,
    config: &AppConfig,
    query: &str,
    sign_in_cookie: Option<&str>,
) -> Result<SignedIn, SignInError> {
    let params = CallbackParams::from_query(query);
    let sealed = params
        .state
        .as_deref()
        .ok_or_else(|| SignInError::Invalid("The sign-in answer has no state.".into()))?;
    let cookie = sign_in_cookie.ok_or_else(|| {
        SignInError::Invalid(
            "This browser did not start a sign-in (or it took too long): start again.".into(),
        )
    })?;
    let state = AuthState::open(sealed, &config.secret_key, now(), cookie)
        .map_err(|e| SignInError::Invalid(format!("The sign-in answer is not valid: {e}.")))?;
    let code = params
        .code_for(&state)
        .map_err(|e| SignInError::Refused(format!("Sign-in failed: {e}.")))?;
    let key = state.dpop_key().map_err(internal)?;
    let client = OAuthClient::for_config(config).map_err(SignInError::Internal)?;
    let metadata = server::metadata(&state.issuer, client.is_confidential())
        .await
        .map_err(SignInError::Unavailable)?;
    let body = code_request_body(
        &client.auth_for(&state.issuer).map_err(internal)?,
        &code,
        &state.redirect_uri,
        &state.verifier,
    );
    let answer = http::post_form(&key, &metadata.token_endpoint, &body)
        .await
        .map_err(SignInError::Unavailable)?;
    if answer.status != 200 {
        return Err(SignInError::Refused(format!(
            "{} would not complete the sign-in ({}): {}",
            state.issuer,
            answer.status,
            server_words(&answer.json())
        )));
    }
    let response: TokenResponse = serde_json::from_slice(&answer.body).map_err(|e| {
        SignInError::Unavailable(format!("{} answered nonsense: {e}", state.issuer))
    })?;
    let tokens = response
        .check(
            &state.issuer,
            &TokenExpectations {
                did: &state.did,
                issuer: &state.issuer,
            },
            now(),
        )
        .map_err(|e| SignInError::Refused(format!("Sign-in refused: {e}.")))?;
    let did: Did = state.did.parse().map_err(internal)?;
    store::save_new(
        env,
        config,
        &state.pds,
        &Secrets {
            tokens,
            dpop_key: state.dpop_key.clone(),
        },
        http::nonce_for(&state.pds).as_deref(),
    )
    .await
    .map_err(internal)?;
    Ok(SignedIn {
        avatar_url: avatar_url(&state.pds, &did).await,
        handle: state.handle.clone().unwrap_or_else(|| did.to_string()),
        did,
        return_to: state.return_to.clone().unwrap_or_else(|| "/".into()),
    })
}

/// The avatar of the user's `app.bsky.actor.profile`, as a URL of the blob
/// at their PDS; none if they have no profile or it has no avatar.
async fn avatar_url(pds: &str, did: &Did) -> Option<String> {
    let url = format!(
        "{pds}/xrpc/com.atproto.repo.getRecord?repo={did}&collection=app.bsky.actor.profile&rkey=self"
    );
    let record = get_json(&url).await.ok()?;
    let cid = record["value"]["avatar"]["ref"]["$link"].as_str()?;
    Some(format!(
        "{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"
    ))
}

/// An OAuth error answer as words.
fn server_words(answer: &serde_json::Value) -> String {
    match (
        answer["error"].as_str(),
        answer["error_description"].as_str(),
    ) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e.to_string(),
        _ => "no reason given".into(),
    }
}
