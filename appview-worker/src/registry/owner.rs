//! Whose repository a name is, where its blobs live, and who writes its
//! records, as the registry sees them: an unknown owner is `NAME_UNKNOWN`,
//! a stranger's write `DENIED`.

use crate::atproto::resolve::{resolve_owner, Identity, ResolveError};
use crate::auth::writer::PdsWriter;
use crate::config::AppConfig;
use crate::holds::{hold_of, Hold};
use atcr_protocol::reference::RepoName;
use atcr_protocol::{Did, OciCode, Refusal};
use worker::Env;

/// The owner of a repository name.
pub async fn resolve_repo_owner(name: &RepoName, config: &AppConfig) -> Result<Identity, Refusal> {
    resolve_owner(name.owner(), config)
        .await
        .map_err(|e| match e {
            ResolveError::Unknown(m) => (OciCode::NameUnknown, m),
            ResolveError::Unavailable(m) => (OciCode::Internal, m),
        })
}

/// Refuses `action` on `name` (push, delete) to anyone but its owner.
pub fn require_owner(
    owner: &Identity,
    user: &Did,
    name: &RepoName,
    action: &str,
) -> Result<(), Refusal> {
    if &owner.did == user {
        return Ok(());
    }
    Err((
        OciCode::Denied,
        format!("only {} may {action} {name}", owner.did),
    ))
}

/// The identity behind a repository name and the hold its blobs live in.
pub async fn locate(name: &RepoName, config: &AppConfig) -> Result<(Identity, Hold), Refusal> {
    let owner = resolve_repo_owner(name, config).await?;
    let hold = Hold::resolve(&hold_of(&owner, config).await, config)
        .await
        .map_err(|e| (OciCode::Internal, e.to_string()))?;
    Ok((owner, hold))
}

/// The writer of `user`'s records; refused when the appview holds no
/// session for them (they must sign in again).
pub async fn writer_for<'a>(
    env: &'a Env,
    config: &'a AppConfig,
    user: &Did,
) -> Result<PdsWriter<'a>, Refusal> {
    PdsWriter::for_user(env, config, user)
        .await
        .map_err(|e| (OciCode::Internal, e.to_string()))?
        .ok_or((
            OciCode::Denied,
            format!(
                "the registry holds no session with the PDS of {user}: sign in at {}/login \
                 (or log in with an app password)",
                config.public_url
            ),
        ))
}
