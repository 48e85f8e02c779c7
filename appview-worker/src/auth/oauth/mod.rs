//! The appview as an ATProto OAuth client (atproto.com/specs/oauth): a thin
//! adapter of `atcr_protocol::oauth` to the Workers runtime.
//!
//! - `client`: which client the appview is (confidential or loopback), its
//!   metadata document and JWKS.
//! - `server`: the user's authorization server, found from their PDS.
//! - `http`: requests with DPoP proofs and the nonce retry.
//! - `sign_in`: PAR → authorization page → callback → tokens.
//! - `store`: sessions sealed in D1, with the refresh compare-and-swap.
//! - `session`: XRPC calls with a session, refresh, revocation.

pub mod client;
mod http;
mod server;
pub mod session;
pub mod sign_in;
mod store;
