//! Per-user usage of a shared hold, kept in D1 (binding `USAGE`, schema in
//! `hold-worker/migrations/`): one `blob_usage` row per (user, distinct blob)
//! the user was charged for. The quota arithmetic and the words are
//! `atcr_protocol::quota`; this is the storage of it.
//!
//! The charge is one `INSERT … SELECT … WHERE` whose condition is the quota,
//! so two uploads racing for the last bytes of a quota cannot both pass: D1
//! runs statements one at a time.

use crate::config::HoldConfig;
use crate::failure::Failure;
use atcr_protocol::hold_api::HoldError;
use atcr_protocol::quota::{Quota, QuotaExceeded, Usage};
use atcr_protocol::{Did, Digest};
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, Date};
use worker_support::resolve_did_cached;

/// The usage of the users a quota limits. Only made when the hold has a
/// quota (and so a database).
pub struct Ledger<'a> {
    db: &'a D1Database,
    pub quota: Quota,
}

/// How a charge ended when it did not cross the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// This upload took the charge; undo it if publishing fails.
    New,
    /// The user was charged for this digest before.
    Already,
}

#[derive(Deserialize)]
struct UsageRow {
    bytes: f64,
    blobs: f64,
    /// Rows for the digest asked about (0 or 1).
    mine: f64,
}

impl UsageRow {
    fn usage(&self) -> Usage {
        Usage {
            bytes: self.bytes as u64,
            blobs: self.blobs as u64,
        }
    }
}

/// A user's total and whether `?2` is among their blobs.
const USAGE_SQL: &str = "SELECT COALESCE(SUM(size), 0) AS bytes, COUNT(*) AS blobs, \
     COALESCE(SUM(digest = ?2), 0) AS mine FROM blob_usage WHERE did = ?1";

/// Charges `?1` for blob `?2` of `?3` bytes unless already charged for it,
/// only if the quota (`?5` bytes, `?6` blobs; 0 = no limit) still holds.
const CHARGE_SQL: &str = "INSERT INTO blob_usage (did, digest, size, created_at) \
     SELECT ?1, ?2, ?3, ?4 \
     WHERE NOT EXISTS (SELECT 1 FROM blob_usage WHERE did = ?1 AND digest = ?2) \
     AND (?5 = 0 OR ?3 + (SELECT COALESCE(SUM(size), 0) FROM blob_usage WHERE did = ?1) <= ?5) \
     AND (?6 = 0 OR (SELECT COUNT(*) FROM blob_usage WHERE did = ?1) < ?6)";

