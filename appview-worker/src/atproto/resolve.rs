//! Names to identities: handle → DID → DID document → PDS.
//!
//! Handles resolve through DNS (`_atproto.<handle>` TXT, asked over HTTPS)
//! and then the configured resolver (`com.atproto.identity.resolveHandle`,
//! which also covers handles published at `/.well-known/atproto-did`), and
//! are accepted only when the DID's document claims the handle back
//! (`alsoKnownAs`), so nobody can borrow a handle they do not hold.

use crate::config::AppConfig;
use atcr_protocol::identity::did_from_dns_answer;
use atcr_protocol::reference::Owner;
use atcr_protocol::{Did, DidDocument, Handle};
use serde::Deserialize;
use worker::{Fetch, Headers, Request, RequestInit};
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

/// DNS first (`_atproto.<handle>` TXT, over HTTPS), then the configured
/// XRPC resolver, as the ATProto handle spec orders them.
async fn resolve_handle_uncached(handle: &Handle, config: &AppConfig) -> Result<Did, ResolveError> {
    let mut dns_failure = None;
    if let Some(dns) = &config.dns_resolver_url {
        match resolve_handle_dns(handle, dns).await {
            Ok(Some(did)) => return Ok(did),
            Ok(None) => {}
            Err(e) => dns_failure = Some(e),
        }
    }
    match &config.handle_resolver_url {
        Some(resolver) => resolve_handle_xrpc(handle, resolver).await,
        None => Err(dns_failure
            .unwrap_or_else(|| ResolveError::Unknown(format!("no such handle {handle}")))),
    }
}

/// `Ok(None)`: DNS answered, without a DID for this handle.
async fn resolve_handle_dns(handle: &Handle, dns: &str) -> Result<Option<Did>, ResolveError> {
    let url = format!("{dns}?name={}&type=TXT", handle.dns_txt_name());
    let headers = Headers::new();
    headers
        .set("accept", "application/dns-json")
        .map_err(|e| ResolveError::Unavailable(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_headers(headers);
    let request = Request::new_with_init(&url, &init)
        .map_err(|e| ResolveError::Unavailable(format!("{url}: {e}")))?;
    let mut resp = worker_support::call(Fetch::Request(request))
        .await
        .map_err(|e| ResolveError::Unavailable(format!("DNS resolver unreachable: {e}")))?;
    if resp.status_code() != 200 {
        return Err(ResolveError::Unavailable(format!(
            "DNS resolver answered {}",
            resp.status_code()
        )));
    }
    let answer: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| ResolveError::Unavailable(format!("DNS resolver answered nonsense: {e}")))?;
    Ok(did_from_dns_answer(&answer))
}

async fn resolve_handle_xrpc(handle: &Handle, resolver: &str) -> Result<Did, ResolveError> {
    let url = format!("{resolver}/xrpc/com.atproto.identity.resolveHandle?handle={handle}");
    let parsed = url
        .parse()
        .map_err(|e| ResolveError::Unavailable(format!("{url}: {e}")))?;
    let mut resp = worker_support::call(Fetch::Url(parsed))
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
