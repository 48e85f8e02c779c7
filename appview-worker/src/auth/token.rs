//! `GET /auth/token`: the Docker token service.
//!
//! "The token server should first attempt to authenticate the client using
//! any authentication credentials provided with the request" (Docker token
//! spec). Credentials are Basic `<handle or DID>:<app password>`, or
//! `<handle or DID>:<device secret>` from the credential helper's device
//! login (told apart by the `atcr_dev_` prefix; the user named must be the
//! one the device was approved for); without them the client gets an
//! anonymous token that can only pull. Pushing to `<owner>/<repo>` is
//! granted to the owner's DID and nobody else.
//!
//! `POST /auth/token` speaks the OAuth2 form Docker uses for long-lived
//! logins: the `password` grant (with `access_type=offline`, it also returns
//! a refresh token) and the `refresh_token` grant.

use crate::atproto::pds::{create_session, LoginError};
use crate::atproto::resolve::{resolve_owner, resolve_user, ResolveError};
use crate::auth::devices;
use crate::auth::limiter;
use crate::auth::sessions;
use crate::config::{AppConfig, SIGN_IN_LIMIT_PERIOD_SECS};
use crate::oci_error::error;
use atcr_protocol::reference::{Owner, RepoName};
use atcr_protocol::registry_token::{sign, Access, RefreshGrant, RegistryClaims, CATALOG_SCOPE};
use atcr_protocol::{device, Did, OciCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use std::time::Duration;
use worker::{Context, Env, Method, Request, Response, Result};
use worker_support::now;

/// Registry tokens are short-lived; clients come back for new ones.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
}

/// How a client proves who it is.
enum Credential {
    Anonymous,
    /// Basic auth on GET, or the OAuth2 `password` grant on POST.
    Password {
        user: String,
        password: String,
    },
    /// The OAuth2 `refresh_token` grant.
    Refresh(String),
}

/// A token request, from a GET query (Docker token spec) or a POST form
/// (Docker's OAuth2 flavour, used by `docker login` for refresh tokens).
struct TokenRequest {
    service: Option<String>,
    scopes: Vec<String>,
    credential: Credential,
    /// `offline_token=true` / `access_type=offline`: also issue a refresh token.
    offline: bool,
}

pub async fn issue(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
) -> Result<Response> {
    let parsed = match req.method() {
        Method::Post => from_form(&mut req).await,
        _ => from_query(&req),
    };
    let request = match parsed {
        Ok(request) => request,
        Err(msg) => return error(OciCode::Unauthorized, Some(msg)),
    };
    if let Err(msg) = check_service(config, request.service.as_deref()) {
        return error(OciCode::Denied, Some(msg));
    }
    let signed_in = match request.credential {
        Credential::Anonymous => None,
        Credential::Password { user, password } if device::is_device_secret(&password) => {
            match device_login(env, config, &user, &password).await {
                Ok(session) => Some(session),
                Err((code, msg)) => return error(code, Some(msg)),
            }
        }
        Credential::Password { user, password } => {
            let source = limiter::source_address(&req);
            match login(env, config, &user, &password, &source).await {
                Ok(session) => Some(session),
                Err((OciCode::TooManyRequests, msg)) => return too_many(msg),
                Err((code, msg)) => return error(code, Some(msg)),
            }
        }
        Credential::Refresh(token) => match refresh(env, config, &token).await {
            Ok(session) => Some(session),
            Err((code, msg)) => return error(code, Some(msg)),
        },
    };
    let user = signed_in.as_ref().map(|(did, _)| did);
    // A user signing in: if the index has never read their records, they
    // are queued, after this answer.
    if let Some(did) = user {
        let owner = Owner::Did(did.clone());
        if !crate::backfill::seen(&owner) {
            ctx.wait_until(crate::backfill::first_sight(env.clone(), owner));
        }
    }
    let refresh_token = match (&signed_in, request.offline) {
        (Some((did, credential)), true) => Some(
            RefreshGrant {
                sub: did.clone(),
                credential: credential.clone(),
                exp: unix_now() + RefreshGrant::LIFETIME.as_secs(),
            }
            .seal(&config.secret_key),
        ),
        _ => None,
    };
    respond(config, user, &request.scopes, refresh_token).await
}

/// Refuses a token request for another registry's `service`.
pub(crate) fn check_service(
    config: &AppConfig,
    service: Option<&str>,
) -> std::result::Result<(), String> {
    match service {
        Some(service) if service != config.service => Err(format!(
            "this token service issues tokens for '{}', not '{service}'",
            config.service
        )),
        _ => Ok(()),
    }
}

