//! ATProto OAuth (atproto.com/specs/oauth): the protocol pieces the appview's
//! OAuth client and the credential helper share, free of any runtime. Every
//! function here is pure: the caller passes the time (seconds since the Unix
//! epoch) and fresh random bytes, and does the HTTP.
//!
//! A sign-in: resolve handle → DID → PDS; fetch the PDS's protected-resource
//! document and its one authorization server's metadata ([`discovery`]);
//! make a PKCE pair ([`pkce`]) and a DPoP key ([`dpop`]); seal them with the
//! expected issuer and identity into the `state` ([`state`]); push the
//! authorization request ([`flow::ParRequest`], authenticated as the
//! [`client`]), send the browser to [`flow::authorization_url`]; on the
//! callback open the state, check the issuer, redeem the code and check the
//! token response ([`flow::TokenResponse::check`]). Every request to the
//! authorization server and the PDS carries a DPoP proof and is retried once
//! when [`dpop::needs_nonce_retry`] says so.
//!
//! - [`pkce`]: S256 challenges (RFC 7636).
//! - [`dpop`]: DPoP proofs, the nonce retry rule and a verifier (RFC 9449).
//! - [`client`]: client metadata (confidential and loopback), JWKS and
//!   `private_key_jwt` assertions (RFC 7523).
//! - [`scope`]: the scope the appview asks for.
//! - [`discovery`]: protected-resource and authorization-server metadata.
//! - [`state`]: the sealed `state` parameter.
//! - [`flow`]: PAR, callback, token requests and token response checks.
//! - [`jws`]: ES256 compact JWS and P-256 JWKs under all of it.

pub mod client;
pub mod discovery;
pub mod dpop;
pub mod flow;
pub mod jws;
pub mod pkce;
pub mod scope;
pub mod state;
