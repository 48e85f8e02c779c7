//! ES256 compact JWS and P-256 JWKs: the signing under DPoP proofs and client
//! assertions. Signatures are deterministic (RFC 6979), so no randomness is
//! needed to sign.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A P-256 public key as a JWK (RFC 7517/7518), without private parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Present only if someone put a private key where a public one belongs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
}

impl PublicJwk {
    pub fn from_key(key: &VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        PublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: B64.encode(point.x().expect("uncompressed point has x")),
            y: B64.encode(point.y().expect("uncompressed point has y")),
            kid: None,
            alg: None,
            use_: None,
            d: None,
        }
    }

    pub fn to_key(&self) -> Result<VerifyingKey, String> {
        if self.kty != "EC" || self.crv != "P-256" {
            return Err(format!("key is {} {}, not EC P-256", self.kty, self.crv));
        }
        if self.d.is_some() {
            return Err("the JWK carries a private key".into());
        }
        let coordinate = |c: &str| -> Result<[u8; 32], String> {
            B64.decode(c)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| "bad JWK coordinate".to_string())
        };
        let point = p256::EncodedPoint::from_affine_coordinates(
            &coordinate(&self.x)?.into(),
            &coordinate(&self.y)?.into(),
            false,
        );
        VerifyingKey::from_encoded_point(&point).map_err(|_| "not a P-256 point".into())
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), as DPoP's `jkt`: the hash of
    /// the required members in lexicographic order, nothing else.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            self.crv, self.kty, self.x, self.y
        );
        B64.encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// Signs `header.payload` with ES256 and returns the compact JWS.
pub fn sign<H: Serialize, P: Serialize>(key: &SigningKey, header: &H, payload: &P) -> String {
    let encode = |v: Vec<u8>| B64.encode(v);
    let signing_input = format!(
        "{}.{}",
        encode(serde_json::to_vec(header).expect("JWS header serializes")),
        encode(serde_json::to_vec(payload).expect("JWS payload serializes"))
    );
    let signature: Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
}

/// A compact JWS split and decoded, its signature not yet checked.
pub struct Parsed<H, P> {
    pub header: H,
    pub payload: P,
    signing_input: String,
    signature: Vec<u8>,
}

pub fn parse<H: serde::de::DeserializeOwned, P: serde::de::DeserializeOwned>(
    token: &str,
) -> Result<Parsed<H, P>, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (three dot-separated parts)".into());
    };
    let json = |part: &str, what: &str| -> Result<Vec<u8>, String> {
        B64.decode(part)
            .map_err(|_| format!("{what} is not base64url"))
    };
    Ok(Parsed {
        header: serde_json::from_slice(&json(h, "header")?)
            .map_err(|e| format!("bad JWS header: {e}"))?,
        payload: serde_json::from_slice(&json(p, "payload")?)
            .map_err(|e| format!("bad JWS payload: {e}"))?,
        signing_input: format!("{h}.{p}"),
        signature: json(s, "signature")?,
    })
}

impl<H, P> Parsed<H, P> {
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| "malformed ES256 signature")?;
        key.verify(self.signing_input.as_bytes(), &signature)
            .map_err(|_| "signature does not verify".to_string())
    }
}

/// `base64url(SHA-256(value))`: DPoP's `ath` for an access token.
pub fn sha256_b64(value: &str) -> String {
    B64.encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwk_round_trips_and_refuses_private_parts() {
        let key = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let jwk = PublicJwk::from_key(key.verifying_key());
        assert_eq!(jwk.to_key().unwrap(), *key.verifying_key());
        let mut private = jwk.clone();
        private.d = Some("secret".into());
        assert!(private.to_key().is_err());
        let mut other_curve = jwk;
        other_curve.crv = "P-384".into();
        assert!(other_curve.to_key().is_err());
    }

    #[test]
    fn signs_and_verifies() {
        let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let token = sign(
            &key,
            &serde_json::json!({"alg": "ES256"}),
            &serde_json::json!({"a": 1}),
        );
        let parsed = parse::<serde_json::Value, serde_json::Value>(&token).unwrap();
        parsed.verify(key.verifying_key()).unwrap();
        let other = SigningKey::from_slice(&[6u8; 32]).unwrap();
        assert!(parsed.verify(other.verifying_key()).is_err());
        assert!(parse::<serde_json::Value, serde_json::Value>("a.b").is_err());
    }
}
