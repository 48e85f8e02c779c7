//! The appview's admin endpoints are guarded by one secret, `ADMIN_TOKEN`,
//! presented as `Authorization: Bearer <token>`. Compared in constant time:
//! both sides are hashed with HMAC-SHA-256 and the MACs compared with
//! `verify_slice`, so neither the length nor the first differing byte of
//! a wrong guess shows in the time taken.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What an admin request is refused with, or `Ok` when it may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    /// No `ADMIN_TOKEN` is set: the admin endpoints are off (404).
    Off,
    /// No Bearer token was presented (401).
    Missing,
    /// The token presented is not the admin token (403).
    Wrong,
}

impl AdminRefusal {
    pub fn status(&self) -> u16 {
        match self {
            AdminRefusal::Off => 404,
            AdminRefusal::Missing => 401,
            AdminRefusal::Wrong => 403,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            AdminRefusal::Off => {
                "the admin endpoints are off: set the ADMIN_TOKEN secret (wrangler secret put ADMIN_TOKEN) to turn them on"
            }
            AdminRefusal::Missing => "an admin request needs Authorization: Bearer <ADMIN_TOKEN>",
            AdminRefusal::Wrong => "the token presented is not this appview's ADMIN_TOKEN",
        }
    }
}

fn mac(token: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"atcr admin token").expect("any key length");
    mac.update(token.as_bytes());
    mac
}

/// Whether `authorization` (the header's value, if any) presents
/// `admin_token` (the secret, if set).
pub fn authorize(
    admin_token: Option<&str>,
    authorization: Option<&str>,
) -> Result<(), AdminRefusal> {
    let Some(expected) = admin_token.filter(|t| !t.is_empty()) else {
        return Err(AdminRefusal::Off);
    };
    let presented = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AdminRefusal::Missing)?;
    let expected = mac(expected).finalize().into_bytes();
    mac(presented)
        .verify_slice(&expected)
        .map_err(|_| AdminRefusal::Wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_admin_token_passes() {
        let token = Some("s3cret-admin-token");
        assert_eq!(authorize(token, Some("Bearer s3cret-admin-token")), Ok(()));
        assert_eq!(authorize(token, Some("bearer s3cret-admin-token")), Ok(()));
        assert_eq!(
            authorize(token, Some("Bearer s3cret-admin-tokeN")),
            Err(AdminRefusal::Wrong)
        );
        assert_eq!(
            authorize(token, Some("Bearer s3cret")),
            Err(AdminRefusal::Wrong)
        );
        assert_eq!(
            authorize(token, Some("Basic czNjcmV0")),
            Err(AdminRefusal::Missing)
        );
        assert_eq!(
            authorize(token, Some("Bearer ")),
            Err(AdminRefusal::Missing)
        );
        assert_eq!(authorize(token, None), Err(AdminRefusal::Missing));
    }

    #[test]
    fn without_a_token_set_the_admin_endpoints_are_off() {
        assert_eq!(authorize(None, Some("Bearer x")), Err(AdminRefusal::Off));
        assert_eq!(authorize(Some(""), Some("Bearer ")), Err(AdminRefusal::Off));
        assert_eq!(AdminRefusal::Off.status(), 404);
        assert!(AdminRefusal::Off.message().contains("ADMIN_TOKEN"));
        assert_eq!(AdminRefusal::Missing.status(), 401);
        assert_eq!(AdminRefusal::Wrong.status(), 403);
    }
}