/// The token response: a registry token for `user` (anonymous when `None`)
/// with what of `scopes` they may have. Also used by the token exchange.
pub(crate) async fn respond(
    config: &AppConfig,
    user: Option<&Did>,
    scopes: &[String],
    refresh_token: Option<String>,
) -> Result<Response> {
    let mut access = Vec::new();
    for scope in scopes {
        if let Some(granted) = grant(scope, user, config).await {
            access.push(granted);
        }
    }
    let scope = access
        .iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ");
    let claims = RegistryClaims {
        iss: config.did.to_string(),
        sub: user.map(|d| d.to_string()).unwrap_or_default(),
        aud: config.service.clone(),
        access,
    };
    let token = sign(&config.signing_key, claims, now(), TOKEN_LIFETIME);
    let body = TokenResponse {
        token: token.clone(),
        access_token: token,
        expires_in: TOKEN_LIFETIME.as_secs(),
        issued_at: worker_support::now_rfc3339(),
        refresh_token,
        scope,
    };
    let mut resp = Response::from_json(&body)?;
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}

fn from_query(req: &Request) -> std::result::Result<TokenRequest, String> {
    let url = req.url().map_err(|e| e.to_string())?;
    let params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let credential = match basic_credentials(req) {
        None => Credential::Anonymous,
        Some(Err(msg)) => return Err(msg),
        Some(Ok((user, password))) => Credential::Password { user, password },
    };
    Ok(TokenRequest {
        service: param(&params, "service"),
        scopes: scopes(&params),
        credential,
        offline: param(&params, "offline_token").as_deref() == Some("true"),
    })
}

async fn from_form(req: &mut Request) -> std::result::Result<TokenRequest, String> {
    let body = req.text().await.map_err(|e| e.to_string())?;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let credential = match param(&params, "grant_type").as_deref() {
        Some("password") => Credential::Password {
            user: param(&params, "username").ok_or("the password grant needs a username")?,
            password: param(&params, "password").ok_or("the password grant needs a password")?,
        },
        Some("refresh_token") => Credential::Refresh(
            param(&params, "refresh_token")
                .ok_or("the refresh_token grant needs a refresh_token")?,
        ),
        other => {
            return Err(format!(
                "unsupported grant_type {other:?}: use password or refresh_token"
            ))
        }
    };
    Ok(TokenRequest {
        service: param(&params, "service"),
        scopes: scopes(&params),
        credential,
        offline: param(&params, "access_type").as_deref() == Some("offline"),
    })
}

pub(crate) fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Scopes may repeat, and one parameter may hold several separated by spaces.
pub(crate) fn scopes(params: &[(String, String)]) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Trades a refresh token for the user it names, if the PDS session it
/// came from still stands.
async fn refresh(
    env: &Env,
    config: &AppConfig,
    token: &str,
) -> std::result::Result<(Did, String), (OciCode, String)> {
    let grant = RefreshGrant::open(token, &config.secret_key, now())
        .map_err(|e| (OciCode::Unauthorized, e.to_string()))?;
    let live = match grant.credential.strip_prefix(DEVICE_CREDENTIAL) {
        // Made from a device secret: good while the device is not revoked.
        Some(id) => devices::exists(env, grant.sub.as_str(), id).await,
        None => sessions::has_session_for(env, &grant.sub, &grant.credential).await,
    }
    .map_err(|e| (OciCode::Internal, format!("session storage failed: {e}")))?;
    if !live {
        return Err((
            OciCode::Unauthorized,
            "the sign-in this refresh token came from has ended; sign in again".into(),
        ));
    }
    Ok((grant.sub, grant.credential))
}

fn unix_now() -> u64 {
    worker::Date::now().as_millis() / 1000
}

/// What of `scope` this user may have: pull and the catalog for everyone
/// (repositories are public), push and delete only for the repository's owner.
async fn grant(scope: &str, user: Option<&Did>, config: &AppConfig) -> Option<Access> {
    let requested = Access::parse_scope(scope)?;
    if scope == CATALOG_SCOPE {
        // Every repository is public, so anyone may list them.
        return Some(requested);
    }
    if requested.kind != "repository" {
        return None;
    }
    let name: RepoName = requested.name.parse().ok()?;
    let mut actions: Vec<String> = Vec::new();
    let wants_write = requested
        .actions
        .iter()
        .any(|a| a == "push" || a == "delete" || a == "*");
    let is_owner = match (user, wants_write) {
        (Some(did), true) => {
            matches!(resolve_owner(name.owner(), config).await, Ok(owner) if &owner.did == did)
        }
        _ => false,
    };
    for action in &requested.actions {
        let allowed = match action.as_str() {
            "pull" => true,
            "push" | "delete" => is_owner,
            _ => false,
        };
        if allowed && !actions.contains(action) {
            actions.push(action.clone());
        }
    }
    if requested.actions.iter().any(|a| a == "*") && is_owner {
        actions = vec!["pull".into(), "push".into(), "delete".into()];
    }
    Some(Access {
        kind: requested.kind,
        name: requested.name,
        actions,
    })
}

