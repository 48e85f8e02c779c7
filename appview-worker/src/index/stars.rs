//! Stars in the index: who starred which repository (the records live in
//! the starrers' PDSs), counted for the pages.

use super::writes::user_seen;
use crate::config::DB_BINDING;
use atcr_protocol::Did;
use worker::{D1Database, D1PreparedStatement, Date, Env, Result};

/// The starrer as the pages name them.
pub struct Starrer<'a> {
    pub did: &'a Did,
    pub handle: &'a str,
    pub pds: &'a str,
}

/// Records `starrer`'s star (its record at `record_uri`) on `owner`'s
/// `repository`, and the starrer among the users, so their page lists it.
pub async fn star_added(
    env: &Env,
    starrer: &Starrer<'_>,
    owner: &str,
    repository: &str,
    record_uri: &str,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    let now = Date::now().as_millis() as f64;
    db.batch(star_statements(
        &db, starrer, owner, repository, record_uri, now,
    )?)
    .await?;
    Ok(())
}

/// The statements that record a star and its starrer.
pub fn star_statements(
    db: &D1Database,
    starrer: &Starrer<'_>,
    owner: &str,
    repository: &str,
    record_uri: &str,
    now: f64,
) -> Result<Vec<D1PreparedStatement>> {
    Ok(vec![
        user_seen(db, starrer.did.as_str(), Some(starrer.handle), starrer.pds, now)?,
        db.prepare(
            "INSERT INTO stars (starrer_did, owner_did, repository, record_uri, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (starrer_did, owner_did, repository) DO UPDATE SET record_uri = excluded.record_uri",
        )
        .bind(&[starrer.did.as_str().into(), owner.into(), repository.into(), record_uri.into(), now.into()])?,
    ])
}

pub async fn star_removed(env: &Env, starrer: &Did, owner: &str, repository: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("DELETE FROM stars WHERE starrer_did = ?1 AND owner_did = ?2 AND repository = ?3")
        .bind(&[starrer.as_str().into(), owner.into(), repository.into()])?
        .run()
        .await?;
    Ok(())
}

/// The star whose record is `record_uri` was deleted from its starrer's PDS.
pub fn star_record_removed_statement(
    db: &D1Database,
    starrer: &Did,
    record_uri: &str,
) -> Result<D1PreparedStatement> {
    db.prepare("DELETE FROM stars WHERE starrer_did = ?1 AND record_uri = ?2")
        .bind(&[starrer.as_str().into(), record_uri.into()])
}

/// Whether the browser whose session cookie hashes to `session_hash` is
/// signed in as one who starred the repository: asked alongside the rest of
/// the page, before the page knows who is looking.
pub async fn starred_by_session(
    env: &Env,
    owner: &str,
    repository: &str,
    session_hash: &str,
) -> Result<bool> {
    let found: Option<f64> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT 1 AS found FROM stars s JOIN web_sessions w ON w.did = s.starrer_did
             WHERE w.id_hash = ?3 AND s.owner_did = ?1 AND s.repository = ?2",
        )
        .bind(&[owner.into(), repository.into(), session_hash.into()])?
        .first(Some("found"))
        .await?;
    Ok(found.is_some())
}
