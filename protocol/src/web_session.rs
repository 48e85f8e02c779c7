//! The browser side of signing in to the appview's web pages: the session
//! cookie, the CSRF token of its forms, and the same-origin check every
//! state-changing form passes.
//!
//! A session cookie holds 32 random bytes (hex); D1 keeps only their
//! SHA-256 ([`id_hash`]), so a database leak does not hand out sessions and
//! a forged cookie names no row. A form's CSRF token is an HMAC of the
//! cookie it belongs to ([`csrf_token`]): a cross-site page cannot read the
//! cookie, so it cannot make the token.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signed-in session.
pub const SESSION_COOKIE: &str = "atcr_session";
/// The browser's mark while it signs in: the OAuth `state` is bound to it.
pub const SIGN_IN_COOKIE: &str = "atcr_sign_in";
/// How long a web session lasts without signing in again.
pub const SESSION_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// How long a sign-in may take (the authorization server's pages).
pub const SIGN_IN_LIFETIME_SECS: u64 = 30 * 60;

/// A fresh cookie value from 32 random bytes.
pub fn new_cookie_value(random: [u8; 32]) -> String {
    hex(&random)
}

/// What D1 keeps of a session cookie.
pub fn id_hash(cookie_value: &str) -> String {
    hex(&Sha256::digest(cookie_value.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `value` could be a cookie this appview made (64 lowercase hex).
pub fn is_well_formed(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One cookie's value from a `Cookie` request header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax (the authorization
/// server's redirect back is a top-level GET, which Lax lets through),
/// Secure unless the appview is served over plain http on loopback.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", 0, secure)
}

fn mac(key: &[u8], purpose: &str, cookie_value: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"atcr-csrf\0");
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(cookie_value.as_bytes());
    mac
}

/// The CSRF token of `purpose`'s form for the browser holding `cookie_value`.
pub fn csrf_token(key: &[u8], purpose: &str, cookie_value: &str) -> String {
    hex(&mac(key, purpose, cookie_value).finalize().into_bytes())
}

/// Checks a submitted CSRF token in constant time.
pub fn csrf_ok(key: &[u8], purpose: &str, cookie_value: &str, token: &str) -> bool {
    let Some(bytes) = unhex(token) else {
        return false;
    };
    mac(key, purpose, cookie_value).verify_slice(&bytes).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether a form POST came from the appview's own pages: browsers send
/// `Sec-Fetch-Site` and `Origin` with POSTs; either one naming another site
/// refuses it. A request with neither (not a browser) is left to the CSRF
/// token.
pub fn same_origin_post(
    public_origin: &str,
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
) -> bool {
    if let Some(site) = sec_fetch_site {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match origin {
        Some(o) => o.trim_end_matches('/') == public_origin.trim_end_matches('/'),
        None => true,
    }
}

/// Where to go after signing in: only a path on this site (never `//host`
/// or a scheme), else the home page.
pub fn safe_return_path(path: Option<&str>) -> String {
    match path {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(|c| c.is_control()) =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_and_their_hashes() {
        let v = new_cookie_value([0xab; 32]);
        assert_eq!(v, "ab".repeat(32));
        assert!(is_well_formed(&v));
        assert!(!is_well_formed("AB"));
        assert!(!is_well_formed(&"g".repeat(64)));
        assert_eq!(id_hash(&v).len(), 64);
        assert_ne!(id_hash(&v), v);
        assert_eq!(id_hash("abc"), id_hash("abc"));
    }

    #[test]
    fn reads_one_cookie_of_many() {
        let header = "theme=dark; atcr_session=abc123; atcr_sign_in=xyz";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc123"));
        assert_eq!(cookie(header, SIGN_IN_COOKIE), Some("xyz"));
        assert_eq!(cookie(header, "missing"), None);
        assert_eq!(cookie("xatcr_session=1", SESSION_COOKIE), None);
    }

    #[test]
    fn set_cookie_attributes() {
        assert_eq!(
            set_cookie(SESSION_COOKIE, "v", 60, true),
            "atcr_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            set_cookie(SESSION_COOKIE, "v", 60, false),
            "atcr_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert!(clear_cookie(SESSION_COOKIE, true).contains("Max-Age=0"));
    }

    #[test]
    fn csrf_token_is_bound_to_cookie_purpose_and_key() {
        let key = [1u8; 32];
        let token = csrf_token(&key, "sign-out", "cookie-a");
        assert!(csrf_ok(&key, "sign-out", "cookie-a", &token));
        assert!(!csrf_ok(&key, "sign-out", "cookie-b", &token));
        assert!(!csrf_ok(&key, "sign-in", "cookie-a", &token));
        assert!(!csrf_ok(&[2u8; 32], "sign-out", "cookie-a", &token));
        assert!(!csrf_ok(&key, "sign-out", "cookie-a", ""));
        assert!(!csrf_ok(&key, "sign-out", "cookie-a", "zz"));
        assert!(!csrf_ok(&key, "sign-out", "cookie-a", &token[..62]));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let me = "http://127.0.0.1:8787";
        assert!(same_origin_post(me, Some(me), Some("same-origin")));
        assert!(same_origin_post(me, None, None));
        assert!(!same_origin_post(me, Some("https://evil.example"), None));
        assert!(!same_origin_post(me, Some(me), Some("cross-site")));
        assert!(!same_origin_post(me, None, Some("same-site")));
        assert!(!same_origin_post(me, Some("null"), None));
    }

    #[test]
    fn return_paths_stay_on_site() {
        assert_eq!(
            safe_return_path(Some("/r/alice.test/app")),
            "/r/alice.test/app"
        );
        assert_eq!(safe_return_path(Some("//evil.example/")), "/");
        assert_eq!(safe_return_path(Some("/\\evil.example")), "/");
        assert_eq!(safe_return_path(Some("https://evil.example/")), "/");
        assert_eq!(safe_return_path(Some("/a\nb")), "/");
        assert_eq!(safe_return_path(None), "/");
    }
}
