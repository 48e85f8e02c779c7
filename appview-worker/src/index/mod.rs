//! The D1 index: a write-through cache of users, repositories, manifests,
//! tags, stars, profiles, holds and crew, and pull counts, for the web UI
//! and for fast lookups. The PDS stays
//! the source of truth; every row here can be rebuilt from records.
//! `writes` is fed by the registry as it works and by the Jetstream consumer; `pulls` counts pulls through
//! a queue; `browse` answers the pages;
//! `search` finds repositories by the words of their owner, name and description;
//! `unlinks` keeps the blobs deleted from a repository's view; `stars` who
//! starred what; `holds` users' default holds, the holds they run and
//! their crew; `jetstream` the place of the consumer that follows the
//! network's records (and how many it applied and skipped); `backfill` where
//! each walk of a PDS stands, and the emptying a rebuild starts with;
//! `uploads` the part ETags of blob uploads in progress (transient, not
//! from records); `current` the registry reads answered from the index
//! instead of the owner's PDS, while the index is current for the owner.
//! Imports only `config` (for the binding) and `atcr-protocol`.

mod backfill;
mod browse;
mod current;
mod holds;
mod jetstream;
mod pulls;
mod search;
mod stars;
mod unlinks;
mod uploads;
mod writes;

pub use backfill::*;
pub use browse::*;
pub use current::*;
pub use holds::*;
pub use jetstream::*;
pub use pulls::*;
pub use search::*;
pub use stars::*;
pub use unlinks::*;
pub use uploads::*;
pub use writes::*;
