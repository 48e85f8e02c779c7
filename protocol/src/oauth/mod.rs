//! ATProto OAuth (atproto.com/specs/oauth): the protocol pieces the appview's
//! OAuth client and the credential helper share, free of any runtime. Every
//! function here is pure: the caller passes the time (seconds since the Unix
//! epoch) and fresh random bytes, and does the HTTP.
//!
//! - [`pkce`]: S256 challenges (RFC 7636).
//! - [`dpop`]: DPoP proofs, the nonce retry rule and a verifier (RFC 9449).
//! - [`jws`]: ES256 compact JWS and P-256 JWKs under both.

pub mod dpop;
pub mod jws;
pub mod pkce;
