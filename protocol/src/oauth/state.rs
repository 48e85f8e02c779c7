//! The OAuth `state` parameter as a sealed value: everything the callback
//! needs (PKCE verifier, DPoP key, expected issuer, the identity that was
//! resolved) travels encrypted and authenticated with the appview's key
//! (AES-256-GCM, [`crate::secret_box`]), so no row is written before the user
//! comes back, and nobody who sees the URL learns the verifier or the key.
//!
//! It is bound to the browser that started the sign-in (`binding`: a hash of
//! a random cookie the appview set then) and expires, so a state that leaks
//! cannot be completed elsewhere or later. Single use of the code is the
//! authorization server's job.

use super::dpop::DpopKey;
use crate::secret_box;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How long a user may take on the authorization server's pages.
pub const LIFETIME: u64 = 30 * 60;

const PURPOSE: &str = "atcr-oauth-state";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    /// PKCE verifier of this authorization request.
    pub verifier: String,
    /// The DPoP key the tokens will be bound to ([`DpopKey::to_secret`]).
    pub dpop_key: String,
    /// The authorization server the user's PDS named.
    pub issuer: String,
    /// The DID resolved from what the user typed: the token's `sub` must be it.
    pub did: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The user's PDS (the resource server).
    pub pds: String,
    /// The redirect URI sent in the PAR request, sent again to the token endpoint.
    pub redirect_uri: String,
    /// Where to send the browser after sign-in (a path on the appview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_to: Option<String>,
    /// Hash of the browser's sign-in cookie.
    pub binding: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("sign-in state is malformed or was altered")]
    Invalid,
    #[error("sign-in took too long; start again")]
    Expired,
    #[error("sign-in was started in another browser")]
    OtherBrowser,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    purpose: String,
    state: AuthState,
}

/// Hash of a browser cookie's value, for [`AuthState::binding`].
pub fn binding(cookie_value: &str) -> String {
    super::jws::sha256_b64(cookie_value)
}

impl AuthState {
    pub fn dpop_key(&self) -> Result<DpopKey, StateError> {
        DpopKey::from_secret(&self.dpop_key).map_err(|_| StateError::Invalid)
    }

    /// The `state` parameter: base64url(nonce || AES-GCM(JSON)). `nonce` is
    /// 12 fresh random bytes.
    pub fn seal(
        &self,
        key: &[u8; secret_box::KEY_LEN],
        nonce: [u8; secret_box::NONCE_LEN],
    ) -> String {
        let envelope = Envelope {
            purpose: PURPOSE.into(),
            state: self.clone(),
        };
        let json = serde_json::to_vec(&envelope).expect("state serializes");
        B64.encode(secret_box::seal(key, nonce, &json))
    }

    /// Opens a `state` parameter, checks its expiry and that `cookie_value`
    /// is the cookie of the browser that started the sign-in.
    pub fn open(
        sealed: &str,
        key: &[u8; secret_box::KEY_LEN],
        now: u64,
        cookie_value: &str,
    ) -> Result<AuthState, StateError> {
        let bytes = B64.decode(sealed).map_err(|_| StateError::Invalid)?;
        let json = secret_box::open(key, &bytes).map_err(|_| StateError::Invalid)?;
        let envelope: Envelope = serde_json::from_slice(&json).map_err(|_| StateError::Invalid)?;
        if envelope.purpose != PURPOSE {
            return Err(StateError::Invalid);
        }
        let state = envelope.state;
        if now > state.expires_at {
            return Err(StateError::Expired);
        }
        if state.binding != binding(cookie_value) {
            return Err(StateError::OtherBrowser);
        }
        Ok(state)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oauth::pkce::Pkce;

    pub(crate) fn state() -> AuthState {
        AuthState {
            verifier: Pkce::from_random([1u8; 32]).verifier,
            dpop_key: DpopKey::from_random([2u8; 32]).unwrap().to_secret(),
            issuer: "https://pds.example.com".into(),
            did: "did:plc:alice".into(),
            handle: Some("alice.test".into()),
            pds: "https://pds.example.com".into(),
            redirect_uri: "https://atcr.example/oauth/callback".into(),
            return_to: Some("/settings".into()),
            binding: binding("cookie-1"),
            expires_at: 1_700_000_000 + LIFETIME,
        }
    }

    #[test]
    fn round_trips_and_hides_its_secrets() {
        let key = [7u8; 32];
        let sealed = state().seal(&key, [3u8; 12]);
        assert!(!sealed.contains('.') && !sealed.contains('+') && !sealed.contains('/'));
        let raw = B64.decode(&sealed).unwrap();
        let verifier = state().verifier;
        assert!(!raw
            .windows(verifier.len())
            .any(|w| w == verifier.as_bytes()));
        let opened = AuthState::open(&sealed, &key, 1_700_000_000, "cookie-1").unwrap();
        assert_eq!(opened, state());
        assert_eq!(
            opened.dpop_key().unwrap(),
            DpopKey::from_random([2u8; 32]).unwrap()
        );
    }

    #[test]
    fn refuses_altered_expired_foreign_and_other_key() {
        let key = [7u8; 32];
        let sealed = state().seal(&key, [3u8; 12]);
        let open = |s: &str, k: &[u8; 32], now, cookie| AuthState::open(s, k, now, cookie);
        assert_eq!(
            open(&sealed, &[8u8; 32], 1_700_000_000, "cookie-1"),
            Err(StateError::Invalid)
        );
        let mut altered = B64.decode(&sealed).unwrap();
        altered[20] ^= 1;
        assert_eq!(
            open(&B64.encode(altered), &key, 1_700_000_000, "cookie-1"),
            Err(StateError::Invalid)
        );
        assert_eq!(
            open(&sealed, &key, 1_700_000_000 + LIFETIME + 1, "cookie-1"),
            Err(StateError::Expired)
        );
        assert_eq!(
            open(&sealed, &key, 1_700_000_000, "cookie-2"),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(
            open("not base64!", &key, 0, "cookie-1"),
            Err(StateError::Invalid)
        );
        // Another value sealed under the same key is not a state.
        let other = B64.encode(secret_box::seal(
            &key,
            [3u8; 12],
            br#"{"purpose":"x","state":{}}"#,
        ));
        assert_eq!(open(&other, &key, 0, "cookie-1"), Err(StateError::Invalid));
    }
}
