//! Token exchange: a service-auth token from a user's own PDS traded for a
//! registry token.
//!
//! Any ATProto client holding a session with the user's PDS (OAuth, whose
//! DPoP key never leaves it, or an app password) asks the PDS for a token
//! with `com.atproto.server.getServiceAuth?aud=<appview DID>&lxm=`
//! [`EXCHANGE_METHOD`]. The PDS signs it with the account's `#atproto` key
//! (ES256K, or ES256 for a P-256 key); `iss` is the user. The appview
//! accepts it when the signature verifies against the issuer's DID
//! document, it has not expired and lives at most [`MAX_LIFETIME`] more,
//! `lxm` is exactly [`EXCHANGE_METHOD`] and `aud` is exactly the appview's
//! DID (or that DID with its `#atcr_appview` service fragment). The answer
//! is a registry token for `iss`, granted as `/auth/token` grants.

use crate::identity::Did;
use crate::service_auth::{verify as verify_service_token, AuthError, Expectations, PublicKey};
use std::time::{Duration, SystemTime};

/// The XRPC method (NSID) a token for the exchange must name in `lxm`, and
/// the appview's XRPC endpoint for it (`POST /xrpc/io.atcr.auth.exchange`).
pub const EXCHANGE_METHOD: &str = "io.atcr.auth.exchange";

/// The appview's service in its DID document; `aud` may name it.
pub const APPVIEW_SERVICE_ID: &str = "#atcr_appview";

