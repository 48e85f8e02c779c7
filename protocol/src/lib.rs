//! Protocol logic shared by the ATCR workers and the credential helper.
//!
//! Nothing here depends on the Workers runtime: every module is plain Rust,
//! tested natively with `cargo test -p atcr-protocol` and compiled into the
//! workers for `wasm32-unknown-unknown`. Time is always passed in by the caller
//! (`SystemTime::now()` panics on wasm32).

pub mod admin;
pub mod backfill;
pub mod challenge;
pub mod chunk_range;
pub mod chunking;
pub mod collections;
pub mod device;
pub mod digest;
pub mod error;
pub mod gc;
pub mod health;
pub mod hold_api;
pub mod hold_storage;
pub mod identity;
pub mod jetstream;
pub mod manifest;
pub mod markdown;
pub mod oauth;
pub mod pagination;
pub mod paths;
pub mod pulls;
pub mod quota;
pub mod record_keys;
pub mod reference;
pub mod registry_token;
pub mod route;
pub mod s3;
pub mod sealed;
pub mod secret_box;
pub mod service_auth;
pub mod star;
pub mod tid;
pub mod token_exchange;
pub mod upload_session;
pub mod web_session;

pub use digest::Digest;
pub use error::{ErrorEnvelope, OciCode, Refusal};
pub use identity::{Did, DidDocument, Handle};
