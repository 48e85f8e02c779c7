//! Changes applied to the index, through the same `index` statements the
//! registry writes with: one Jetstream event, or many at once (a burst of
//! events, a backfill's page) in one D1 batch.

use crate::atproto::resolve::{resolve_owner, Identity, ResolveError};
use crate::config::{AppConfig, DB_BINDING};
use crate::index::{self, Author, Starrer, StoredManifest};
use atcr_protocol::jetstream::{Change, HoldEntry};
use atcr_protocol::reference::Owner;
use atcr_protocol::Did;
use worker::{D1Database, D1PreparedStatement, Env};

/// Applies `changes` (each made by its DID) in one D1 batch; if the batch
/// fails, one by one, so one bad change does not hold back the rest. Each
/// answer is `Ok`, or why that change was not applied (counted as skipped).
pub async fn apply_all(
    env: &Env,
    config: &AppConfig,
    changes: &[(&Did, &Change)],
) -> Vec<Result<(), String>> {
    let db = match env.d1(DB_BINDING) {
        Ok(db) => db,
        Err(e) => return changes.iter().map(|_| Err(e.to_string())).collect(),
    };
    let mut planned = Vec::with_capacity(changes.len());
    for (did, change) in changes {
        planned.push(statements(&db, config, did, change).await);
    }
    let batch: Vec<D1PreparedStatement> = planned
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    if batch.is_empty() || db.batch(batch).await.is_ok() {
        return planned.into_iter().map(|p| p.map(|_| ())).collect();
    }
    let mut outcomes = Vec::with_capacity(planned.len());
    for (planned, (did, _)) in planned.into_iter().zip(changes) {
        outcomes.push(match planned {
            Ok(statements) if statements.is_empty() => Ok(()),
            Ok(statements) => db
                .batch(statements)
                .await
                .map(|_| ())
                .map_err(|e| format!("not applied ({did}): {e}")),
            Err(why) => Err(why),
        });
    }
    outcomes
}

