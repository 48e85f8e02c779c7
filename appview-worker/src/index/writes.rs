//! Writing the index: what the registry records as it stores, deletes and
//! serves manifests, and what the Jetstream consumer sees written elsewhere.

use crate::config::DB_BINDING;
use atcr_protocol::{Did, Digest};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Date, Env, Result};

pub fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

/// D1 refuses `undefined`, which is what `None` becomes: bind SQL NULL.
fn nullable(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from)
}

/// The statement that records a user as last seen: their handle and PDS.
pub(super) fn user_seen(
    db: &D1Database,
    did: &str,
    handle: Option<&str>,
    pds: &str,
    now: f64,
) -> Result<D1PreparedStatement> {
    db.prepare(
        "INSERT INTO users (did, handle, pds_endpoint, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (did) DO UPDATE SET handle = excluded.handle, pds_endpoint = excluded.pds_endpoint, updated_at = excluded.updated_at",
    )
    .bind(&[did.into(), nullable(handle), pds.into(), now.into()])
}

/// Records a stored manifest (and its owner and repository).
pub async fn manifest_stored(
    env: &Env,
    owner: &Did,
    pds: &str,
    handle: Option<&str>,
    m: &StoredManifest<'_>,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    db.batch(manifest_statements(&db, owner, pds, handle, m, now_ms())?)
        .await?;
    Ok(())
}

/// The statements that record a stored manifest (and its owner and repository).
pub fn manifest_statements(
    db: &D1Database,
    owner: &Did,
    pds: &str,
    handle: Option<&str>,
    m: &StoredManifest<'_>,
    now: f64,
) -> Result<Vec<D1PreparedStatement>> {
    Ok(vec![
        user_seen(db, owner.as_str(), handle, pds, now)?,
        // The newest image's description describes the repository (search
        // finds it). Times are the pushes' own, so a record read late (a
        // backfill, a replay) moves neither end back nor forward.
        db.prepare(
            "INSERT INTO repositories (owner_did, name, description, created_at, updated_at) VALUES (?1, ?2, ?4, ?3, ?3)
             ON CONFLICT (owner_did, name) DO UPDATE SET
               created_at = MIN(repositories.created_at, excluded.created_at),
               updated_at = MAX(repositories.updated_at, excluded.updated_at),
               description = COALESCE(excluded.description, repositories.description)",
        )
        .bind(&[owner.as_str().into(), m.repository.into(), m.pushed_at.into(), nullable(m.description)])?,
        db.prepare(
            "INSERT INTO manifests (owner_did, repository, digest, media_type, artifact_type, subject, size, hold_did, record_uri, platforms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (owner_did, repository, digest) DO UPDATE SET record_uri = excluded.record_uri, hold_did = excluded.hold_did",
        )
        .bind(&[
            owner.as_str().into(),
            m.repository.into(),
            m.digest.as_str().into(),
            m.media_type.into(),
            nullable(m.artifact_type),
            nullable(m.subject.map(|d| d.as_str())),
            (m.size as f64).into(),
            nullable(m.hold),
            m.record_uri.into(),
            nullable(m.platforms.as_deref()),
            m.pushed_at.into(),
        ])?,
    ])
}

pub struct StoredManifest<'a> {
    pub repository: &'a str,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    pub size: u64,
    /// The hold that stores its blobs (`holdDid`; optional in the lexicon).
    pub hold: Option<&'a str>,
    pub record_uri: &'a str,
    pub platforms: Option<String>,
    /// The `org.opencontainers.image.description` annotation, if any.
    pub description: Option<&'a str>,
    /// Unix ms of the push: now for this appview's own, the record's
    /// `createdAt` (or `updatedAt`) for one read from the network.
    pub pushed_at: f64,
}

pub async fn tag_stored(
    env: &Env,
    owner: &Did,
    repository: &str,
    tag: &str,
    digest: &Digest,
    record_uri: &str,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    tag_statement(&db, owner, repository, tag, digest, record_uri, now_ms())?
        .run()
        .await?;
    Ok(())
}

/// The statement that records a tag naming `digest`.
pub fn tag_statement(
    db: &D1Database,
    owner: &Did,
    repository: &str,
    tag: &str,
    digest: &Digest,
    record_uri: &str,
    now: f64,
) -> Result<D1PreparedStatement> {
    db.prepare(
        "INSERT INTO tags (owner_did, repository, tag, digest, record_uri, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (owner_did, repository, tag) DO UPDATE SET digest = excluded.digest, record_uri = excluded.record_uri, updated_at = excluded.updated_at",
    )
    .bind(&[owner.as_str().into(), repository.into(), tag.into(), digest.as_str().into(), record_uri.into(), now.into()])
}

/// The statement that records a tag naming the manifest whose record is
/// `manifest_uri` (a record keyed by TID does not name its digest): the
/// digest comes from the index's row for that record, in the same
/// statement, so a manifest earlier in the same batch is found. No row, no
/// tag.
pub fn tag_of_record_statement(
    db: &D1Database,
    owner: &Did,
    repository: &str,
    tag: &str,
    manifest_uri: &str,
    record_uri: &str,
    now: f64,
) -> Result<D1PreparedStatement> {
    db.prepare(
        "INSERT INTO tags (owner_did, repository, tag, digest, record_uri, updated_at)
         SELECT ?1, ?2, ?3, digest, ?5, ?6 FROM manifests WHERE owner_did = ?1 AND record_uri = ?4 LIMIT 1
         ON CONFLICT (owner_did, repository, tag) DO UPDATE SET digest = excluded.digest, record_uri = excluded.record_uri, updated_at = excluded.updated_at",
    )
    .bind(&[owner.as_str().into(), repository.into(), tag.into(), manifest_uri.into(), record_uri.into(), now.into()])
}

