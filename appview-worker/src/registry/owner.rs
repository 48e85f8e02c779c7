//! Whose repository a name is, and where its blobs live, as the registry
//! sees them: an unknown owner is `NAME_UNKNOWN`, a stranger's write `DENIED`.

use crate::atproto::resolve::{resolve_owner, Identity, ResolveError};
use crate::config::AppConfig;
use crate::holds::{hold_of, Hold};
use atcr_protocol::reference::RepoName;
use atcr_protocol::{Did, OciCode, Refusal};

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
