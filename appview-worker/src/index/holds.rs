//! Profiles, holds and crew in the index (`profiles`, `holds`, `crew`: the
//! `io.atcr.sailor.profile`, `io.atcr.hold` and `io.atcr.hold.crew`
//! records in users' PDSs), written as the appview writes those records and
//! as the network's arrive, and read for the user pages and `/holds`.

use super::writes::{now_ms, user_seen};
use crate::config::DB_BINDING;
use atcr_protocol::jetstream::{record_change, Change, CrewEntry, HoldEntry, ProfileEntry};
use atcr_protocol::Did;
use serde::Deserialize;
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env, Error, Result};

/// The account whose repository holds a record, as the users table keeps
/// it (the pages name owners by handle).
pub struct Author<'a> {
    pub did: &'a Did,
    pub handle: Option<&'a str>,
    pub pds: &'a str,
}

fn author_seen(db: &D1Database, author: &Author<'_>, now: f64) -> Result<D1PreparedStatement> {
    user_seen(db, author.did.as_str(), author.handle, author.pds, now)
}

/// The statements that record the author's profile (their default hold).
fn profile_statements(
    db: &D1Database,
    author: &Author<'_>,
    profile: &ProfileEntry,
    now: f64,
) -> Result<Vec<D1PreparedStatement>> {
    let hold = profile
        .default_hold
        .as_ref()
        .map_or(JsValue::NULL, |d| d.as_str().into());
    Ok(vec![
        author_seen(db, author, now)?,
        db.prepare(
            "INSERT INTO profiles (did, default_hold, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (did) DO UPDATE SET default_hold = excluded.default_hold, updated_at = excluded.updated_at",
        )
        .bind(&[author.did.as_str().into(), hold, (profile.updated_at as f64).into()])?,
    ])
}

/// The user's profile was deleted: their pushes go to the appview's default.
pub fn profile_deleted_statement(db: &D1Database, did: &Did) -> Result<D1PreparedStatement> {
    db.prepare("DELETE FROM profiles WHERE did = ?1")
        .bind(&[did.as_str().into()])
}

/// The statements that record a hold the author runs.
fn hold_statements(
    db: &D1Database,
    author: &Author<'_>,
    hold: &HoldEntry,
    now: f64,
) -> Result<Vec<D1PreparedStatement>> {
    Ok(vec![
        author_seen(db, author, now)?,
        db.prepare(
            "INSERT INTO holds (record_uri, owner_did, hold_did, endpoint, public, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (record_uri) DO UPDATE SET hold_did = excluded.hold_did, endpoint = excluded.endpoint,
               public = excluded.public, created_at = excluded.created_at",
        )
        .bind(&[
            hold.record_uri.as_str().into(),
            author.did.as_str().into(),
            hold.hold.as_str().into(),
            hold.endpoint.as_str().into(),
            (if hold.public { 1.0 } else { 0.0 }).into(),
            (hold.created_at as f64).into(),
        ])?,
    ])
}

/// The hold record at `record_uri` was deleted from its owner's PDS.
pub fn hold_record_deleted_statement(
    db: &D1Database,
    owner: &Did,
    record_uri: &str,
) -> Result<D1PreparedStatement> {
    db.prepare("DELETE FROM holds WHERE owner_did = ?1 AND record_uri = ?2")
        .bind(&[owner.as_str().into(), record_uri.into()])
}

/// The statements that record a member of the author's crew.
fn crew_statements(
    db: &D1Database,
    author: &Author<'_>,
    crew: &CrewEntry,
    now: f64,
) -> Result<Vec<D1PreparedStatement>> {
    let permissions = Value::from(crew.permissions.clone()).to_string();
    let role = crew.role.as_deref().map_or(JsValue::NULL, JsValue::from);
    Ok(vec![
        author_seen(db, author, now)?,
        db.prepare(
            "INSERT INTO crew (record_uri, owner_did, member_did, role, permissions, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (record_uri) DO UPDATE SET member_did = excluded.member_did, role = excluded.role,
               permissions = excluded.permissions, added_at = excluded.added_at",
        )
        .bind(&[
            crew.record_uri.as_str().into(),
            author.did.as_str().into(),
            crew.member.as_str().into(),
            role,
            permissions.into(),
            (crew.added_at as f64).into(),
        ])?,
    ])
}

/// The crew record at `record_uri` was deleted from its owner's PDS.
pub fn crew_record_deleted_statement(
    db: &D1Database,
    owner: &Did,
    record_uri: &str,
) -> Result<D1PreparedStatement> {
    db.prepare("DELETE FROM crew WHERE owner_did = ?1 AND record_uri = ?2")
        .bind(&[owner.as_str().into(), record_uri.into()])
}

