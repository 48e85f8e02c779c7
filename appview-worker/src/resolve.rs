//! Names to identities: handle → DID → DID document → PDS.
//!
//! Handles resolve through the configured resolver
//! (`com.atproto.identity.resolveHandle`) and are accepted only when the
//! DID's document claims the handle back (`alsoKnownAs`), so nobody can
//! borrow a handle they do not hold.

use crate::config::AppConfig;
use crate::oci::Refusal;
use atcr_protocol::reference::{Owner, RepoName};
use atcr_protocol::OciCode;
use atcr_protocol::{Did, DidDocument, Handle};
use serde::Deserialize;
use worker::Fetch;
use worker_support::{resolve_did_cached, IsolateCache, SharedCache};

#[derive(Debug)]
pub enum ResolveError {
    /// The handle or DID does not exist (or the handle is not claimed back).
    Unknown(String),
    /// The resolver, PLC or PDS could not be reached.
    Unavailable(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Unknown(m) | ResolveError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// A resolved identity: its DID, document and PDS.
pub struct Identity {
    pub did: Did,
    pub doc: DidDocument,
    pub pds: String,
}

pub async fn resolve_owner(owner: &Owner, config: &AppConfig) -> Result<Identity, ResolveError> {
    match owner {
        Owner::Did(did) => identity_of(did, config).await,
        Owner::Handle(handle) => {
            let did = resolve_handle(handle, config).await?;
            let identity = identity_of(&did, config).await?;
            if identity.doc.handle().as_ref() != Some(handle) {
                return Err(ResolveError::Unknown(format!(
                    "{did} does not claim the handle {handle}"
                )));
            }
            Ok(identity)
        }
    }
}

/// The owner of a repository name; an unknown owner is `NAME_UNKNOWN`.
pub async fn resolve_repo_owner(name: &RepoName, config: &AppConfig) -> Result<Identity, Refusal> {
    resolve_owner(name.owner(), config)
        .await
        .map_err(|e| match e {
            ResolveError::Unknown(m) => (OciCode::NameUnknown, m),
            ResolveError::Unavailable(m) => (OciCode::Internal, m),
        })
}

/// Resolves a user typed as a handle or a DID.
pub async fn resolve_user(user: &str, config: &AppConfig) -> Result<Identity, ResolveError> {
    if let Ok(did) = user.parse::<Did>() {
        return resolve_owner(&Owner::Did(did), config).await;
    }
    let handle: Handle = user
        .parse()
        .map_err(|_| ResolveError::Unknown(format!("'{user}' is neither a handle nor a DID")))?;
    resolve_owner(&Owner::Handle(handle), config).await
}

async fn identity_of(did: &Did, config: &AppConfig) -> Result<Identity, ResolveError> {
    let doc = resolve_did_cached(did, &config.plc_url)
        .await
        .map_err(|e| {
            if e.contains("answered 404") || e.contains("answered 410") {
                ResolveError::Unknown(format!("no such identity {did}"))
            } else {
                ResolveError::Unavailable(e)
            }
        })?;
    let pds = doc
        .pds_endpoint()
        .ok_or_else(|| ResolveError::Unknown(format!("{did} names no PDS")))?
        .to_string();
    Ok(Identity {
        did: did.clone(),
        doc,
        pds,
    })
}

#[derive(Deserialize)]
struct ResolvedHandle {
    did: Did,
}

/// How long a handle's DID is reused within one isolate.
const HANDLE_CACHE_MS: u64 = 5 * 60 * 1000;

thread_local! {
    static HANDLES: IsolateCache<Did> = IsolateCache::new(4096);
}

/// Handle → DID, remembered in this isolate, then in the location's shared
/// cache. A stale entry is harmless: the DID document must still claim the
/// handle (see `resolve_owner`).
async fn resolve_handle(handle: &Handle, config: &AppConfig) -> Result<Did, ResolveError> {
    if let Some(did) = HANDLES.with(|c| c.get(handle.as_str())) {
        return Ok(did);
    }
    let shared = SharedCache::new("handle");
    let did = match shared.get::<Did>(handle.as_str()).await {
        Some(did) => did,
        None => {
            let did = resolve_handle_uncached(handle, config).await?;
            shared
                .put(handle.as_str(), &did, HANDLE_CACHE_MS / 1000)
                .await;
            did
        }
    };
    HANDLES.with(|c| c.put(handle.as_str(), did.clone(), HANDLE_CACHE_MS));
    Ok(did)
}

async fn resolve_handle_uncached(handle: &Handle, config: &AppConfig) -> Result<Did, ResolveError> {
    let url = format!(
        "{}/xrpc/com.atproto.identity.resolveHandle?handle={handle}",
        config.handle_resolver_url
    );
    let parsed = url
        .parse()
        .map_err(|e| ResolveError::Unavailable(format!("{url}: {e}")))?;
    let mut resp = Fetch::Url(parsed)
        .send()
        .await
        .map_err(|e| ResolveError::Unavailable(format!("handle resolver unreachable: {e}")))?;
    match resp.status_code() {
        200 => {
            let body: ResolvedHandle = resp.json().await.map_err(|e| {
                ResolveError::Unavailable(format!("handle resolver answered nonsense: {e}"))
            })?;
            Ok(body.did)
        }
        400 | 404 => Err(ResolveError::Unknown(format!("no such handle {handle}"))),
        status => Err(ResolveError::Unavailable(format!(
            "handle resolver answered {status}"
        ))),
    }
}