/// The statements that apply `change`, made by `did`; `Err` says why it
/// cannot be (counted as skipped).
async fn statements(
    db: &D1Database,
    config: &AppConfig,
    did: &Did,
    change: &Change,
) -> Result<Vec<D1PreparedStatement>, String> {
    let failed = |e: worker::Error| format!("not applied ({did}): {e}");
    let now = index::now_ms();
    match change {
        Change::Manifest(m) => {
            let who = identity(did, config).await?;
            let handle = who.doc.handle().map(|h| h.to_string());
            let stored = StoredManifest {
                repository: &m.repository,
                digest: &m.digest,
                media_type: &m.media_type,
                artifact_type: m.artifact_type.as_deref(),
                subject: m.subject.as_ref(),
                size: m.size,
                hold: m.hold.as_deref(),
                record_uri: &m.record_uri,
                platforms: m.platforms.clone(),
                description: m.description.as_deref(),
                pushed_at: m.changed_at as f64,
            };
            index::manifest_statements(db, did, &who.pds, handle.as_deref(), &stored, now)
                .map_err(failed)
        }
        Change::ManifestDeleted { record_uri } => {
            index::manifest_record_deleted_statements(db, did, record_uri).map_err(failed)
        }
        Change::Tag(t) => match &t.digest {
            Some(digest) => {
                let at = t.changed_at as f64;
                index::tag_statement(db, did, &t.repository, &t.tag, digest, &t.record_uri, at)
            }
            None => index::tag_of_record_statement(
                db,
                did,
                &t.repository,
                &t.tag,
                &t.manifest_uri,
                &t.record_uri,
                t.changed_at as f64,
            ),
        }
        .map(|s| vec![s])
        .map_err(failed),
        Change::TagDeleted { record_uri } => {
            index::tag_record_deleted_statement(db, did, record_uri)
                .map(|s| vec![s])
                .map_err(failed)
        }
        Change::Star(s) => {
            let who = identity(did, config).await?;
            let handle = who
                .doc
                .handle()
                .map_or_else(|| did.to_string(), |h| h.to_string());
            let starrer = Starrer {
                did,
                handle: &handle,
                pds: &who.pds,
            };
            index::star_statements(
                db,
                &starrer,
                s.owner.as_str(),
                &s.repository,
                &s.record_uri,
                now,
            )
            .map_err(failed)
        }
        Change::StarDeleted { record_uri } => {
            index::star_record_removed_statement(db, did, record_uri)
                .map(|s| vec![s])
                .map_err(failed)
        }
        Change::Page {
            repository,
            description,
        } => index::description_statement(db, did, repository, description.as_deref())
            .map(|s| vec![s])
            .map_err(failed),
        Change::PageDeleted { repository } => {
            index::description_statement(db, did, repository, None)
                .map(|s| vec![s])
                .map_err(failed)
        }
        Change::Profile(_) | Change::Hold(_) | Change::Crew(_) => {
            if let Change::Hold(hold) = change {
                hold_confirms_owner(hold, did, config).await?;
            }
            let who = identity(did, config).await?;
            let handle = who.doc.handle().map(|h| h.to_string());
            let author = Author {
                did,
                handle: handle.as_deref(),
                pds: &who.pds,
            };
            index::profile_or_hold_statements(db, &author, change, now).map_err(failed)
        }
        Change::ProfileDeleted => index::profile_deleted_statement(db, did)
            .map(|s| vec![s])
            .map_err(failed),
        Change::HoldDeleted { record_uri } => {
            index::hold_record_deleted_statement(db, did, record_uri)
                .map(|s| vec![s])
                .map_err(failed)
        }
        Change::CrewDeleted { record_uri } => {
            index::crew_record_deleted_statement(db, did, record_uri)
                .map(|s| vec![s])
                .map_err(failed)
        }
        Change::Identity => {
            // Jetstream sends every account's identity events; most are
            // not ours.
            if !index::user_known(db, did).await.map_err(failed)? {
                return Ok(vec![]);
            }
            // Afresh: the caches hold the document from before the change.
            let doc = worker_support::resolve_did_again(did, &config.plc_url)
                .await
                .map_err(|e| format!("{did} could not be resolved: {e}"))?;
            let Some(pds) = doc.pds_endpoint() else {
                return Err(format!("{did} names no PDS"));
            };
            let handle = doc.handle().map(|h| h.to_string());
            index::identity_statement(db, did, handle.as_deref(), pds)
                .map(|s| vec![s])
                .map_err(failed)
        }
        Change::Account { active } => index::account_statement(db, did, *active)
            .map(|s| vec![s])
            .map_err(failed),
        Change::Ignored => Ok(vec![]),
    }
}

/// The author's DID document and PDS (the users row needs both).
async fn identity(did: &Did, config: &AppConfig) -> Result<Identity, String> {
    resolve_owner(&Owner::Did(did.clone()), config)
        .await
        .map_err(|e| match e {
            ResolveError::Unknown(m) => format!("{did} does not resolve: {m}"),
            ResolveError::Unavailable(m) => format!("{did} could not be resolved: {m}"),
        })
}

/// A hold record claims that `did` runs the hold: it is indexed (and listed
/// on `/holds`) only when the hold itself names `did` as its owner, as the
/// settings page checks before it writes one.
async fn hold_confirms_owner(
    hold: &HoldEntry,
    did: &Did,
    config: &AppConfig,
) -> Result<(), String> {
    let facts = crate::holds::check_hold(&hold.hold, config)
        .await
        .map_err(|e| {
            format!(
                "{} not indexed: the hold could not be checked: {e}",
                hold.record_uri
            )
        })?;
    match facts.owner {
        Some(owner) if &owner == did => Ok(()),
        owner => Err(format!(
            "{} not indexed: the hold {} names {} as its owner, not {did}",
            hold.record_uri,
            hold.hold,
            owner.map_or("nobody".to_string(), |o| o.to_string())
        )),
    }
}
