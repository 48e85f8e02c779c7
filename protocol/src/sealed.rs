//! Values sealed with HMAC-SHA256 so a client can carry them but not alter
//! them: how the hold and the appview keep upload state without storing it.
//! Format: `base64url(JSON).base64url(tag)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealed value is malformed or was altered")]
pub struct Unsealable;

pub fn seal<T: Serialize>(value: &T, key: &[u8]) -> String {
    let payload = B64.encode(serde_json::to_vec(value).expect("sealed values serialize"));
    let tag = B64.encode(mac(key, payload.as_bytes()).finalize().into_bytes());
    format!("{payload}.{tag}")
}

pub fn open<T: DeserializeOwned>(token: &str, key: &[u8]) -> Result<T, Unsealable> {
    let (payload, tag) = token.split_once('.').ok_or(Unsealable)?;
    let tag = B64.decode(tag).map_err(|_| Unsealable)?;
    mac(key, payload.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| Unsealable)?;
    let bytes = B64.decode(payload).map_err(|_| Unsealable)?;
    serde_json::from_slice(&bytes).map_err(|_| Unsealable)
}

fn mac(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_alteration() {
        let token = seal(&vec![1, 2, 3], b"k");
        assert_eq!(open::<Vec<i32>>(&token, b"k").unwrap(), vec![1, 2, 3]);
        assert_eq!(open::<Vec<i32>>(&token, b"other"), Err(Unsealable));
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", B64.encode(b"[1,2,4]"));
        assert_eq!(open::<Vec<i32>>(&forged, b"k"), Err(Unsealable));
        assert_eq!(open::<Vec<i32>>("nope", b"k"), Err(Unsealable));
    }
}