/// The statements that forget the manifest whose record is `record_uri`,
/// and the tags naming it.
pub fn manifest_record_deleted_statements(
    db: &D1Database,
    owner: &Did,
    record_uri: &str,
) -> Result<Vec<D1PreparedStatement>> {
    let args = [owner.as_str().into(), record_uri.into()];
    Ok(vec![
        db.prepare(
            "DELETE FROM tags WHERE owner_did = ?1 AND (repository, digest) IN
               (SELECT repository, digest FROM manifests WHERE owner_did = ?1 AND record_uri = ?2)",
        )
        .bind(&args)?,
        db.prepare("DELETE FROM manifests WHERE owner_did = ?1 AND record_uri = ?2")
            .bind(&args)?,
    ])
}

/// The record URI of a manifest, if this appview has seen it.
pub async fn manifest_record(
    env: &Env,
    owner: &Did,
    repository: &str,
    digest: &Digest,
) -> Result<Option<String>> {
    let row: Option<serde_json::Value> = env
        .d1(DB_BINDING)?
        .prepare("SELECT record_uri FROM manifests WHERE owner_did = ?1 AND repository = ?2 AND digest = ?3")
        .bind(&[owner.as_str().into(), repository.into(), digest.as_str().into()])?
        .first(None)
        .await?;
    Ok(row.and_then(|r| r["record_uri"].as_str().map(str::to_string)))
}

pub async fn tag_deleted(env: &Env, owner: &Did, repository: &str, tag: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("DELETE FROM tags WHERE owner_did = ?1 AND repository = ?2 AND tag = ?3")
        .bind(&[owner.as_str().into(), repository.into(), tag.into()])?
        .run()
        .await?;
    Ok(())
}

/// Forgets a manifest and the tags that named it.
pub async fn manifest_deleted(
    env: &Env,
    owner: &Did,
    repository: &str,
    digest: &Digest,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    let args = [
        owner.as_str().into(),
        repository.into(),
        digest.as_str().into(),
    ];
    db.batch(vec![
        db.prepare("DELETE FROM tags WHERE owner_did = ?1 AND repository = ?2 AND digest = ?3")
            .bind(&args)?,
        db.prepare(
            "DELETE FROM manifests WHERE owner_did = ?1 AND repository = ?2 AND digest = ?3",
        )
        .bind(&args)?,
    ])
    .await?;
    Ok(())
}

/// The owner's `io.atcr.repo.page` description of a repository changed
/// (search reads it); `None`: the page was deleted.
pub async fn description_changed(
    env: &Env,
    owner: &Did,
    repository: &str,
    description: Option<&str>,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    description_statement(&db, owner, repository, description)?
        .run()
        .await?;
    Ok(())
}

/// The statement that sets a repository's description (`None`: clears it).
pub fn description_statement(
    db: &D1Database,
    owner: &Did,
    repository: &str,
    description: Option<&str>,
) -> Result<D1PreparedStatement> {
    db.prepare("UPDATE repositories SET description = ?3 WHERE owner_did = ?1 AND name = ?2")
        .bind(&[
            owner.as_str().into(),
            repository.into(),
            nullable(description),
        ])
}

/// The tag whose record is `record_uri` was deleted from its owner's PDS.
pub fn tag_record_deleted_statement(
    db: &D1Database,
    owner: &Did,
    record_uri: &str,
) -> Result<D1PreparedStatement> {
    db.prepare("DELETE FROM tags WHERE owner_did = ?1 AND record_uri = ?2")
        .bind(&[owner.as_str().into(), record_uri.into()])
}

/// A user's identity changed: their handle (search follows it) and PDS, if
/// the index knows them.
pub fn identity_statement(
    db: &D1Database,
    did: &Did,
    handle: Option<&str>,
    pds: &str,
) -> Result<D1PreparedStatement> {
    db.prepare("UPDATE users SET handle = ?2, pds_endpoint = ?3, updated_at = ?4 WHERE did = ?1")
        .bind(&[
            did.as_str().into(),
            nullable(handle),
            pds.into(),
            now_ms().into(),
        ])
}

/// Whether the index has a row for `did` (identity events arrive for every
/// account on the network; only known ones are worth resolving).
pub async fn user_known(db: &D1Database, did: &Did) -> Result<bool> {
    let found: Option<f64> = db
        .prepare("SELECT 1 AS found FROM users WHERE did = ?1")
        .bind(&[did.as_str().into()])?
        .first(Some("found"))
        .await?;
    Ok(found.is_some())
}

/// The statement that hides a user whose account was deactivated
/// (`active` false) from the pages, search and the catalog, or shows them
/// again.
pub fn account_statement(db: &D1Database, did: &Did, active: bool) -> Result<D1PreparedStatement> {
    db.prepare("UPDATE users SET deactivated = ?2, updated_at = ?3 WHERE did = ?1")
        .bind(&[
            did.as_str().into(),
            (if active { 0.0 } else { 1.0 }).into(),
            now_ms().into(),
        ])
}
