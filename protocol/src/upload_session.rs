//! Upload sessions as signed tokens, so the hold keeps no upload state.
//!
//! A session names the storage-side multipart upload, the digest the bytes
//! must have, and who opened it. It is sealed with HMAC-SHA256 under a key
//! only the hold knows: a client can carry it but not alter it, and nobody
//! but its opener can use it.

use crate::digest::Digest;
use crate::identity::Did;
use crate::sealed;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadSession {
    /// Staging id: the bytes wait at `paths::upload_key(id)`.
    pub id: String,
    /// The storage's multipart upload id; `None` for a single checksummed PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// The digest the bytes must have, when known at the start; otherwise
    /// it is named when the upload completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Who opened the session; only they may continue it.
    pub owner: Did,
    /// Unix seconds.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("upload session is malformed or was altered")]
    Invalid,
    #[error("upload session has expired")]
    Expired,
    #[error("upload session belongs to someone else")]
    NotYours,
}

impl UploadSession {
    pub fn seal(&self, key: &[u8]) -> String {
        sealed::seal(self, key)
    }

    /// Verifies the seal, the deadline and that `caller` opened the session.
    pub fn open(
        token: &str,
        key: &[u8],
        caller: &Did,
        now_secs: u64,
    ) -> Result<Self, SessionError> {
        let session: UploadSession = sealed::open(token, key).map_err(|_| SessionError::Invalid)?;
        if session.expires_at < now_secs {
            return Err(SessionError::Expired);
        }
        if &session.owner != caller {
            return Err(SessionError::NotYours);
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn session() -> UploadSession {
        UploadSession {
            id: "s1".into(),
            upload_id: Some("u1".into()),
            digest: Some(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                    .parse()
                    .unwrap(),
            ),
            owner: "did:plc:alice".parse().unwrap(),
            expires_at: 1000,
        }
    }

    #[test]
    fn sealed_sessions_open_for_their_owner_only() {
        let alice: Did = "did:plc:alice".parse().unwrap();
        let bob: Did = "did:plc:bob".parse().unwrap();
        let token = session().seal(b"k");
        assert_eq!(
            UploadSession::open(&token, b"k", &alice, 999).unwrap(),
            session()
        );
        assert_eq!(
            UploadSession::open(&token, b"k", &bob, 999),
            Err(SessionError::NotYours)
        );
        assert_eq!(
            UploadSession::open(&token, b"k", &alice, 1001),
            Err(SessionError::Expired)
        );
        assert_eq!(
            UploadSession::open(&token, b"other", &alice, 999),
            Err(SessionError::Invalid)
        );
    }

    #[test]
    fn altered_sessions_are_refused() {
        let alice: Did = "did:plc:alice".parse().unwrap();
        let token = session().seal(b"k");
        let (payload, tag) = token.split_once('.').unwrap();
        let mut forged = session();
        forged.digest = Some(format!("sha256:{}", "0".repeat(64)).parse().unwrap());
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_ne!(forged_payload, payload);
        assert_eq!(
            UploadSession::open(&format!("{forged_payload}.{tag}"), b"k", &alice, 0),
            Err(SessionError::Invalid)
        );
        assert_eq!(
            UploadSession::open("garbage", b"k", &alice, 0),
            Err(SessionError::Invalid)
        );
    }
}
