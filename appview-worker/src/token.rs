//! `GET /auth/token`: the Docker token service.
//!
//! "The token server should first attempt to authenticate the client using
//! any authentication credentials provided with the request" (Docker token
//! spec). Credentials are Basic `<handle or DID>:<app password>`; without
//! them the client gets an anonymous token that can only pull. Pushing to
//! `<owner>/<repo>` is granted to the owner's DID and nobody else.

use crate::config::AppConfig;
use crate::oci;
use crate::pds::{create_session, LoginError};
use crate::resolve::{resolve_owner, resolve_user, ResolveError};
use crate::sessions;
use atcr_protocol::reference::RepoName;
use atcr_protocol::registry_token::{sign, Access, RegistryClaims};
use atcr_protocol::{Did, OciCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use std::time::Duration;
use worker::{Env, Request, Response, Result};
use worker_support::now;

/// Registry tokens are short-lived; clients come back for new ones.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
}

pub async fn issue(req: &Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let url = req.url()?;
    let params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
        if service != &config.service {
            let msg = format!(
                "this token service issues tokens for '{}', not '{service}'",
                config.service
            );
            return oci::error(OciCode::Denied, Some(msg));
        }
    }
    let user = match basic_credentials(req) {
        None => None,
        Some(Err(msg)) => return oci::error(OciCode::Unauthorized, Some(msg)),
        Some(Ok((user, password))) => match login(env, config, &user, &password).await {
            Ok(did) => Some(did),
            Err((code, msg)) => return oci::error(code, Some(msg)),
        },
    };
    // Scopes may repeat, and one parameter may hold several separated by spaces.
    let scopes = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty());
    let mut access = Vec::new();
    for scope in scopes {
        if let Some(granted) = grant(scope, user.as_ref(), config).await {
            access.push(granted);
        }
    }
    let claims = RegistryClaims {
        iss: config.did.to_string(),
        sub: user.map(String::from).unwrap_or_default(),
        aud: config.service.clone(),
        access,
    };
    let token = sign(&config.signing_key, claims, now(), TOKEN_LIFETIME);
    let issued_at = worker_support::now_rfc3339();
    let body = TokenResponse {
        token: token.clone(),
        access_token: token,
        expires_in: TOKEN_LIFETIME.as_secs(),
        issued_at,
    };
    let mut resp = Response::from_json(&body)?;
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}

/// What of `scope` this user may have: pull for everyone (repositories are
/// public), push and delete only for the repository's owner.
async fn grant(scope: &str, user: Option<&Did>, config: &AppConfig) -> Option<Access> {
    let requested = Access::parse_scope(scope)?;
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

/// Signs the user in with their PDS (unless this exact credential already
/// holds a live session) and returns their DID.
async fn login(
    env: &Env,
    config: &AppConfig,
    user: &str,
    password: &str,
) -> std::result::Result<Did, (OciCode, String)> {
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
        return Ok(identity.did);
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
    Ok(identity.did)
}

/// `Authorization: Basic base64(user:password)`, if present.
fn basic_credentials(req: &Request) -> Option<std::result::Result<(String, String), String>> {
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
