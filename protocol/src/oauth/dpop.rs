//! DPoP (RFC 9449): proofs the appview and the helper sign for every request
//! to an authorization server or a PDS, and the checks a resource server makes
//! of proofs sent to it.
//!
//! A proof is an ES256 JWS with header `typ: dpop+jwt` and the public key as
//! `jwk`, and claims `jti` (random, from the caller), `htm` (method), `htu`
//! (the URL without query and fragment), `iat` (the caller's clock), `nonce`
//! (the server's last `DPoP-Nonce`, once it sent one) and, on resource
//! requests, `ath` = base64url(SHA-256(access token)).

use super::jws::{self, PublicJwk};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub const TYP: &str = "dpop+jwt";
pub const ALG: &str = "ES256";

/// A DPoP key pair. Stored (encrypted) with the session it is bound to, as
/// the 32-byte private scalar.
#[derive(Clone)]
pub struct DpopKey(SigningKey);

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey({})", self.public_jwk().thumbprint())
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.verifying_key() == other.0.verifying_key()
    }
}

impl DpopKey {
    /// A key from 32 bytes of fresh randomness. Fails only for the (never
    /// drawn) zero scalar or one above the curve order.
    pub fn from_random(random: [u8; 32]) -> Result<Self, String> {
        SigningKey::from_slice(&random)
            .map(DpopKey)
            .map_err(|_| "not a valid P-256 scalar: draw again".into())
    }

    /// The private scalar, base64url: for storage inside sealed values only.
    pub fn to_secret(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let bytes = B64
            .decode(secret)
            .map_err(|_| "DPoP key is not base64url")?;
        SigningKey::from_slice(&bytes)
            .map(DpopKey)
            .map_err(|_| "not a P-256 private key".into())
    }

    pub fn public_jwk(&self) -> PublicJwk {
        PublicJwk::from_key(self.0.verifying_key())
    }

    /// Signs a proof for one request.
    pub fn proof(&self, request: &ProofRequest<'_>) -> String {
        let claims = ProofClaims {
            jti: request.jti.to_string(),
            htm: request.method.to_string(),
            htu: htu(request.url),
            iat: request.iat,
            nonce: request.nonce.map(str::to_string),
            ath: request.access_token.map(ath),
        };
        jws::sign(
            &self.0,
            &ProofHeader {
                typ: TYP.into(),
                alg: ALG.into(),
                jwk: self.public_jwk(),
            },
            &claims,
        )
    }
}

/// What one proof is for.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    pub method: &'a str,
    /// The full request URL; query and fragment are dropped for `htu`.
    pub url: &'a str,
    /// Seconds since the Unix epoch, from the caller's clock.
    pub iat: u64,
    /// Unique per proof: base64url of at least 12 random bytes.
    pub jti: &'a str,
    pub nonce: Option<&'a str>,
    /// The access token the request carries (`Authorization: DPoP <token>`).
    pub access_token: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofHeader {
    pub typ: String,
    pub alg: String,
    pub jwk: PublicJwk,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ath: Option<String>,
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    jws::sha256_b64(access_token)
}

