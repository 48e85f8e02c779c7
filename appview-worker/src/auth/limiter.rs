//! How often one source may make the appview sign in at a PDS: app-password
//! logins (`/auth/token`) and OAuth sign-ins (`POST /login`) each cost the
//! user's PDS work, so both go through the `SIGN_IN_LIMITER` binding; so
//! do device logins started (`/auth/device/code`), each a D1 row.

use crate::config::SIGN_IN_LIMITER_BINDING;
use worker::{Env, Request};

/// Whether the limiter lets one more sign-in under `key` through. Without
/// the binding (not configured) every sign-in goes through.
pub async fn allowed(env: &Env, key: String) -> bool {
    let Ok(limiter) = env.rate_limiter(SIGN_IN_LIMITER_BINDING) else {
        return true;
    };
    match limiter.limit(key).await {
        Ok(outcome) => outcome.success,
        Err(e) => {
            worker::console_error!("sign-in limiter failed: {e}");
            true
        }
    }
}

/// The client's address as Cloudflare's edge reports it.
pub fn source_address(req: &Request) -> String {
    req.headers()
        .get("CF-Connecting-IP")
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown".into())
}
