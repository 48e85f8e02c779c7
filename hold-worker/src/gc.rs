//! Garbage: the scheduled sweep of abandoned uploads, and the owner's
//! collection of blobs no manifest record names. What goes is decided in
//! `atcr_protocol::gc`; this lists storage, reads records and deletes.
//!
//! Work per run is bounded: a Worker invocation has a subrequest budget
//! (50 on Free, 1000 on Paid), and every listing page, PDS page and deletion
//! spends one. The sweep deletes at most [`SWEEP_MAX_DELETES`] per run (it
//! runs again on the next schedule); a collection removes at most its
//! `limit` and answers `truncated` when more remain.

use crate::access::{require_owner, Policy};
use crate::auth::Caller;
use crate::config::HoldConfig;
use crate::failure::Failure;
use crate::storage::{BlobStore, StorageError};
use crate::usage;
use atcr_protocol::gc::{self, ListedObject};
use atcr_protocol::hold_api::{
    CollectGarbageInput, GarbageCollected, HoldError, GC_DEFAULT_LIMIT, GC_MAX_LIMIT,
};
use atcr_protocol::paths::KeyLayout;
use atcr_protocol::{collections, Did, Digest};
use std::collections::HashSet;
use worker::Date;
use worker_support::{list_records_page, resolve_did_cached};

/// Deletions per sweep run.
pub const SWEEP_MAX_DELETES: usize = 200;
/// Pages of a listing read in one run (1000 objects each).
const MAX_LIST_PAGES: usize = 20;
/// Pages of one user's manifest records read in one collection (100 each).
const MAX_RECORD_PAGES: usize = 50;

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    pub staged_deleted: usize,
    pub staged_left: usize,
    /// `None`: this store cannot list incomplete multipart uploads.
    pub multipart_aborted: Option<usize>,
}

/// Deletes staged uploads older than a day, and aborts multipart uploads
/// older than a day where the store can list them.
pub async fn sweep(
    keys: &KeyLayout,
    store: &impl BlobStore,
    now_ms: u64,
) -> Result<Swept, StorageError> {
    let staged = list_all(store, &keys.uploads_prefix()).await?;
    let stale = gc::stale_staging(keys, &staged, now_ms, gc::STAGING_MAX_AGE_SECS);
    let mut swept = Swept {
        staged_left: stale.len().saturating_sub(SWEEP_MAX_DELETES),
        ..Swept::default()
    };
    for key in stale.iter().take(SWEEP_MAX_DELETES) {
        store.delete(key).await?;
        swept.staged_deleted += 1;
    }
    let budget = SWEEP_MAX_DELETES - swept.staged_deleted;
    if let Some(uploads) = store.list_multipart(&keys.uploads_prefix()).await? {
        let old = uploads
            .iter()
            .filter(|u| now_ms.saturating_sub(u.initiated_ms) > gc::STAGING_MAX_AGE_SECS * 1000);
        let mut aborted = 0;
        for upload in old.take(budget) {
            match store.abort_multipart(&upload.key, &upload.upload_id).await {
                Ok(()) | Err(StorageError::NotFound) => aborted += 1,
                Err(e) => return Err(e),
            }
        }
        swept.multipart_aborted = Some(aborted);
    }
    Ok(swept)
}

/// Every object under `prefix`, up to [`MAX_LIST_PAGES`] pages; more is an
/// error rather than a partial answer.
async fn list_all(store: &impl BlobStore, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
    let mut objects = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let page = store.list(prefix, cursor.as_deref()).await?;
        objects.extend(page.objects);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(objects),
        }
    }
    Err(StorageError::Failed(format!(
        "more than {} objects under {prefix}: too many to list in one run",
        MAX_LIST_PAGES * 1000
    )))
}

