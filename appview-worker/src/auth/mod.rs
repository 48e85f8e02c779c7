//! Who a user is and what the appview may do for them: the Docker token
//! service (`token`) and its exchange of PDS service-auth tokens
//! (`exchange`), ATProto OAuth sign-in and the OAuth sessions it gives
//! the appview (`oauth`), the browsers signed in to the web pages
//! (`web_sessions`), the app-password PDS sessions (`sessions`, encrypted in
//! D1), and writing to a user's PDS with whichever session it holds
//! (`writer`), how often a source may sign in (`limiter`), and the
//! credential helper's device login (`device_grant`, the devices and
//! logins in progress in D1: `devices`). Imports
//! `atproto` below it; nothing here imports `registry` or `web`.

pub mod device_grant;
pub mod devices;
pub mod exchange;
pub mod limiter;
pub mod oauth;
pub mod sessions;
pub mod token;
pub mod web_sessions;
pub mod writer;
