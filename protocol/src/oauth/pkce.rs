//! PKCE with the `S256` method (RFC 7636), the only one atproto allows.
//!
//! The verifier is 32 random bytes from the caller, base64url-encoded (43
//! characters); the challenge sent in the authorization request is
//! `base64url(SHA-256(verifier))`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

pub const METHOD: &str = "S256";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A verifier made from 32 bytes of fresh randomness (RFC 7636 §4.1).
    pub fn from_random(random: [u8; 32]) -> Self {
        let verifier = B64.encode(random);
        Pkce {
            challenge: challenge(&verifier),
            verifier,
        }
    }
}

/// `code_challenge = BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// A verifier is 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B: the 32 octets, the verifier and its S256 challenge.
    #[test]
    fn rfc7636_appendix_b() {
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let pkce = Pkce::from_random(octets);
        assert_eq!(pkce.verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(challenge(&pkce.verifier), pkce.challenge);
        assert!(is_valid_verifier(&pkce.verifier));
    }

    #[test]
    fn verifier_syntax() {
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(is_valid_verifier(&"a~.-_".repeat(10)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