/// `collectGarbage`: removes (or with `dryRun` lists) the blobs no
/// `io.atcr.manifest` record of the hold's users names, past the grace
/// period. Refuses to remove anything when any user's records cannot be read.
pub async fn collect(
    input: CollectGarbageInput,
    config: &HoldConfig,
    caller: &Caller,
    store: &impl BlobStore,
) -> Result<GarbageCollected, Failure> {
    require_owner(config, caller)?;
    let grace_seconds = input.grace_seconds.unwrap_or(gc::DEFAULT_GRACE_SECS);
    let limit = input.limit.unwrap_or(GC_DEFAULT_LIMIT).min(GC_MAX_LIMIT) as usize;

    // Listed before the records are read: a blob published after the
    // listing is not considered at all.
    let blobs = list_all(store, &config.keys.blobs_prefix()).await?;
    let users = users(config).await?;
    let mut referenced = HashSet::new();
    let mut records = 0;
    for did in &users {
        for record in manifest_records(config, did).await? {
            gc::record_digests(&record, &mut referenced);
            records += 1;
        }
    }

    let now_ms = Date::now().as_millis();
    let plan = gc::plan(&config.keys, &blobs, &referenced, now_ms, grace_seconds);
    let truncated = plan.garbage.len() > limit;
    let mut removed: Vec<gc::Garbage> = plan.garbage.into_iter().take(limit).collect();
    if !input.dry_run {
        let mut gone: Vec<Digest> = Vec::new();
        let mut failure = None;
        for garbage in &removed {
            match store.delete(&garbage.key).await {
                Ok(()) => gone.push(garbage.digest.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        usage::forget_blobs(config, &gone).await?;
        if let Some(e) = failure {
            return Err(Failure::new(
                HoldError::StorageError,
                format!(
                    "removed {} of {} unreferenced blobs, then storage failed: {e}",
                    gone.len(),
                    removed.len()
                ),
            ));
        }
        removed.truncate(gone.len());
    }
    Ok(GarbageCollected {
        dry_run: input.dry_run,
        grace_seconds,
        users: users.iter().map(|d| d.to_string()).collect(),
        records,
        referenced_digests: referenced.len() as u64,
        removed_bytes: removed.iter().map(|g| g.size).sum(),
        removed,
        kept: plan.kept,
        truncated,
    })
}

/// Whose records may name this hold's blobs: the owner, every crew member
/// (read afresh) and everyone the hold keeps usage for.
async fn users(config: &HoldConfig) -> Result<Vec<Did>, Failure> {
    let policy = Policy::fresh(config).await?;
    let mut users = vec![config.owner.clone()];
    let others = policy
        .crew_members()
        .cloned()
        .chain(usage::users(config).await?);
    for did in others {
        if !users.contains(&did) {
            users.push(did);
        }
    }
    Ok(users)
}

/// Every `io.atcr.manifest` record of `did`, from their PDS, whatever hold
/// each names (a digest named anywhere is kept). Any failure is an error
/// naming the PDS: never collect on partial knowledge.
async fn manifest_records(
    config: &HoldConfig,
    did: &Did,
) -> Result<Vec<serde_json::Value>, Failure> {
    let refuse = |why: String| {
        Failure::new(
            HoldError::StorageError,
            format!(
                "cannot read the io.atcr.manifest records of {did}: {why}; nothing was removed"
            ),
        )
    };
    let doc = resolve_did_cached(did, &config.plc_url)
        .await
        .map_err(|e| refuse(format!("its DID does not resolve ({e})")))?;
    let pds = doc
        .pds_endpoint()
        .ok_or_else(|| refuse("its DID document names no PDS".into()))?
        .trim_end_matches('/')
        .to_string();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_RECORD_PAGES {
        let (records, next) =
            list_records_page(&pds, did, collections::MANIFEST, cursor.as_deref())
                .await
                .map_err(|e| refuse(format!("its PDS could not be read ({e})")))?;
        out.extend(records.into_iter().map(|mut r| r["value"].take()));
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
    Err(refuse(format!(
        "more than {} records: too many to read in one request",
        MAX_RECORD_PAGES * 100
    )))
}
