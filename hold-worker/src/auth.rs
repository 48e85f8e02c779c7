//! Who is calling: service tokens verified against the issuer's DID document.
//!
//! Two kinds of token are accepted in `Authorization: Bearer`:
//! - from a trusted appview (`TRUSTED_APPVIEWS`): ES256, `sub` names the user
//!   the appview acts for, at most two minutes of life;
//! - from a user's own PDS (`com.atproto.server.getServiceAuth`): ES256K,
//!   the user is the issuer, at most five minutes of life.
//!
//! Either way `aud` must be this hold and `lxm` the method being called.

use crate::config::HoldConfig;
use crate::failure::Failure;
use atcr_protocol::hold_api::HoldError;
use atcr_protocol::service_auth::{verify, Expectations};
use atcr_protocol::Did;
use std::time::Duration;
use worker::Request;
use worker_support::now;
use worker_support::service_tokens::verify_with_issuer_key;

const APPVIEW_TOKEN_LIFETIME: Duration = Duration::from_secs(120);
const PDS_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The authenticated user, or nobody.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    User(Did),
}

pub async fn authenticate(
    req: &Request,
    config: &HoldConfig,
    method: &str,
) -> Result<Caller, Failure> {
    let header = req.headers().get("Authorization").ok().flatten();
    let Some(header) = header else {
        return Ok(Caller::Anonymous);
    };
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| {
            Failure::new(
                HoldError::InvalidToken,
                "Authorization must be 'Bearer <service token>'",
            )
        })?
        .trim();
    let invalid = |e: &dyn std::fmt::Display| Failure::new(HoldError::InvalidToken, e.to_string());
    let claims = verify_with_issuer_key(token, &config.plc_url, |issuer, key| {
        let via_appview = config.trusted_appviews.contains(issuer);
        let expect = Expectations {
            audience: &config.did,
            method: Some(method),
            max_lifetime: if via_appview {
                APPVIEW_TOKEN_LIFETIME
            } else {
                PDS_TOKEN_LIFETIME
            },
            now: now(),
        };
        verify(token, key, &expect)
    })
    .await
    .map_err(|e| invalid(&e))?;
    let via_appview = config.trusted_appviews.contains(&claims.iss);
    if !via_appview {
        return Ok(Caller::User(claims.iss));
    }
    let user = claims
        .sub
        .ok_or_else(|| invalid(&"an appview token must name its user in 'sub'"))?
        .parse()
        .map_err(|e| invalid(&e))?;
    Ok(Caller::User(user))
}