/// The statements that record a profile, hold or crew record written by
/// `author` (any other change: none).
pub fn profile_or_hold_statements(
    db: &D1Database,
    author: &Author<'_>,
    change: &Change,
    now: f64,
) -> Result<Vec<D1PreparedStatement>> {
    match change {
        Change::Profile(profile) => profile_statements(db, author, profile, now),
        Change::Hold(hold) => hold_statements(db, author, hold, now),
        Change::Crew(crew) => crew_statements(db, author, crew, now),
        _ => Ok(vec![]),
    }
}

/// A profile, hold or crew record the appview itself just wrote to the
/// author's PDS, written through: read as its Jetstream event will be
/// (`record_change`), so the row is the one the event leaves.
pub async fn record_written(
    env: &Env,
    author: &Author<'_>,
    collection: &str,
    rkey: &str,
    record: &Value,
) -> Result<()> {
    let change = record_change(author.did, collection, rkey, Some(record))
        .map_err(|skip| Error::RustError(skip.to_string()))?;
    let db = env.d1(DB_BINDING)?;
    let statements = profile_or_hold_statements(&db, author, &change, now_ms())?;
    if !statements.is_empty() {
        db.batch(statements).await?;
    }
    Ok(())
}

/// The crew record at `record_uri`, which the appview just deleted from
/// its owner's PDS, leaves the index too.
pub async fn crew_record_deleted(env: &Env, owner: &Did, record_uri: &str) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    crew_record_deleted_statement(&db, owner, record_uri)?
        .run()
        .await?;
    Ok(())
}

/// A hold as the pages list it.
#[derive(Debug, Deserialize)]
pub struct HoldRow {
    pub hold_did: String,
    pub endpoint: String,
    /// 1: anyone may pull.
    pub public: f64,
    pub created_at: f64,
    pub owner_handle: String,
    /// Distinct members of its owner's crew.
    pub crew: f64,
}

/// Holds of users the pages show (not deactivated), one row per owner and
/// hold (its newest record, should an owner have written several).
const HOLDS: &str = "FROM holds h JOIN users u ON u.did = h.owner_did
     WHERE u.handle IS NOT NULL AND u.deactivated = 0";

const HOLD_COLUMNS: &str =
    "SELECT h.hold_did AS hold_did, h.endpoint AS endpoint, h.public AS public,
       MAX(h.created_at) AS created_at, u.handle AS owner_handle,
       (SELECT COUNT(DISTINCT c.member_did) FROM crew c WHERE c.owner_did = h.owner_did) AS crew";

/// The holds run by the user known here by `handle`, by endpoint.
pub async fn holds_run_by(env: &Env, handle: &str) -> Result<Vec<HoldRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{HOLD_COLUMNS} {HOLDS} AND u.handle = ?1
             GROUP BY h.owner_did, h.hold_did ORDER BY h.endpoint"
        ))
        .bind(&[handle.into()])?
        .all()
        .await?
        .results()
}

/// One page of every hold known here, public ones first, then by owner
/// and endpoint; and how many there are.
pub async fn known_holds(env: &Env, limit: u32, offset: u32) -> Result<(Vec<HoldRow>, u32)> {
    let db = env.d1(DB_BINDING)?;
    let answers = db
        .batch(vec![
            db.prepare(format!(
                "{HOLD_COLUMNS} {HOLDS} GROUP BY h.owner_did, h.hold_did
                 ORDER BY h.public DESC, u.handle, h.endpoint LIMIT ?1 OFFSET ?2"
            ))
            .bind(&[limit.into(), offset.into()])?,
            db.prepare(format!(
                "SELECT COUNT(*) AS total FROM (SELECT 1 {HOLDS} GROUP BY h.owner_did, h.hold_did)"
            )),
        ])
        .await?;
    #[derive(Deserialize)]
    struct Total {
        total: f64,
    }
    let rows = answers[0].results()?;
    let total = answers[1]
        .results::<Total>()?
        .first()
        .map_or(0, |t| t.total as u32);
    Ok((rows, total))
}

/// The hold named in the profile of the user known here by `handle`, if
/// the index has their profile and it names one.
pub async fn default_hold_of(env: &Env, handle: &str) -> Result<Option<String>> {
    env.d1(DB_BINDING)?
        .prepare(
            "SELECT p.default_hold AS default_hold FROM profiles p JOIN users u ON u.did = p.did
             WHERE u.handle = ?1 AND u.deactivated = 0 ORDER BY u.updated_at DESC LIMIT 1",
        )
        .bind(&[handle.into()])?
        .first(Some("default_hold"))
        .await
}
