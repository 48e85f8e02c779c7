//! Inter-service tokens: short-lived JWTs one ATProto service shows another.
//!
//! A token names its issuer (`iss`, a DID), its audience (`aud`, the DID of
//! the service it is for), the method it may call (`lxm`) and its expiry. It
//! is signed with a key the issuer publishes in its DID document: ES256
//! (P-256) for appviews, ES256K (secp256k1) for a user's PDS
//! (`com.atproto.server.getServiceAuth`). Verifying = checking all of that.

use crate::identity::{Did, DidDocument};
use chrono::{DateTime, TimeZone, Utc};
use jwt_compact::alg::{Es256, Es256k};
use jwt_compact::{AlgorithmExt, Claims, Header, TimeOptions, UntrustedToken};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm '{0}' is not accepted (use ES256 or ES256K)")]
    Algorithm(String),
    #[error("token signature does not verify against the key {0} publishes")]
    Signature(String),
    #[error("token has expired")]
    Expired,
    #[error("token lives too long: at most {0} seconds are accepted")]
    TooLong(u64),
    #[error("token is for {0}, not for this service")]
    Audience(String),
    #[error("token is for method {0:?}, not {1}")]
    Method(Option<String>, String),
    #[error("cannot use the signing key of {0}: {1}")]
    Key(String, String),
}

/// The claims of an inter-service token beyond `exp`/`iat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceClaims {
    pub iss: Did,
    pub aud: String,
    /// The user an appview acts for; absent in tokens a user's PDS issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The lexicon method (NSID) the token may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A public key from a DID document (`publicKeyMultibase`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    K256(k256::ecdsa::VerifyingKey),
}

/// Multicodec prefixes (unsigned varints) of compressed EC public keys.
const P256_PUB: [u8; 2] = [0x80, 0x24];
const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];

impl PublicKey {
    /// Decodes a Multikey: `z` + base58btc(multicodec prefix + compressed point).
    pub fn from_multikey(multibase: &str) -> Result<Self, String> {
        let encoded = multibase
            .strip_prefix('z')
            .ok_or("only base58btc multikeys ('z…') are supported")?;
        let bytes = bs58::decode(encoded)
            .into_vec()
            .map_err(|e| format!("bad base58: {e}"))?;
        if bytes.len() < 3 {
            return Err("key too short".into());
        }
        let (prefix, point) = bytes.split_at(2);
        match [prefix[0], prefix[1]] {
            P256_PUB => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(PublicKey::P256)
                .map_err(|_| "not a P-256 point".into()),
            SECP256K1_PUB => k256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(PublicKey::K256)
                .map_err(|_| "not a secp256k1 point".into()),
            _ => Err("unsupported key type (P-256 and secp256k1 are)".into()),
        }
    }

    /// The Multikey encoding of this key, as published in DID documents.
    pub fn to_multikey(&self) -> String {
        let (prefix, point) = match self {
            PublicKey::P256(k) => (P256_PUB, k.to_encoded_point(true).as_bytes().to_vec()),
            PublicKey::K256(k) => (SECP256K1_PUB, k.to_encoded_point(true).as_bytes().to_vec()),
        };
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&point);
        format!("z{}", bs58::encode(bytes).into_string())
    }

    /// The `#atproto` signing key of a DID document.
    pub fn from_did_document(doc: &DidDocument) -> Result<Self, String> {
        let method = doc
            .verification_method
            .iter()
            .find(|m| m.id == "#atproto" || m.id == format!("{}#atproto", doc.id))
            .ok_or("the DID document publishes no #atproto key")?;
        let multibase = method
            .public_key_multibase
            .as_deref()
            .ok_or("the #atproto key has no publicKeyMultibase")?;
        match method.kind.as_str() {
            // Legacy forms: the curve is in the type, the key is bare SEC1 bytes.
            "EcdsaSecp256k1VerificationKey2019" | "EcdsaSecp256r1VerificationKey2019" => {
                let encoded = multibase
                    .strip_prefix('z')
                    .ok_or("only base58btc keys ('z…') are supported")?;
                let bytes = bs58::decode(encoded)
                    .into_vec()
                    .map_err(|e| format!("bad base58: {e}"))?;
                if method.kind.contains("256k1") {
                    k256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                        .map(PublicKey::K256)
                        .map_err(|_| "not a secp256k1 point".into())
                } else {
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                        .map(PublicKey::P256)
                        .map_err(|_| "not a P-256 point".into())
                }
            }
            _ => PublicKey::from_multikey(multibase),
        }
    }
}

/// Reads the claims without checking anything, to learn whose key to fetch.
pub fn peek_claims(token: &str) -> Result<ServiceClaims, AuthError> {
    let untrusted = UntrustedToken::new(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let claims: Claims<ServiceClaims> = untrusted
        .deserialize_claims_unchecked()
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    Ok(claims.custom)
}

/// What a verifier expects of a token.
pub struct Expectations<'a> {
    /// This service's DID; `aud` may also carry a `#service` fragment.
    pub audience: &'a Did,
    /// The method being called; when `Some`, `lxm` must name it.
    pub method: Option<&'a str>,
    /// Longest accepted remaining lifetime.
    pub max_lifetime: Duration,
    pub now: SystemTime,
}

