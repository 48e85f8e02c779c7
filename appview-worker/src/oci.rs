//! The OCI Distribution API under `/v2/`: authentication first, then routing.

use crate::config::AppConfig;
use atcr_protocol::challenge::BearerChallenge;
use atcr_protocol::registry_token::{verify, RegistryClaims};
use atcr_protocol::route::{Route, RouteError};
use atcr_protocol::{Did, ErrorEnvelope, OciCode};
use worker::{Context, Env, Method, Request, Response, Result};
use worker_support::{now, IsolateCache};

/// The scope that lists the catalog (as CNCF distribution names it).
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// Every registry response names the API version it speaks.
const API_VERSION_HEADER: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

pub async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
) -> Result<Response> {
    let route = match Route::parse(&req.path()) {
        Ok(route) => route,
        Err(RouteError::NotFound) => {
            return error(
                OciCode::NameUnknown,
                Some(format!("no registry endpoint at {}", req.path())),
            )
        }
        Err(RouteError::NameInvalid(m)) => return error(OciCode::NameInvalid, Some(m)),
        Err(RouteError::DigestInvalid(m)) => return error(OciCode::DigestInvalid, Some(m)),
        Err(RouteError::ReferenceInvalid(m)) => return error(OciCode::ManifestInvalid, Some(m)),
    };
    let needed = needed_action(req.method(), &route);
    let claims = match authenticate(&req, config) {
        Ok(claims) => claims,
        Err(why) => return challenge(config, &route, needed, why),
    };
    if route == Route::Catalog && !claims.allows("registry", "catalog", "*") {
        return challenge(config, &route, needed, Some("insufficient_scope"));
    }
    if let (Some(name), Some(action)) = (route.name(), needed) {
        if !claims.allows("repository", name.as_str(), action) {
            // An anonymous token should authenticate (401); a user's token
            // lacks the privilege (403, RFC 6750 `insufficient_scope`). Both
            // carry the challenge naming the scope needed.
            let mut resp = challenge(config, &route, needed, Some("insufficient_scope"))?;
            if !claims.sub.is_empty() {
                let message = format!("{} may not {action} {name}", claims.sub);
                let mut denied = error(OciCode::Denied, Some(message))?;
                let header = resp.headers().get("WWW-Authenticate")?.unwrap_or_default();
                denied.headers_mut().set("WWW-Authenticate", &header)?;
                resp = denied;
            }
            return Ok(resp);
        }
    }
    match route {
        // "If the response is 200 OK, then the registry implements this specification."
        Route::Base => {
            let mut resp = Response::ok("{}")?;
            resp.headers_mut().set("Content-Type", "application/json")?;
            resp.headers_mut()
                .set(API_VERSION_HEADER.0, API_VERSION_HEADER.1)?;
            Ok(resp)
        }
        Route::Blob { name, digest } if matches!(req.method(), Method::Get | Method::Head) => {
            let user = claims.sub.parse::<Did>().ok();
            crate::blobs::get_blob(config, user.as_ref(), req.method(), &name, &digest).await
        }
        Route::Blob { name, digest } if req.method() == Method::Delete => {
            match signed_in(&claims, "delete") {
                Ok(user) => crate::blobs::delete_blob(config, &user, &name, &digest).await,
                Err(refused) => refused,
            }
        }
        Route::Manifest { name, reference } => match req.method() {
            Method::Get | Method::Head => {
                crate::manifests::get_manifest(env, ctx, config, req.method(), &name, reference)
                    .await
            }
            Method::Put => match signed_in(&claims, "push") {
                Ok(user) => {
                    crate::manifests::put_manifest(&mut req, env, config, &user, &name, reference)
                        .await
                }
                Err(refused) => refused,
            },
            Method::Delete => match signed_in(&claims, "delete") {
                Ok(user) => {
                    crate::manifests::delete_manifest(env, config, &user, &name, reference).await
                }
                Err(refused) => refused,
            },
            _ => error(
                OciCode::Unsupported,
                Some(format!("{} on manifests is not supported", req.method())),
            ),
        },
        Route::Referrers { name, digest } => {
            crate::manifests::referrers(&req, config, &name, &digest).await
        }
        Route::Tags { name } => crate::manifests::list_tags(&req, config, &name).await,
        Route::Catalog if req.method() == Method::Get => crate::catalog::list(&req, env).await,
        // Push was granted, so the token names its user.
        Route::UploadStart { name } => match signed_in(&claims, "push") {
            Ok(user) => crate::uploads::handle(&mut req, config, &user, &name, None).await,
            Err(refused) => refused,
        },
        Route::Upload { name, id } => match signed_in(&claims, "push") {
            Ok(user) => crate::uploads::handle(&mut req, config, &user, &name, Some(&id)).await,
            Err(refused) => refused,
        },
        _ => error(
            OciCode::Unsupported,
            Some(format!(
                "{} {} is not served by this registry",
                req.method(),
                req.path()
            )),
        ),
    }
}

/// The user a token names; writes need one (anonymous tokens only pull).
fn signed_in(claims: &RegistryClaims, action: &str) -> std::result::Result<Did, Result<Response>> {
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
    if matches!(route, Route::UploadStart { .. } | Route::Upload { .. }) {
        return Some("push");
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

/// Why a request is refused: the OCI code and words for a person.
pub type Refusal = (OciCode, String);

/// A runtime failure, as a refusal (500, logged when answered).
pub fn internal(e: worker::Error) -> Refusal {
    (OciCode::Internal, e.to_string())
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