/// `htu`: the URL without query and fragment, normalized the way a URL parser
/// does (lower-case scheme and host, default port dropped, dot segments
/// resolved). An unparsable URL is kept as given, minus query and fragment.
pub fn htu(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

/// Whether a response asks to repeat the request with the nonce it sent in
/// `DPoP-Nonce`: an authorization server answers 400 with
/// `{"error":"use_dpop_nonce"}` (RFC 9449 §8), a resource server 401 with
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (§9). Retry once, with a
/// new proof carrying the nonce, and keep the nonce for the next request to
/// that server.
pub fn needs_nonce_retry(status: u16, www_authenticate: Option<&str>, body: &[u8]) -> bool {
    match status {
        400 => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .is_some_and(|e| e == "use_dpop_nonce"),
        401 => www_authenticate.is_some_and(|h| {
            let h = h.trim_start();
            h.len() > 4
                && h[..4].eq_ignore_ascii_case("dpop")
                && h.contains("error=\"use_dpop_nonce\"")
        }),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("invalid DPoP proof: {0}")]
    Malformed(String),
    #[error("DPoP proof must be typ dpop+jwt signed with ES256")]
    Algorithm,
    #[error("DPoP proof signature does not verify")]
    Signature,
    #[error("DPoP proof is for {0}, not this method")]
    Method(String),
    #[error("DPoP proof is for {0}, not this URL")]
    Url(String),
    #[error("DPoP proof is too old or from the future")]
    Stale,
    #[error("DPoP proof does not carry the current nonce")]
    UseNonce,
    #[error("DPoP proof's ath does not match the access token")]
    AccessTokenHash,
    #[error("DPoP proof was already used")]
    Replayed,
    #[error("DPoP proof is signed by another key than the token is bound to")]
    KeyMismatch,
}

/// What a resource server expects of a proof for the request in front of it.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub now: u64,
    /// Oldest accepted `iat`, in seconds before `now`; a few seconds of
    /// clock skew are allowed the other way.
    pub max_age: u64,
    /// The nonce this server currently hands out, if it uses nonces.
    pub nonce: Option<&'a str>,
    /// The access token of the request: `ath` must hash it. Without one, a
    /// proof must carry no `ath`.
    pub access_token: Option<&'a str>,
    /// The thumbprint the access token is bound to (`cnf.jkt`), if any.
    pub jkt: Option<&'a str>,
}

/// Future `iat`s accepted, for clock skew.
pub const FUTURE_SKEW: u64 = 5;

/// A proof that passed every check but replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The key's RFC 7638 thumbprint: what a DPoP-bound token's `cnf.jkt` names.
    pub jkt: String,
    pub jti: String,
    pub iat: u64,
}

impl VerifiedProof {
    /// The key under which replay is tracked: one `jti` per key.
    pub fn replay_key(&self) -> String {
        format!("{}:{}", self.jkt, self.jti)
    }
}

/// Checks a proof's form, signature, method, URL, age, nonce, `ath` and key
/// binding (RFC 9449 §4.3). Replay is the caller's store's job: see
/// [`verify_once`].
pub fn verify(proof: &str, expect: &Expectations<'_>) -> Result<VerifiedProof, DpopError> {
    let parsed = jws::parse::<ProofHeader, ProofClaims>(proof).map_err(DpopError::Malformed)?;
    if parsed.header.typ != TYP || parsed.header.alg != ALG {
        return Err(DpopError::Algorithm);
    }
    let key = parsed.header.jwk.to_key().map_err(DpopError::Malformed)?;
    parsed.verify(&key).map_err(|_| DpopError::Signature)?;
    let claims = parsed.payload;
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(DpopError::Malformed(
            "jti must be 1 to 256 characters".into(),
        ));
    }
    if claims.htm != expect.method {
        return Err(DpopError::Method(claims.htm));
    }
    if htu(&claims.htu) != htu(expect.url) {
        return Err(DpopError::Url(claims.htu));
    }
    if claims.iat + expect.max_age < expect.now || claims.iat > expect.now + FUTURE_SKEW {
        return Err(DpopError::Stale);
    }
    if let Some(nonce) = expect.nonce {
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(DpopError::UseNonce);
        }
    }
    match (expect.access_token, &claims.ath) {
        (Some(token), Some(hash)) if *hash == ath(token) => {}
        (None, None) => {}
        _ => return Err(DpopError::AccessTokenHash),
    }
    let jkt = parsed.header.jwk.thumbprint();
    if expect.jkt.is_some_and(|bound| bound != jkt) {
        return Err(DpopError::KeyMismatch);
    }
    Ok(VerifiedProof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
    })
}

/// Proofs already seen, so each is accepted once. A store need only remember
/// a proof until its `iat` is older than the accepted age.
pub trait SeenProofs {
    /// Records the key; `false` if it was already there.
    fn insert(&mut self, replay_key: String, iat: u64) -> bool;
}

