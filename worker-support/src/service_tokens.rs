//! Service tokens verified against their issuer's DID document: the part of
//! checking one that needs the network. The hold uses it for tokens from
//! appviews and users' PDSes, the appview for the token exchange; what a
//! token must say (audience, method, lifetime) is the caller's check, pure
//! code in `atcr-protocol`.

use crate::resolve_did_cached;
use atcr_protocol::service_auth::{peek_claims, AuthError, PublicKey};
use atcr_protocol::Did;

/// Why a service token was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenRefusal {
    /// The token, as read or as checked against the key.
    Token(AuthError),
    /// The issuer's DID document could not be had (unknown DID, PLC down).
    Unresolved(Did, String),
    /// The document publishes no usable `#atproto` key.
    NoKey(Did, String),
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRefusal::Token(e) => write!(f, "{e}"),
            TokenRefusal::Unresolved(did, e) => write!(f, "cannot resolve token issuer {did}: {e}"),
            TokenRefusal::NoKey(did, e) => write!(f, "{did}: {e}"),
        }
    }
}

/// Reads the issuer (`iss`) from `token`, fetches its DID document (cached)
/// and hands `check` the issuer and its `#atproto` key.
pub async fn verify_with_issuer_key<T>(
    token: &str,
    plc_url: &str,
    check: impl FnOnce(&Did, &PublicKey) -> Result<T, AuthError>,
) -> Result<T, TokenRefusal> {
    let issuer = peek_claims(token).map_err(TokenRefusal::Token)?.iss;
    let doc = resolve_did_cached(&issuer, plc_url)
        .await
        .map_err(|e| TokenRefusal::Unresolved(issuer.clone(), e))?;
    let key =
        PublicKey::from_did_document(&doc).map_err(|e| TokenRefusal::NoKey(issuer.clone(), e))?;
    check(&issuer, &key).map_err(TokenRefusal::Token)
}
