//! The AT Protocol as the appview uses it: names → DIDs → DID documents →
//! PDS (`resolve`), and the PDS's XRPC API (`pds`). A leaf folder: it
//! imports only `config`, `worker-support` and `atcr-protocol`.

pub mod pds;
pub mod resolve;
