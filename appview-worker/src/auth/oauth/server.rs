//! A user's authorization server: their PDS's protected-resource document
//! names exactly one, whose metadata must meet atproto OAuth before the
//! appview talks to it (`atcr_protocol::oauth::discovery`).

use super::http::get_json;
use atcr_protocol::oauth::discovery::{
    well_known, AuthorizationServerMetadata, ProtectedResourceMetadata, AUTHORIZATION_SERVER_PATH,
    PROTECTED_RESOURCE_PATH,
};
use worker_support::IsolateCache;

/// Servers change their metadata rarely; an isolate reuses it this long.
const METADATA_CACHE_MS: u64 = 5 * 60 * 1000;

thread_local! {
    static SERVERS: IsolateCache<AuthorizationServerMetadata> = IsolateCache::new(256);
}

/// The issuer `pds` names as its authorization server.
pub async fn issuer_of(pds: &str) -> Result<String, String> {
    let url = well_known(pds, PROTECTED_RESOURCE_PATH).map_err(|e| e.to_string())?;
    let doc: ProtectedResourceMetadata = serde_json::from_value(get_json(&url).await?)
        .map_err(|e| format!("{url} is not protected-resource metadata: {e}"))?;
    doc.authorization_server(pds).map_err(|e| e.to_string())
}

/// The vetted metadata of `issuer`.
pub async fn metadata(
    issuer: &str,
    confidential: bool,
) -> Result<AuthorizationServerMetadata, String> {
    if let Some(found) = SERVERS.with(|c| c.get(issuer)) {
        return Ok(found);
    }
    let url = well_known(issuer, AUTHORIZATION_SERVER_PATH).map_err(|e| e.to_string())?;
    let found: AuthorizationServerMetadata = serde_json::from_value(get_json(&url).await?)
        .map_err(|e| format!("{url} is not authorization server metadata: {e}"))?;
    found
        .validate(issuer, confidential)
        .map_err(|e| format!("{issuer}: {e}"))?;
    SERVERS.with(|c| c.put(issuer, found.clone(), METADATA_CACHE_MS));
    Ok(found)
}
