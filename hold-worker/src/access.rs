//! Who may read and write: the owner, the crew, and the public flag, read
//! from ATProto records in the owner's PDS and cached for a short time.
//!
//! - `io.atcr.hold` records whose `endpoint` is this hold set `public`
//!   (overriding `HOLD_PUBLIC`);
//! - `io.atcr.hold.crew` records name `member` DIDs and optional
//!   `permissions` (`blob:read`, `blob:write`; none listed = both).

use crate::auth::Caller;
use crate::config::HoldConfig;
use crate::failure::Failure;
use atcr_protocol::hold_api::HoldError;
use atcr_protocol::{collections, Did};
use serde::Deserialize;
use std::cell::RefCell;
use worker::Date;
use worker_support::{list_records_page, resolve_did_cached};

#[derive(Debug, Clone)]
pub struct Policy {
    pub public: bool,
    crew: Vec<CrewMember>,
}

#[derive(Debug, Clone, Deserialize)]
struct CrewMember {
    member: Did,
    #[serde(default)]
    permissions: Vec<String>,
}

impl CrewMember {
    fn allows(&self, permission: &str) -> bool {
        self.permissions.is_empty() || self.permissions.iter().any(|p| p == permission)
    }
}

thread_local! {
    // (expires at ms, policy): a cache per isolate, refreshed after the TTL.
    static CACHE: RefCell<Option<(u64, Policy)>> = const { RefCell::new(None) };
}

impl Policy {
    pub async fn load(config: &HoldConfig) -> Result<Policy, Failure> {
        let now = Date::now().as_millis();
        if let Some(policy) = CACHE.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|(exp, _)| *exp > now)
                .map(|(_, p)| p.clone())
        }) {
            return Ok(policy);
        }
        let policy = fetch_policy(config).await?;
        CACHE.with(|c| {
            *c.borrow_mut() = Some((now + config.crew_cache_seconds * 1000, policy.clone()))
        });
        Ok(policy)
    }

    /// Read from the owner's PDS now, whatever is cached (garbage collection
    /// must know every crew member, including one added a moment ago).
    pub async fn fresh(config: &HoldConfig) -> Result<Policy, Failure> {
        fetch_policy(config).await
    }

    /// The crew's DIDs, whatever their permissions.
    pub fn crew_members(&self) -> impl Iterator<Item = &Did> {
        self.crew.iter().map(|m| &m.member)
    }

    fn crew(&self, did: &Did, permission: &str) -> bool {
        self.crew
            .iter()
            .any(|m| &m.member == did && m.allows(permission))
    }

    /// Whether the per-user quota applies to `did`: everyone but the owner
    /// and crew with `blob:write`, who write by `HOLD_ALLOW_ALL_CREW` alone.
    pub fn limits(&self, config: &HoldConfig, did: &Did) -> bool {
        did != &config.owner && !self.crew(did, "blob:write")
    }

    pub fn require_read(&self, config: &HoldConfig, caller: &Caller) -> Result<(), Failure> {
        if self.public {
            return Ok(());
        }
        match caller {
            Caller::Anonymous => Err(Failure::new(
                HoldError::AuthRequired,
                "this hold is private: sign in to read",
            )),
            Caller::User(did) if did == &config.owner || self.crew(did, "blob:read") => Ok(()),
            Caller::User(did) => Err(Failure::new(
                HoldError::Forbidden,
                format!("{did} is not crew of this private hold"),
            )),
        }
    }

    pub fn require_write(&self, config: &HoldConfig, caller: &Caller) -> Result<Writer, Failure> {
        match caller {
            Caller::Anonymous => Err(Failure::new(
                HoldError::AuthRequired,
                "writing to a hold needs a service token",
            )),
            Caller::User(did) if did == &config.owner || self.crew(did, "blob:write") => {
                Ok(Writer {
                    did: did.clone(),
                    limited: false,
                })
            }
            Caller::User(did) if config.allow_all_crew => Ok(Writer {
                did: did.clone(),
                limited: true,
            }),
            Caller::User(did) => Err(Failure::new(
                HoldError::Forbidden,
                format!("{did} is not crew of this hold"),
            )),
        }
    }
}

/// Someone allowed to write, and whether the hold's per-user quota limits
/// them (only those who may write because the hold allows all crew).
#[derive(Debug, Clone)]
pub struct Writer {
    pub did: Did,
    pub limited: bool,
}

pub fn require_owner(config: &HoldConfig, caller: &Caller) -> Result<(), Failure> {
    match caller {
        Caller::User(did) if did == &config.owner => Ok(()),
        Caller::Anonymous => Err(Failure::new(
            HoldError::AuthRequired,
            "only the hold's owner may do this",
        )),
        Caller::User(did) => Err(Failure::new(
            HoldError::Forbidden,
            format!("only the hold's owner may do this, not {did}"),
        )),
    }
}

async fn fetch_policy(config: &HoldConfig) -> Result<Policy, Failure> {
    let unavailable = |e: String| {
        Failure::new(
            HoldError::StorageError,
            format!("cannot read the owner's records: {e}"),
        )
    };
    let doc = resolve_did_cached(&config.owner, &config.plc_url)
        .await
        .map_err(unavailable)?;
    let pds = doc
        .pds_endpoint()
        .ok_or_else(|| unavailable(format!("{} names no PDS", config.owner)))?
        .to_string();
    let mut public = config.public;
    for value in list_records(&pds, &config.owner, collections::HOLD)
        .await
        .map_err(unavailable)?
    {
        let endpoint = value["endpoint"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        if endpoint == config.public_url || endpoint == config.did.as_str() {
            public = value["public"].as_bool().unwrap_or(public);
        }
    }
    let crew = list_records(&pds, &config.owner, collections::HOLD_CREW)
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    Ok(Policy { public, crew })
}

/// Every record of `collection` in `repo` (public, unauthenticated XRPC).
/// The `value` of every record of `collection` (at most 10,000: a policy
/// never needs more).
async fn list_records(
    pds: &str,
    repo: &Did,
    collection: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (records, next) = list_records_page(pds, repo, collection, cursor.as_deref()).await?;
        out.extend(records.into_iter().map(|mut r| r["value"].take()));
        match next {
            Some(next) if out.len() < 10_000 => cursor = Some(next),
            _ => return Ok(out),
        }
    }
}