impl<'a> Ledger<'a> {
    /// The ledger of a hold with a quota; `None` when it has none.
    pub fn of(config: &'a HoldConfig) -> Option<Ledger<'a>> {
        if config.quota.is_unlimited() {
            return None;
        }
        config.usage_db.as_ref().map(|db| Ledger {
            db,
            quota: config.quota,
        })
    }

    /// What `did` stores now, and whether `digest` is among it.
    pub async fn usage(
        &self,
        did: &Did,
        digest: Option<&Digest>,
    ) -> Result<(Usage, bool), Failure> {
        let digest = digest.map(Digest::to_string).unwrap_or_default();
        let row: Option<UsageRow> = self
            .db
            .prepare(USAGE_SQL)
            .bind(&[did.as_str().into(), digest.into()])?
            .first(None)
            .await
            .map_err(d1_failed)?;
        Ok(row.map_or((Usage::default(), false), |r| (r.usage(), r.mine > 0.0)))
    }

    /// Whether `did` may start uploading `digest` (of `size`, when known):
    /// refuses early what completing would refuse. A digest they were
    /// charged for before is always welcome.
    pub async fn precheck(
        &self,
        did: &Did,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Result<(), QuotaExceeded>, Failure> {
        let (usage, mine) = self.usage(did, Some(digest)).await?;
        if mine {
            return Ok(Ok(()));
        }
        Ok(self.quota.admit(usage, size))
    }

    /// Charges `did` for `digest` of `size` bytes, atomically with the quota
    /// check, before the blob is published.
    pub async fn charge(
        &self,
        did: &Did,
        digest: &Digest,
        size: u64,
    ) -> Result<Result<Charge, QuotaExceeded>, Failure> {
        let digest_text = digest.to_string();
        let insert = self.db.prepare(CHARGE_SQL).bind(&[
            did.as_str().into(),
            digest_text.as_str().into(),
            number(size),
            number(Date::now().as_millis()),
            number(self.quota.max_bytes),
            number(self.quota.max_blobs),
        ])?;
        // In the same batch (one transaction): what the user stores right
        // after, to tell "charged before" from "over the quota".
        let after = self
            .db
            .prepare(USAGE_SQL)
            .bind(&[did.as_str().into(), digest_text.as_str().into()])?;
        let results = self
            .db
            .batch(vec![insert, after])
            .await
            .map_err(d1_failed)?;
        let inserted = results
            .first()
            .and_then(|r| r.meta().ok().flatten())
            .and_then(|m| m.changes)
            .unwrap_or(0);
        if inserted > 0 {
            return Ok(Ok(Charge::New));
        }
        let row = results
            .get(1)
            .map(|r| r.results::<UsageRow>())
            .transpose()
            .map_err(d1_failed)?
            .and_then(|rows| rows.into_iter().next());
        let (usage, mine) = row.map_or((Usage::default(), false), |r| (r.usage(), r.mine > 0.0));
        if mine {
            return Ok(Ok(Charge::Already));
        }
        match self.quota.admit(usage, Some(size)) {
            Err(exceeded) => Ok(Err(exceeded)),
            // The insert refused what the quota allows: cannot happen
            // within one transaction; say so rather than publish uncharged.
            Ok(()) => Err(Failure::new(
                HoldError::StorageError,
                format!("could not record the charge for {digest}; try again"),
            )),
        }
    }

    /// Undoes a charge this upload took (`Charge::New`) when publishing failed.
    pub async fn refund(&self, did: &Did, digest: &Digest) -> Result<(), Failure> {
        self.db
            .prepare("DELETE FROM blob_usage WHERE did = ?1 AND digest = ?2")
            .bind(&[did.as_str().into(), digest.to_string().into()])?
            .run()
            .await
            .map_err(d1_failed)?;
        Ok(())
    }
}

/// The blob is gone from the hold: nobody is charged for it any more.
pub async fn forget_blob(config: &HoldConfig, digest: &Digest) -> Result<(), Failure> {
    let Some(db) = &config.usage_db else {
        return Ok(());
    };
    db.prepare("DELETE FROM blob_usage WHERE digest = ?1")
        .bind(&[digest.to_string().into()])?
        .run()
        .await
        .map_err(d1_failed)?;
    Ok(())
}

/// The blobs are gone from the hold: nobody is charged for them any more
/// (one batch, so one round trip however many).
pub async fn forget_blobs(config: &HoldConfig, digests: &[Digest]) -> Result<(), Failure> {
    let (Some(db), false) = (&config.usage_db, digests.is_empty()) else {
        return Ok(());
    };
    let statements = digests
        .iter()
        .map(|d| {
            db.prepare("DELETE FROM blob_usage WHERE digest = ?1")
                .bind(&[d.to_string().into()])
        })
        .collect::<Result<Vec<_>, _>>()?;
    db.batch(statements).await.map_err(d1_failed)?;
    Ok(())
}

#[derive(Deserialize)]
struct UserRow {
    did: String,
}

/// Everyone the hold keeps usage for: users of a shared hold who may have
/// blobs here without being its owner or crew.
pub async fn users(config: &HoldConfig) -> Result<Vec<Did>, Failure> {
    let Some(db) = &config.usage_db else {
        return Ok(Vec::new());
    };
    let rows: Vec<UserRow> = db
        .prepare("SELECT DISTINCT did FROM blob_usage")
        .all()
        .await
        .map_err(d1_failed)?
        .results()
        .map_err(d1_failed)?;
    rows.into_iter()
        .map(|r| {
            r.did.parse().map_err(|e| {
                Failure::new(
                    HoldError::StorageError,
                    format!("the usage database names '{}', not a DID: {e}", r.did),
                )
            })
        })
        .collect()
}

/// The refusal a user sees, naming them by handle when their DID document
/// claims one (else by DID), the limit and their usage.
pub async fn refusal(config: &HoldConfig, did: &Did, exceeded: QuotaExceeded) -> Failure {
    let who = match resolve_did_cached(did, &config.plc_url).await {
        Ok(doc) => doc
            .handle()
            .map(|h| h.as_str().to_string())
            .unwrap_or_else(|| did.to_string()),
        Err(_) => did.to_string(),
    };
    Failure::new(HoldError::QuotaExceeded, exceeded.message(&who))
}

/// JavaScript numbers are exact up to 2^53: bytes up to 8 PiB.
fn number(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn d1_failed(e: worker::Error) -> Failure {
    Failure::new(
        HoldError::StorageError,
        format!(
            "the usage database ({}) failed: {e}",
            crate::config::USAGE_BINDING
        ),
    )
}
