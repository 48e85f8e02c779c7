//! Registry tokens (Docker token auth): what `/auth/token` issues and every
//! `/v2/` request presents.
//!
//! A token is an ES256 JWT naming the user (`sub`, a DID), the registry it is
//! for (`aud`, the `service`), and per repository the actions granted
//! (`access`). Scopes arrive as `repository:<name>:<actions>`.

use crate::service_auth::{sign_jwt, to_chrono};
use jwt_compact::alg::Es256;
use jwt_compact::{AlgorithmExt, UntrustedToken};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The scope that lists the catalog (as CNCF distribution names it).
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// Parses `repository:alice.test/app:pull,push`. Names may contain `:`
    /// (a DID typed as is), so the type ends at the first colon and the
    /// actions start after the last.
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        Some(Access {
            kind: kind.into(),
            name: name.into(),
            actions,
        })
    }

    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryClaims {
    pub iss: String,
    /// The user's DID; empty for anonymous pulls.
    pub sub: String,
    pub aud: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

impl RegistryClaims {
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| a.allows(kind, name, action))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token is not signed by this registry")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is for another registry")]
    Audience,
}

pub fn sign(
    key: &p256::ecdsa::SigningKey,
    claims: RegistryClaims,
    now: SystemTime,
    lifetime: Duration,
) -> String {
    sign_jwt(key, claims, now, lifetime)
}

/// Verifies signature (ES256 only: `alg: none` and others are refused),
/// expiry and audience.
pub fn verify(
    token: &str,
    key: &p256::ecdsa::VerifyingKey,
    audience: &str,
    now: SystemTime,
) -> Result<RegistryClaims, TokenError> {
    let untrusted = UntrustedToken::new(token).map_err(|_| TokenError::Malformed)?;
    if untrusted.algorithm() != "ES256" {
        return Err(TokenError::Signature);
    }
    let token = Es256
        .validator::<RegistryClaims>(key)
        .validate(&untrusted)
        .map_err(|_| TokenError::Signature)?;
    let claims = token.claims();
    match claims.expiration {
        Some(exp) if exp >= to_chrono(now) => {}
        _ => return Err(TokenError::Expired),
    }
    if claims.custom.aud != audience {
        return Err(TokenError::Audience);
    }
    Ok(claims.custom.clone())
}

/// The `exp` (unix seconds) of a token, read without verifying it: only for
/// tokens that already passed `verify`.
pub fn expiry(token: &str) -> Option<u64> {
    let untrusted = UntrustedToken::new(token).ok()?;
    let claims = untrusted
        .deserialize_claims_unchecked::<RegistryClaims>()
        .ok()?;
    claims.expiration.map(|e| e.timestamp().max(0) as u64)
}

/// A refresh token (`offline_token=true`, OAuth2 `refresh_token` grant): a
/// long-lived, sealed grant a client trades for access tokens without
/// sending the password again. It stays good only while the PDS session it
/// came from does (`credential` names that session), so signing in again
/// with another app password, or revoking the session, retires it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshGrant {
    pub sub: crate::identity::Did,
    /// The HMAC of the credential that created the user's PDS session.
    pub credential: String,
    /// Unix seconds.
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is malformed or was altered")]
    Invalid,
    #[error("the refresh token has expired; sign in again")]
    Expired,
}

impl RefreshGrant {
    /// Clients keep refresh tokens for weeks (Docker stores them as its
    /// `identitytoken`); the PDS session check limits them further.
    pub const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

    pub fn seal(&self, secret: &[u8]) -> String {
        crate::sealed::seal(self, &Self::key(secret))
    }

    pub fn open(token: &str, secret: &[u8], now: SystemTime) -> Result<Self, RefreshError> {
        let grant: RefreshGrant =
            crate::sealed::open(token, &Self::key(secret)).map_err(|_| RefreshError::Invalid)?;
        if grant.exp < unix_secs(now) {
            return Err(RefreshError::Expired);
        }
        Ok(grant)
    }

    /// A key of its own, so no other sealed value can pass for a grant.
    fn key(secret: &[u8]) -> Vec<u8> {
        [b"atcr-refresh-grant:".as_slice(), secret].concat()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims() -> RegistryClaims {
        RegistryClaims {
            iss: "did:web:atcr.example.com".into(),
            sub: "did:plc:alice".into(),
            aud: "atcr.example.com".into(),
            access: vec![Access::parse_scope("repository:alice.test/app:pull,push").unwrap()],
        }
    }

    #[test]
    fn scopes_parse_including_names_with_colons() {
        let a = Access::parse_scope("repository:alice.test/app:pull,push").unwrap();
        assert_eq!(
            (a.kind.as_str(), a.name.as_str()),
            ("repository", "alice.test/app")
        );
        assert_eq!(a.actions, vec!["pull", "push"]);
        let d = Access::parse_scope("repository:did:plc:abc/app:pull").unwrap();
        assert_eq!(d.name, "did:plc:abc/app");
        assert!(a.allows("repository", "alice.test/app", "push"));
        assert!(!a.allows("repository", "alice.test/other", "pull"));
        assert!(Access::parse_scope("nonsense").is_none());
    }

    #[test]
    fn tokens_verify_and_expire() {
        let k = key(1);
        let token = sign(&k, claims(), at(1000), Duration::from_secs(300));
        let got = verify(&token, k.verifying_key(), "atcr.example.com", at(1100)).unwrap();
        assert_eq!(expiry(&token), Some(1300));
        assert!(got.allows("repository", "alice.test/app", "push"));
        assert_eq!(
            verify(&token, k.verifying_key(), "atcr.example.com", at(1301)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&token, k.verifying_key(), "other.example", at(1100)),
            Err(TokenError::Audience)
        );
        assert_eq!(
            verify(&token, key(2).verifying_key(), "atcr.example.com", at(1100)),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn refresh_grants_seal_open_and_expire() {
        let secret = [7u8; 32];
        let grant = RefreshGrant {
            sub: "did:plc:alice".parse().unwrap(),
            credential: "mac".into(),
            exp: 2000,
        };
        let token = grant.seal(&secret);
        assert_eq!(
            RefreshGrant::open(&token, &secret, at(1999)),
            Ok(grant.clone())
        );
        assert_eq!(
            RefreshGrant::open(&token, &secret, at(2001)),
            Err(RefreshError::Expired)
        );
        assert_eq!(
            RefreshGrant::open(&token, &[8u8; 32], at(1000)),
            Err(RefreshError::Invalid)
        );
        // A value sealed for another purpose under the same secret is no grant.
        let other = crate::sealed::seal(&grant, &secret);
        assert_eq!(
            RefreshGrant::open(&other, &secret, at(1000)),
            Err(RefreshError::Invalid)
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let k = key(1);
        let token = sign(&k, claims(), at(1000), Duration::from_secs(300));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(
            verify(&none, k.verifying_key(), "atcr.example.com", at(1100)),
            Err(TokenError::Signature)
        );
        let hs = format!(
            "{}.{}.{}",
            b64.encode(r#"{"alg":"HS256"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify(&hs, k.verifying_key(), "atcr.example.com", at(1100)),
            Err(TokenError::Signature)
        );
        assert_eq!(
            verify("x.y", k.verifying_key(), "atcr.example.com", at(1100)),
            Err(TokenError::Malformed)
        );
    }
}
