//! Who a request is and what the appview may do for them: the Docker token
//! service (`token`), the PDS sessions the appview holds for users
//! (`sessions`, encrypted in D1), and writing to a user's PDS with them
//! (`writer`). Imports `atproto` below it; nothing here imports `registry`.

pub mod sessions;
pub mod token;
pub mod writer;