/// What a refresh token made from a device secret names as its
/// credential: `device:<device id>`.
const DEVICE_CREDENTIAL: &str = "device:";

/// Signs a device in by its secret. The secret alone names the account; the
/// user named with it must be that account (its DID, or a handle resolving
/// to it), so a secret typed under another name is refused, not silently
/// used as someone else. Every use is recorded as the device's last use.
async fn device_login(
    env: &Env,
    config: &AppConfig,
    user: &str,
    secret: &str,
) -> std::result::Result<(Did, String), (OciCode, String)> {
    let (id, did) = devices::use_secret(env, secret)
        .await
        .map_err(|e| (OciCode::Internal, format!("device storage failed: {e}")))?
        .ok_or_else(|| {
            (
                OciCode::Unauthorized,
                format!(
                    "this device secret is unknown or was revoked: run `docker-credential-atcr login {}` again",
                    config.service
                ),
            )
        })?;
    let did: Did = did
        .parse()
        .map_err(|e| (OciCode::Internal, format!("stored device DID: {e}")))?;
    if user != did.as_str() {
        let named = resolve_user(user, config).await.map_err(|e| match e {
            ResolveError::Unknown(m) => (OciCode::Unauthorized, format!("cannot sign in: {m}")),
            ResolveError::Unavailable(m) => {
                (OciCode::Internal, format!("cannot sign in right now: {m}"))
            }
        })?;
        if named.did != did {
            return Err((
                OciCode::Unauthorized,
                format!("this device secret belongs to {did}, not {user}"),
            ));
        }
    }
    Ok((did, format!("{DEVICE_CREDENTIAL}{id}")))
}

/// Signs the user in with their PDS (unless this exact credential already
/// holds a live session) and returns their DID and the credential's HMAC.
async fn login(
    env: &Env,
    config: &AppConfig,
    user: &str,
    password: &str,
    source: &str,
) -> std::result::Result<(Did, String), (OciCode, String)> {
    let identity = resolve_user(user, config).await.map_err(|e| match e {
        ResolveError::Unknown(m) => (OciCode::Unauthorized, format!("cannot sign in: {m}")),
        ResolveError::Unavailable(m) => {
            (OciCode::Internal, format!("cannot sign in right now: {m}"))
        }
    })?;
    let internal = |e: worker::Error| (OciCode::Internal, format!("session storage failed: {e}"));
    let mac = sessions::credential_mac(config, &identity.did, password);
    if sessions::has_session_for(env, &identity.did, &mac)
        .await
        .map_err(internal)?
    {
        return Ok((identity.did, mac));
    }
    // Only a credential not seen before reaches the PDS, and only so often
    // per source and account: guessing app passwords is slow.
    if !limiter::allowed(env, format!("{source} {}", identity.did)).await {
        return Err((
            OciCode::TooManyRequests,
            format!("too many sign-ins for {user} from {source}: wait a minute"),
        ));
    }
    let tokens = create_session(&identity.pds, &identity.did, password)
        .await
        .map_err(|e| match e {
            LoginError::Refused(m) => {
                (OciCode::Unauthorized, format!("cannot sign in {user}: {m}"))
            }
            LoginError::Unavailable(m) => {
                (OciCode::Internal, format!("cannot sign in right now: {m}"))
            }
        })?;
    sessions::store(env, config, &identity.did, &identity.pds, &tokens, &mac)
        .await
        .map_err(internal)?;
    Ok((identity.did, mac))
}

/// 429 `TOOMANYREQUESTS` with `Retry-After`.
fn too_many(message: String) -> Result<Response> {
    let mut resp = error(OciCode::TooManyRequests, Some(message))?;
    resp.headers_mut()
        .set("Retry-After", &SIGN_IN_LIMIT_PERIOD_SECS.to_string())?;
    Ok(resp)
}

/// `Authorization: Basic base64(user:password)`, if present.
pub fn basic_credentials(req: &Request) -> Option<std::result::Result<(String, String), String>> {
    let header = req.headers().get("Authorization").ok().flatten()?;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = match B64
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(d) => d,
        None => return Some(Err("malformed Basic credentials".into())),
    };
    Some(match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_string(), password.to_string()))
        }
        _ => Err("Basic credentials must be <handle>:<app password>".into()),
    })
}