/// Longest remaining lifetime accepted. A token is not tracked once used,
/// so a short one bounds how long a leaked copy is worth anything; clients
/// mint one per exchange (getServiceAuth's default is 60 s).
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Verifies a token for the exchange with the issuer's `#atproto` key;
/// returns the user it speaks for (its `iss`).
pub fn verify(
    token: &str,
    issuer_key: &PublicKey,
    appview: &Did,
    now: SystemTime,
) -> Result<Did, AuthError> {
    let expect = Expectations {
        audience: appview,
        method: Some(EXCHANGE_METHOD),
        max_lifetime: MAX_LIFETIME,
        now,
    };
    let claims = verify_service_token(token, issuer_key, &expect)?;
    // `verify` allows any fragment on `aud`; here only the appview's own.
    let exact =
        claims.aud == appview.as_str() || claims.aud == format!("{appview}{APPVIEW_SERVICE_ID}");
    if !exact {
        return Err(AuthError::Audience(claims.aud));
    }
    Ok(claims.iss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_auth::{peek_claims, ServiceClaims};
    use base64::Engine;
    use jwt_compact::alg::{Es256, Es256k};
    use jwt_compact::{AlgorithmExt, Claims, Header};

    const T0: i64 = 1_800_000_000;
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn at(secs: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn appview() -> Did {
        "did:web:atcr.example.com".parse().unwrap()
    }

    fn k256() -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_bytes(&[5u8; 32].into()).unwrap()
    }

    fn p256() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_bytes(&[6u8; 32].into()).unwrap()
    }

    /// What getServiceAuth returns: `iss` the user, no `sub`, a `jti`.
    fn claims(aud: &str, lxm: Option<&str>, lifetime: i64) -> Claims<ServiceClaims> {
        let mut claims = Claims::new(ServiceClaims {
            iss: "did:plc:bob".parse().unwrap(),
            aud: aud.into(),
            sub: None,
            lxm: lxm.map(str::to_string),
            jti: Some("0123abcd".into()),
        });
        claims.issued_at = chrono::DateTime::from_timestamp(T0, 0);
        claims.expiration = chrono::DateTime::from_timestamp(T0 + lifetime, 0);
        claims
    }

    fn es256k(claims: &Claims<ServiceClaims>) -> String {
        let header = Header::empty().with_token_type("JWT");
        Es256k::<sha2::Sha256>::default()
            .token(&header, claims, &k256())
            .unwrap()
    }

    fn es256(claims: &Claims<ServiceClaims>) -> String {
        let header = Header::empty().with_token_type("JWT");
        Es256.token(&header, claims, &p256()).unwrap()
    }

    fn bob_k256() -> PublicKey {
        PublicKey::K256(*k256().verifying_key())
    }

    fn good() -> Claims<ServiceClaims> {
        claims("did:web:atcr.example.com", Some(EXCHANGE_METHOD), 60)
    }

    #[test]
    fn a_pds_token_for_the_exchange_names_its_user() {
        let did = verify(&es256k(&good()), &bob_k256(), &appview(), at(T0 + 1)).unwrap();
        assert_eq!(did.as_str(), "did:plc:bob");
        // A P-256 account key (ES256) is as good.
        let p = PublicKey::P256(*p256().verifying_key());
        assert_eq!(
            verify(&es256(&good()), &p, &appview(), at(T0)).unwrap(),
            did
        );
        // `aud` may name the appview's service in its document.
        let service = claims(
            "did:web:atcr.example.com#atcr_appview",
            Some(EXCHANGE_METHOD),
            60,
        );
        assert!(verify(&es256k(&service), &bob_k256(), &appview(), at(T0)).is_ok());
    }

    #[test]
    fn audience_must_be_exactly_this_appview() {
        for aud in [
            "did:web:other.example.com",
            "did:web:atcr.example.com#atproto_pds",
            "did:web:atcr.example.com:sub",
            "did:web:hold.atcr.example.com",
        ] {
            let token = es256k(&claims(aud, Some(EXCHANGE_METHOD), 60));
            assert_eq!(
                verify(&token, &bob_k256(), &appview(), at(T0)),
                Err(AuthError::Audience(aud.into())),
                "{aud}"
            );
        }
    }

    #[test]
    fn method_must_be_the_exchange() {
        for lxm in [None, Some("io.atcr.hold.getBlob"), Some("io.atcr.auth")] {
            let token = es256k(&claims("did:web:atcr.example.com", lxm, 60));
            assert_eq!(
                verify(&token, &bob_k256(), &appview(), at(T0)),
                Err(AuthError::Method(
                    lxm.map(str::to_string),
                    EXCHANGE_METHOD.into()
                )),
                "{lxm:?}"
            );
        }
    }

    #[test]
    fn expired_and_long_lived_tokens_are_refused() {
        let token = es256k(&good());
        // Five seconds of leeway for clock skew, then no more.
        assert!(verify(&token, &bob_k256(), &appview(), at(T0 + 65)).is_ok());
        assert_eq!(
            verify(&token, &bob_k256(), &appview(), at(T0 + 66)),
            Err(AuthError::Expired)
        );
        let hour = es256k(&claims(
            "did:web:atcr.example.com",
            Some(EXCHANGE_METHOD),
            3600,
        ));
        assert_eq!(
            verify(&hour, &bob_k256(), &appview(), at(T0)),
            Err(AuthError::TooLong(MAX_LIFETIME.as_secs()))
        );
        // The same token, once it has less than the bound left, is fine.
        assert!(verify(&hour, &bob_k256(), &appview(), at(T0 + 3400)).is_ok());
    }

    #[test]
    fn signatures_must_be_the_issuers() {
        let token = es256k(&good());
        // Someone else's secp256k1 key.
        let stranger = k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        assert!(matches!(
            verify(
                &token,
                &PublicKey::K256(*stranger.verifying_key()),
                &appview(),
                at(T0)
            ),
            Err(AuthError::Signature(_))
        ));
        // The claims changed after signing (bob's token made to say alice).
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        payload["iss"] = "did:plc:alice".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(peek_claims(&forged).unwrap().iss.as_str(), "did:plc:alice");
        assert!(matches!(
            verify(&forged, &bob_k256(), &appview(), at(T0)),
            Err(AuthError::Signature(_))
        ));
        // A signature flipped in one byte.
        let mut sig = B64.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig));
        assert!(matches!(
            verify(&flipped, &bob_k256(), &appview(), at(T0)),
            Err(AuthError::Signature(_))
        ));
        // An ES256 token checked against a secp256k1 key, and `none`.
        assert!(matches!(
            verify(&es256(&good()), &bob_k256(), &appview(), at(T0)),
            Err(AuthError::Algorithm(_))
        ));
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(verify(&none, &bob_k256(), &appview(), at(T0)).is_err());
        assert!(matches!(
            verify("not-a-jwt", &bob_k256(), &appview(), at(T0)),
            Err(AuthError::Malformed(_))
        ));
    }
}
