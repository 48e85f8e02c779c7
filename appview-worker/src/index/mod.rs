//! The D1 index: a write-through cache of users, repositories, manifests,
//! tags and pull counts, for the web UI and for fast lookups. The PDS stays
//! the source of truth; every row here can be rebuilt from records.
//! `writes` is fed by the registry as it works; `browse` answers the pages.
//! Imports only `config` (for the binding) and `atcr-protocol`.

mod browse;
mod writes;

pub use browse::*;
pub use writes::*;