/// Checks algorithm, signature, expiry, lifetime, audience and method.
pub fn verify(
    token: &str,
    key: &PublicKey,
    expect: &Expectations<'_>,
) -> Result<ServiceClaims, AuthError> {
    let untrusted = UntrustedToken::new(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let issuer = peek_claims(token)?.iss;
    let signature_error = |_| AuthError::Signature(issuer.to_string());
    let claims: Claims<ServiceClaims> = match (untrusted.algorithm(), key) {
        ("ES256", PublicKey::P256(k)) => {
            Es256
                .validator(k)
                .validate(&untrusted)
                .map_err(signature_error)?
                .into_parts()
                .1
        }
        ("ES256K", PublicKey::K256(k)) => {
            Es256k::<sha2::Sha256>::default()
                .validator(k)
                .validate(&untrusted)
                .map_err(signature_error)?
                .into_parts()
                .1
        }
        (alg, _) => return Err(AuthError::Algorithm(alg.to_string())),
    };
    let now = to_chrono(expect.now);
    let expiry = claims
        .expiration
        .ok_or(AuthError::Malformed("no exp claim".into()))?;
    // A few seconds of leeway for clock skew between services.
    if expiry + chrono::Duration::seconds(5) < now {
        return Err(AuthError::Expired);
    }
    if (expiry - now).num_seconds() > expect.max_lifetime.as_secs() as i64 + 5 {
        return Err(AuthError::TooLong(expect.max_lifetime.as_secs()));
    }
    let service = claims.custom;
    let aud_did = service.aud.split('#').next().unwrap_or_default();
    if aud_did != expect.audience.as_str() {
        return Err(AuthError::Audience(service.aud.clone()));
    }
    if let Some(method) = expect.method {
        if service.lxm.as_deref() != Some(method) {
            return Err(AuthError::Method(service.lxm.clone(), method.to_string()));
        }
    }
    Ok(service)
}

/// Signs an ES256 service token valid for `lifetime` from `now`.
pub fn sign_es256(
    key: &p256::ecdsa::SigningKey,
    claims: ServiceClaims,
    now: SystemTime,
    lifetime: Duration,
) -> Result<String, String> {
    Ok(sign_jwt(key, claims, now, lifetime))
}

/// An ES256 JWT of `claims`, issued at `now`, expiring `lifetime` later.
pub(crate) fn sign_jwt<T: Serialize>(
    key: &p256::ecdsa::SigningKey,
    claims: T,
    now: SystemTime,
    lifetime: Duration,
) -> String {
    let issued = to_chrono(now);
    let options = TimeOptions::new(chrono::Duration::seconds(0), move || issued);
    let claims = Claims::new(claims).set_duration_and_issuance(
        &options,
        chrono::Duration::seconds(lifetime.as_secs() as i64),
    );
    Es256
        .token(&Header::empty().with_token_type("JWT"), &claims, key)
        .expect("ES256 signing of serializable claims cannot fail")
}

pub(crate) fn to_chrono(t: SystemTime) -> DateTime<Utc> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Utc.timestamp_opt(d.as_secs() as i64, d.subsec_nanos())
        .single()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn p256_key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    fn k256_key(seed: u8) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    const T0: u64 = 1_800_000_000;
    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn hold() -> Did {
        "did:web:hold.example.com".parse().unwrap()
    }

    fn claims(lxm: &str) -> ServiceClaims {
        ServiceClaims {
            iss: "did:web:atcr.example.com".parse().unwrap(),
            aud: hold().to_string(),
            sub: Some("did:plc:alice".into()),
            lxm: Some(lxm.into()),
            jti: None,
        }
    }

    fn expect<'a>(aud: &'a Did, method: &'a str, now: u64) -> Expectations<'a> {
        Expectations {
            audience: aud,
            method: Some(method),
            max_lifetime: Duration::from_secs(120),
            now: at(now),
        }
    }

    #[test]
    fn multikeys_round_trip_for_both_curves() {
        let p = PublicKey::P256(*p256_key(7).verifying_key());
        assert!(
            p.to_multikey().starts_with("zDn"),
            "P-256 multikeys start with zDn"
        );
        assert_eq!(PublicKey::from_multikey(&p.to_multikey()).unwrap(), p);
        let k = PublicKey::K256(*k256_key(7).verifying_key());
        assert!(
            k.to_multikey().starts_with("zQ3s"),
            "secp256k1 multikeys start with zQ3s"
        );
        assert_eq!(PublicKey::from_multikey(&k.to_multikey()).unwrap(), k);
        assert!(PublicKey::from_multikey("uAbc").is_err());
        assert!(PublicKey::from_multikey("z1111").is_err());
    }

    #[test]
    fn keys_from_plc_documents_in_both_forms() {
        let key = *k256_key(9).verifying_key();
        let doc = |kind: &str, multibase: String| -> DidDocument {
            serde_json::from_value(serde_json::json!({
                "id": "did:plc:abc",
                "verificationMethod": [{"id": "#atproto", "type": kind, "controller": "did:plc:abc", "publicKeyMultibase": multibase}]
            }))
            .unwrap()
        };
        let uncompressed = format!(
            "z{}",
            bs58::encode(key.to_encoded_point(false).as_bytes()).into_string()
        );
        let legacy = doc("EcdsaSecp256k1VerificationKey2019", uncompressed);
        assert_eq!(
            PublicKey::from_did_document(&legacy).unwrap(),
            PublicKey::K256(key)
        );
        let multikey = doc("Multikey", PublicKey::K256(key).to_multikey());
        assert_eq!(
            PublicKey::from_did_document(&multikey).unwrap(),
            PublicKey::K256(key)
        );
    }

    #[test]
    fn es256_token_verifies_and_checks_every_claim() {
        let key = p256_key(1);
        let public = PublicKey::P256(*key.verifying_key());
        let token = sign_es256(
            &key,
            claims("io.atcr.hold.getBlob"),
            at(T0),
            Duration::from_secs(60),
        )
        .unwrap();
        let aud = hold();
        let ok = verify(
            &token,
            &public,
            &expect(&aud, "io.atcr.hold.getBlob", T0 + 10),
        )
        .unwrap();
        assert_eq!(ok.sub.as_deref(), Some("did:plc:alice"));

        assert_eq!(
            verify(
                &token,
                &public,
                &expect(&aud, "io.atcr.hold.getBlob", T0 + 120)
            ),
            Err(AuthError::Expired)
        );
        let other: Did = "did:web:other.example.com".parse().unwrap();
        assert!(matches!(
            verify(&token, &public, &expect(&other, "io.atcr.hold.getBlob", T0)),
            Err(AuthError::Audience(_))
        ));
        assert!(matches!(
            verify(
                &token,
                &public,
                &expect(&aud, "io.atcr.hold.deleteBlob", T0)
            ),
            Err(AuthError::Method(..))
        ));
        let stranger = PublicKey::P256(*p256_key(2).verifying_key());
        assert!(matches!(
            verify(&token, &stranger, &expect(&aud, "io.atcr.hold.getBlob", T0)),
            Err(AuthError::Signature(_))
        ));
        let k256 = PublicKey::K256(*k256_key(1).verifying_key());
        assert!(matches!(
            verify(&token, &k256, &expect(&aud, "io.atcr.hold.getBlob", T0)),
            Err(AuthError::Algorithm(_))
        ));
    }

    #[test]
    fn long_lived_tokens_are_refused() {
        let key = p256_key(1);
        let public = PublicKey::P256(*key.verifying_key());
        let token = sign_es256(&key, claims("m"), at(T0), Duration::from_secs(3600)).unwrap();
        let aud = hold();
        assert_eq!(
            verify(&token, &public, &expect(&aud, "m", T0)),
            Err(AuthError::TooLong(120))
        );
    }

    #[test]
    fn tampered_and_unsigned_tokens_are_refused() {
        let key = p256_key(1);
        let public = PublicKey::P256(*key.verifying_key());
        let token = sign_es256(&key, claims("m"), at(T0), Duration::from_secs(60)).unwrap();
        let aud = hold();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = "did:plc:mallory".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        );
        assert!(matches!(
            verify(&forged, &public, &expect(&aud, "m", T0)),
            Err(AuthError::Signature(_))
        ));
        let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(verify(&unsigned, &public, &expect(&aud, "m", T0)).is_err());
    }

    #[test]
    fn es256k_tokens_from_a_pds_verify() {
        // What com.atproto.server.getServiceAuth returns: ES256K, iss = the user, no sub.
        let key = k256_key(3);
        let public = PublicKey::K256(*key.verifying_key());
        let claims = ServiceClaims {
            iss: "did:plc:alice".parse().unwrap(),
            aud: "did:web:hold.example.com#atcr_hold".into(),
            sub: None,
            lxm: Some("m".into()),
            jti: Some("x".into()),
        };
        let issued = to_chrono(at(T0));
        let options = TimeOptions::new(chrono::Duration::seconds(0), move || issued);
        let jwt =
            Claims::new(claims).set_duration_and_issuance(&options, chrono::Duration::seconds(60));
        let token = Es256k::<sha2::Sha256>::default()
            .token(&Header::empty(), &jwt, &key)
            .unwrap();
        let aud = hold();
        let verified = verify(&token, &public, &expect(&aud, "m", T0)).unwrap();
        assert_eq!(verified.iss.as_str(), "did:plc:alice");
    }
}
