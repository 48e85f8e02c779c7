//! Secrets at rest: AES-256-GCM under the appview's secret key.
//!
//! PDS session tokens are stored in D1 only in this form. The nonce is fresh
//! random bytes from the caller (the runtime owns randomness) and is kept in
//! front of the ciphertext.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decrypt: wrong key or altered data")]
pub struct OpenError;

/// `nonce || ciphertext+tag`
pub fn seal(key: &[u8; KEY_LEN], nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .expect("AES-GCM encryption cannot fail"),
    );
    out
}

pub fn open(key: &[u8; KEY_LEN], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_LEN {
        return Err(OpenError);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    cipher
        .decrypt(&Nonce::from(nonce), ciphertext)
        .map_err(|_| OpenError)
}

/// Parses a 32-byte key written as 64 hex characters.
pub fn key_from_hex(hex: &str) -> Result<[u8; KEY_LEN], String> {
    let hex = hex.trim();
    if hex.len() != KEY_LEN * 2 {
        return Err(format!(
            "expected {} hex characters, got {}",
            KEY_LEN * 2,
            hex.len()
        ));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| "not hexadecimal".to_string())?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_its_key_only() {
        let key = [7u8; 32];
        let sealed = seal(&key, [1; 12], b"refresh-token");
        assert_ne!(&sealed[12..], b"refresh-token");
        assert_eq!(open(&key, &sealed).unwrap(), b"refresh-token");
        assert_eq!(open(&[8u8; 32], &sealed), Err(OpenError));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(open(&key, &altered), Err(OpenError));
        assert_eq!(open(&key, b"short"), Err(OpenError));
    }

    #[test]
    fn keys_parse_from_hex() {
        assert_eq!(key_from_hex(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(key_from_hex("abcd").is_err());
        assert!(key_from_hex(&"zz".repeat(32)).is_err());
    }
}