impl SeenProofs for HashSet<String> {
    fn insert(&mut self, replay_key: String, _iat: u64) -> bool {
        HashSet::insert(self, replay_key)
    }
}

/// [`verify`], then refuses a proof whose `jti` this key already used.
pub fn verify_once(
    proof: &str,
    expect: &Expectations<'_>,
    seen: &mut impl SeenProofs,
) -> Result<VerifiedProof, DpopError> {
    let verified = verify(proof, expect)?;
    if !seen.insert(verified.replay_key(), verified.iat) {
        return Err(DpopError::Replayed);
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DpopKey {
        DpopKey::from_random([9u8; 32]).unwrap()
    }

    fn request<'a>() -> ProofRequest<'a> {
        ProofRequest {
            method: "POST",
            url: "https://pds.example.com/xrpc/com.atproto.repo.putRecord?x=1#frag",
            iat: 1_700_000_000,
            jti: "jti-1",
            nonce: Some("n1"),
            access_token: Some("token"),
        }
    }

    fn expect<'a>() -> Expectations<'a> {
        Expectations {
            method: "POST",
            url: "https://pds.example.com/xrpc/com.atproto.repo.putRecord",
            now: 1_700_000_010,
            max_age: 60,
            nonce: Some("n1"),
            access_token: Some("token"),
            jkt: None,
        }
    }

    /// RFC 9449 §7.1: the `ath` of the example access token.
    #[test]
    fn rfc9449_ath_example() {
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    /// RFC 9449 §4.2's example key and its thumbprint from §6.1.
    #[test]
    fn rfc9449_jkt_example() {
        let jwk: PublicJwk = serde_json::from_str(
            r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#,
        )
        .unwrap();
        jwk.to_key().unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn proof_has_the_rfc9449_shape() {
        let proof = key().proof(&request());
        let parsed = jws::parse::<serde_json::Value, serde_json::Value>(&proof).unwrap();
        assert_eq!(parsed.header["typ"], "dpop+jwt");
        assert_eq!(parsed.header["alg"], "ES256");
        assert_eq!(parsed.header["jwk"]["kty"], "EC");
        assert_eq!(parsed.header["jwk"]["crv"], "P-256");
        assert!(parsed.header["jwk"].get("d").is_none());
        let claims = &parsed.payload;
        assert_eq!(claims["htm"], "POST");
        assert_eq!(
            claims["htu"],
            "https://pds.example.com/xrpc/com.atproto.repo.putRecord"
        );
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["ath"], ath("token"));
        // Without a nonce or a token, neither claim appears.
        let bare = key().proof(&ProofRequest {
            nonce: None,
            access_token: None,
            ..request()
        });
        let parsed = jws::parse::<serde_json::Value, serde_json::Value>(&bare).unwrap();
        assert!(parsed.payload.get("nonce").is_none());
        assert!(parsed.payload.get("ath").is_none());
    }

    #[test]
    fn htu_drops_query_and_fragment_and_normalizes() {
        assert_eq!(htu("https://a.example/p?q=1#f"), "https://a.example/p");
        assert_eq!(htu("HTTPS://A.Example:443/x/../p"), "https://a.example/p");
        assert_eq!(
            htu("http://127.0.0.1:2583/oauth/par"),
            "http://127.0.0.1:2583/oauth/par"
        );
    }

    #[test]
    fn key_round_trips_through_its_secret() {
        let k = key();
        assert_eq!(DpopKey::from_secret(&k.to_secret()).unwrap(), k);
        assert!(DpopKey::from_secret("!!").is_err());
        assert!(DpopKey::from_random([0u8; 32]).is_err());
    }

    #[test]
    fn verifier_accepts_a_good_proof_once() {
        let k = key();
        let proof = k.proof(&request());
        let mut seen = HashSet::new();
        let ok = verify_once(&proof, &expect(), &mut seen).unwrap();
        assert_eq!(ok.jkt, k.public_jwk().thumbprint());
        assert_eq!(ok.jti, "jti-1");
        assert_eq!(
            verify_once(&proof, &expect(), &mut seen),
            Err(DpopError::Replayed)
        );
        // Bound to this key: accepted; bound to another: refused.
        let jkt = k.public_jwk().thumbprint();
        assert!(verify(
            &proof,
            &Expectations {
                jkt: Some(&jkt),
                ..expect()
            }
        )
        .is_ok());
        assert_eq!(
            verify(
                &proof,
                &Expectations {
                    jkt: Some("other"),
                    ..expect()
                }
            ),
            Err(DpopError::KeyMismatch)
        );
    }

    #[test]
    fn verifier_refuses_other_method_url_age_nonce_and_token() {
        let proof = key().proof(&request());
        let refused = |e: Expectations<'_>| verify(&proof, &e).unwrap_err();
        assert!(matches!(
            refused(Expectations {
                method: "GET",
                ..expect()
            }),
            DpopError::Method(_)
        ));
        assert!(matches!(
            refused(Expectations {
                url: "https://pds.example.com/xrpc/com.atproto.repo.deleteRecord",
                ..expect()
            }),
            DpopError::Url(_)
        ));
        assert!(matches!(
            refused(Expectations {
                url: "https://other.example.com/xrpc/com.atproto.repo.putRecord",
                ..expect()
            }),
            DpopError::Url(_)
        ));
        assert_eq!(
            refused(Expectations {
                now: 1_700_000_061,
                ..expect()
            }),
            DpopError::Stale
        );
        assert_eq!(
            refused(Expectations {
                now: 1_699_999_990,
                ..expect()
            }),
            DpopError::Stale
        );
        assert_eq!(
            refused(Expectations {
                nonce: Some("n2"),
                ..expect()
            }),
            DpopError::UseNonce
        );
        assert_eq!(
            refused(Expectations {
                access_token: Some("other"),
                ..expect()
            }),
            DpopError::AccessTokenHash
        );
        assert_eq!(
            refused(Expectations {
                access_token: None,
                ..expect()
            }),
            DpopError::AccessTokenHash
        );
        // The query string is not part of what is signed: same proof, other query.
        assert!(verify(
            &proof,
            &Expectations {
                url: "https://pds.example.com/xrpc/com.atproto.repo.putRecord?y=2",
                ..expect()
            }
        )
        .is_ok());
    }

    #[test]
    fn verifier_refuses_tampering_and_other_algorithms() {
        let proof = key().proof(&request());
        let mut parts: Vec<String> = proof.split('.').map(String::from).collect();
        let other = key().proof(&ProofRequest {
            method: "GET",
            ..request()
        });
        parts[1] = other.split('.').nth(1).unwrap().to_string();
        assert_eq!(
            verify(&parts.join("."), &expect()),
            Err(DpopError::Signature)
        );
        let hs256 = jws::sign(
            &SigningKey::from_slice(&[9u8; 32]).unwrap(),
            &serde_json::json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key().public_jwk()}),
            &serde_json::json!({"jti": "j", "htm": "POST", "htu": "https://pds.example.com/", "iat": 1}),
        );
        assert_eq!(verify(&hs256, &expect()), Err(DpopError::Algorithm));
        assert!(matches!(
            verify("garbage", &expect()),
            Err(DpopError::Malformed(_))
        ));
    }

    #[test]
    fn nonce_retry_is_recognized_from_both_kinds_of_server() {
        assert!(needs_nonce_retry(
            400,
            None,
            br#"{"error":"use_dpop_nonce","error_description":"x"}"#
        ));
        assert!(!needs_nonce_retry(
            400,
            None,
            br#"{"error":"invalid_grant"}"#
        ));
        assert!(needs_nonce_retry(
            401,
            Some(
                r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
            ),
            b""
        ));
        assert!(!needs_nonce_retry(
            401,
            Some(r#"DPoP error="invalid_token""#),
            b""
        ));
        assert!(!needs_nonce_retry(
            401,
            Some(r#"Bearer error="use_dpop_nonce""#),
            b""
        ));
        assert!(!needs_nonce_retry(200, None, b""));
    }
}
