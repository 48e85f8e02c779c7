//! Who may do what on `/v2/`: the registry token a request presents,
//! verified, and the challenge that tells a client where to get a better one
//! (Docker token auth, RFC 6750 errors).

use super::owner::resolve_repo_owner;
use crate::config::AppConfig;
use crate::oci_error::error;
use atcr_protocol::challenge::BearerChallenge;
use atcr_protocol::reference::RepoName;
use atcr_protocol::registry_token::{verify, RegistryClaims, CATALOG_SCOPE};
use atcr_protocol::route::Route;
use atcr_protocol::{Did, OciCode};
use worker::{Method, Request, Response, Result};
use worker_support::{now, IsolateCache};

/// The checked token of a request, or the response that refuses it.
pub async fn authorize(
    req: &Request,
    config: &AppConfig,
    route: &Route,
) -> std::result::Result<RegistryClaims, Result<Response>> {
    let needed = needed_action(req.method(), route);
    let claims = match authenticate(req, config) {
        Ok(claims) => claims,
        Err(why) => return Err(challenge(config, route, needed, why)),
    };
    if route == &Route::Catalog && !claims.allows("registry", "catalog", "*") {
        return Err(challenge(config, route, needed, Some("insufficient_scope")));
    }
    if let (Some(name), Some(action)) = (route.name(), needed) {
        if !claims.allows("repository", name.as_str(), action) {
            return Err(insufficient(config, route, &claims, name, action).await);
        }
    }
    Ok(claims)
}

/// A token without the scope needed. An anonymous one should authenticate
/// (401); a user's lacks the privilege (403 `DENIED`, RFC 6750
/// `insufficient_scope`), which clients such as oras take as the cue to
/// fetch a token for the scope the challenge names. The message says
/// whether that would help: the owner gets any scope on their repository,
/// everyone else only pulls.
async fn insufficient(
    config: &AppConfig,
    route: &Route,
    claims: &RegistryClaims,
    name: &RepoName,
    action: &'static str,
) -> Result<Response> {
    let resp = challenge(config, route, Some(action), Some("insufficient_scope"))?;
    if claims.sub.is_empty() {
        return Ok(resp);
    }
    // The owner's DID, when the name resolves; a name that does not
    // resolve is refused later, where its error is reported.
    let owner = resolve_repo_owner(name, config).await.ok().map(|o| o.did);
    let message = if action == "pull" || owner.is_none_or(|did| did.as_str() == claims.sub) {
        format!("this token does not grant {action} on {name}: ask the token service for the scope in the challenge")
    } else {
        format!("{} may not {action} {name}: only its owner may", claims.sub)
    };
    let mut denied = error(OciCode::Denied, Some(message))?;
    let header = resp.headers().get("WWW-Authenticate")?.unwrap_or_default();
    denied.headers_mut().set("WWW-Authenticate", &header)?;
    Ok(denied)
}

/// The user a token names; writes need one (anonymous tokens only pull).
pub fn signed_in(
    claims: &RegistryClaims,
    action: &str,
) -> std::result::Result<Did, Result<Response>> {
    claims.sub.parse::<Did>().map_err(|_| {
        error(
            OciCode::Denied,
            Some(format!("anonymous clients cannot {action}")),
        )
    })
}

/// The action a request needs on its repository.
fn needed_action(method: Method, route: &Route) -> Option<&'static str> {
    route.name()?;
    // Where an upload stands is the uploader's to ask with any token of
    // theirs (the upload is sealed to its user and repository); everything
    // else about uploads is pushing.
    match (route, &method) {
        (Route::Upload { .. }, Method::Get | Method::Head) => return Some("pull"),
        (Route::UploadStart { .. } | Route::Upload { .. }, _) => return Some("push"),
        _ => {}
    }
    Some(match method {
        Method::Get | Method::Head => "pull",
        Method::Delete => "delete",
        _ => "push",
    })
}

/// The registry token in `Authorization: Bearer`, verified. `Err(None)`: no
/// token; `Err(Some(_))`: a token that does not verify.
fn authenticate(
    req: &Request,
    config: &AppConfig,
) -> std::result::Result<RegistryClaims, Option<&'static str>> {
    let header = req
        .headers()
        .get("Authorization")
        .ok()
        .flatten()
        .ok_or(None)?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or(Some("invalid_token"))?
        .trim();
    // A client sends the same token with every request of a pull or push;
    // ECDSA verification dominates a cached manifest GET, so remember
    // verified tokens briefly (never past their expiry).
    if let Some(claims) = VERIFIED.with(|c| c.get(token)) {
        return Ok(claims);
    }
    let claims = verify(
        token,
        config.signing_key.verifying_key(),
        &config.service,
        now(),
    )
    .map_err(|_| Some("invalid_token"))?;
    let left_ms = claims_expiry_ms(token).saturating_sub(worker::Date::now().as_millis());
    VERIFIED.with(|c| c.put(token, claims.clone(), left_ms.min(VERIFIED_TOKEN_MS)));
    Ok(claims)
}

/// A verified token is reused for at most a minute, and never past its `exp`.
const VERIFIED_TOKEN_MS: u64 = 60_000;

thread_local! {
    static VERIFIED: IsolateCache<RegistryClaims> = IsolateCache::new(4096);
}

/// The `exp` of an already verified token, in unix milliseconds.
fn claims_expiry_ms(token: &str) -> u64 {
    atcr_protocol::registry_token::expiry(token)
        .map(|secs| secs * 1000)
        .unwrap_or(0)
}

/// 401 with the challenge that tells the client where to get a token for
/// what it tried to do.
fn challenge(
    config: &AppConfig,
    route: &Route,
    action: Option<&str>,
    error_kind: Option<&str>,
) -> Result<Response> {
    let mut challenge = BearerChallenge::new(config.token_realm(), &config.service);
    if route == &Route::Catalog {
        challenge = challenge.with_scope(CATALOG_SCOPE.to_string());
    }
    if let (Some(name), Some(action)) = (route.name(), action) {
        let actions = if action == "pull" {
            "pull".to_string()
        } else {
            format!("pull,{action}")
        };
        challenge = challenge.with_scope(format!("repository:{name}:{actions}"));
    }
    if let Some(kind) = error_kind {
        challenge = challenge.with_error(kind);
    }
    let message = match error_kind {
        Some("insufficient_scope") => "the token does not grant this action on this repository",
        Some(_) => "the token is invalid or has expired",
        None => "authentication required",
    };
    let mut resp = error(OciCode::Unauthorized, Some(message.to_string()))?;
    resp.headers_mut()
        .set("WWW-Authenticate", &challenge.to_header())?;
    Ok(resp)
}
