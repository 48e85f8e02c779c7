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
use atcr_protocol::service_auth::{peek_claims, verify, Expectations, PublicKey};
use atcr_protocol::Did;
use std::time::Duration;
use worker::Request;
use worker_support::{now, resolve_did_cached};

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
    let issuer = peek_claims(token).map_err(|e| invalid(&e))?.iss;
    let via_appview = config.trusted_appviews.contains(&issuer);
    let doc = resolve_did_cached(&issuer, &config.plc_url)
        .await
        .map_err(|e| invalid(&format!("cannot resolve token issuer {issuer}: {e}")))?;
    let key = PublicKey::from_did_document(&doc).map_err(|e| invalid(&format!("{issuer}: {e}")))?;
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
    let claims = verify(token, &key, &expect).map_err(|e| invalid(&e))?;
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
