//! Where each backfill walk stands (`backfill_hosts`: a PDS's accounts
//! being listed; `backfill_repos`: an account's records being read), saved
//! after every page so a walk cut off anywhere resumes there; and the
//! emptying of the index tables a rebuild starts with.

use super::writes::now_ms;
use crate::config::DB_BINDING;
use atcr_protocol::backfill::Place;
use atcr_protocol::Did;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env, Result};

fn nullable(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from)
}

/// A PDS whose accounts are being listed.
#[derive(Debug, Clone, Deserialize)]
pub struct HostWalk {
    pub pds: String,
    pub cursor: Option<String>,
}

/// An account whose records are being read.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoWalk {
    pub did: String,
    pub pds: String,
    pub collection: Option<String>,
    pub cursor: Option<String>,
}

/// Asks for every account on `pds` to be read (again); a listing under way
/// keeps its place.
pub async fn backfill_host_requested(env: &Env, pds: &str) -> Result<()> {
    let now = now_ms();
    env.d1(DB_BINDING)?
        .prepare(
            "INSERT INTO backfill_hosts (pds, cursor, state, repos, started_at, updated_at) VALUES (?1, NULL, 'listing', 0, ?2, ?2)
             ON CONFLICT (pds) DO UPDATE SET cursor = NULL, state = 'listing', repos = 0, error = NULL,
               started_at = excluded.started_at, updated_at = excluded.updated_at
             WHERE backfill_hosts.state != 'listing'",
        )
        .bind(&[pds.into(), now.into()])?
        .run()
        .await?;
    Ok(())
}

/// The statement that asks for `did`'s records to be read (again); a walk
/// under way keeps its place.
fn repo_requested(db: &D1Database, did: &str, pds: &str, now: f64) -> Result<D1PreparedStatement> {
    db.prepare(
        "INSERT INTO backfill_repos (did, pds, state, records, skipped, requested_at, updated_at) VALUES (?1, ?2, 'pending', 0, 0, ?3, ?3)
         ON CONFLICT (did) DO UPDATE SET pds = excluded.pds, state = 'pending', collection = NULL, cursor = NULL,
           records = 0, skipped = 0, last_skip = NULL, error = NULL, replayed = 0, attempts = 0,
           requested_at = excluded.requested_at, updated_at = excluded.updated_at
         WHERE backfill_repos.state != 'pending'",
    )
    .bind(&[did.into(), pds.into(), now.into()])
}

/// Asks for `did`'s records on `pds` to be read (again).
pub async fn backfill_repo_requested(env: &Env, did: &Did, pds: &str) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    repo_requested(&db, did.as_str(), pds, now_ms())?
        .run()
        .await?;
    Ok(())
}

/// Asks for `did`'s records to be read once, when first seen: true when
/// this is the first time (an account read before, or being read, is not
/// read again; one whose walk failed is tried again).
pub async fn backfill_first_sight(env: &Env, did: &Did, pds: &str) -> Result<bool> {
    let now = now_ms();
    let result = env
        .d1(DB_BINDING)?
        .prepare(
            "INSERT INTO backfill_repos (did, pds, state, records, skipped, requested_at, updated_at) VALUES (?1, ?2, 'pending', 0, 0, ?3, ?3)
             ON CONFLICT (did) DO UPDATE SET pds = excluded.pds, state = 'pending', collection = NULL, cursor = NULL,
               records = 0, skipped = 0, last_skip = NULL, error = NULL, replayed = 0, attempts = 0,
               requested_at = excluded.requested_at, updated_at = excluded.updated_at
             WHERE backfill_repos.state = 'failed'",
        )
        .bind(&[did.as_str().into(), pds.into(), now.into()])?
        .run()
        .await?;
    Ok(result
        .meta()?
        .and_then(|m| m.changes)
        .is_some_and(|changes| changes > 0))
}

/// The PDS listed longest ago whose listing is under way.
pub async fn next_host_walk(env: &Env) -> Result<Option<HostWalk>> {
    env.d1(DB_BINDING)?
        .prepare("SELECT pds, cursor FROM backfill_hosts WHERE state = 'listing' ORDER BY started_at LIMIT 1")
        .first(None)
        .await
}

/// A page of `pds`'s accounts was listed: each is to be read; `next` is the
/// next page's cursor (`None`: the listing is done).
pub async fn host_page_listed(
    env: &Env,
    pds: &str,
    dids: &[Did],
    next: Option<&str>,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    let now = now_ms();
    let mut statements = dids
        .iter()
        .map(|did| repo_requested(&db, did.as_str(), pds, now))
        .collect::<Result<Vec<_>>>()?;
    statements.push(
        db.prepare(
            "UPDATE backfill_hosts SET cursor = ?2, repos = repos + ?3, updated_at = ?4,
               state = CASE WHEN ?2 IS NULL THEN 'listed' ELSE 'listing' END
             WHERE pds = ?1",
        )
        .bind(&[
            pds.into(),
            nullable(next),
            (dids.len() as f64).into(),
            now.into(),
        ])?,
    );
    db.batch(statements).await?;
    Ok(())
}

pub async fn host_walk_failed(env: &Env, pds: &str, error: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("UPDATE backfill_hosts SET state = 'failed', error = ?2, updated_at = ?3 WHERE pds = ?1")
        .bind(&[pds.into(), error.into(), now_ms().into()])?
        .run()
        .await?;
    Ok(())
}

/// The account asked for longest ago whose records are still to be read.
pub async fn next_repo_walk(env: &Env) -> Result<Option<RepoWalk>> {
    env.d1(DB_BINDING)?
        .prepare(
            "SELECT did, pds, collection, cursor FROM backfill_repos WHERE state = 'pending'
             ORDER BY requested_at LIMIT 1",
        )
        .first(None)
        .await
}

/// The statement that saves a page read of `did`'s records: where the walk
/// goes next (`None`: done), the records applied and skipped.
pub fn repo_page_statement(
    db: &D1Database,
    did: &str,
    next: Option<&Place>,
    applied: usize,
    skipped: usize,
    last_skip: Option<&str>,
) -> Result<D1PreparedStatement> {
    db.prepare(
        "UPDATE backfill_repos SET collection = ?2, cursor = ?3, state = ?4,
           records = records + ?5, skipped = skipped + ?6, last_skip = COALESCE(?7, last_skip), updated_at = ?8,
           attempts = 0, error = NULL
         WHERE did = ?1",
    )
    .bind(&[
        did.into(),
        nullable(next.map(|p| p.collection)),
        nullable(next.and_then(|p| p.cursor.as_deref())),
        if next.is_some() { "pending" } else { "done" }.into(),
        (applied as f64).into(),
        (skipped as f64).into(),
        nullable(last_skip),
        now_ms().into(),
    ])
}

/// A page of `did`'s records could not be read or applied: the walk keeps
/// its place; answers how many times in a row that page has failed.
pub async fn repo_page_failed(env: &Env, did: &str, error: &str) -> Result<u32> {
    let tries: Option<f64> = env
        .d1(DB_BINDING)?
        .prepare(
            "UPDATE backfill_repos SET attempts = attempts + 1, error = ?2, updated_at = ?3
             WHERE did = ?1 RETURNING attempts",
        )
        .bind(&[did.into(), error.into(), now_ms().into()])?
        .first(Some("attempts"))
        .await?;
    Ok(tries.unwrap_or(0.0) as u32)
}

pub async fn repo_walk_failed(env: &Env, did: &str, error: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("UPDATE backfill_repos SET state = 'failed', error = ?2, updated_at = ?3 WHERE did = ?1")
        .bind(&[did.into(), error.into(), now_ms().into()])?
        .run()
        .await?;
    Ok(())
}

/// How the backfill stands: accounts by state (with records applied and
/// skipped), and each PDS's listing.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct BackfillCount {
    pub state: String,
    pub repos: f64,
    pub records: f64,
    pub skipped: f64,
    pub updated_at: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct BackfillHost {
    pub pds: String,
    pub state: String,
    pub repos: f64,
    pub error: Option<String>,
    pub updated_at: f64,
}

pub async fn backfill_status(env: &Env) -> Result<(Vec<BackfillCount>, Vec<BackfillHost>)> {
    let db = env.d1(DB_BINDING)?;
    let answers = db
        .batch(vec![
            db.prepare(
                "SELECT state, COUNT(*) AS repos, COALESCE(SUM(records), 0) AS records,
                   COALESCE(SUM(skipped), 0) AS skipped, MAX(updated_at) AS updated_at
                 FROM backfill_repos GROUP BY state ORDER BY state",
            ),
            db.prepare(
                "SELECT pds, state, repos, error, updated_at FROM backfill_hosts ORDER BY pds",
            ),
        ])
        .await?;
    let counts = answers[0].results()?;
    let hosts = answers[1].results()?;
    Ok((counts, hosts))
}

/// Whether any walk is under way (the backfill's loop goes on while so).
pub async fn backfill_pending(env: &Env) -> Result<bool> {
    let found: Option<f64> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT 1 AS found WHERE EXISTS (SELECT 1 FROM backfill_hosts WHERE state = 'listing')
               OR EXISTS (SELECT 1 FROM backfill_repos WHERE state = 'pending')",
        )
        .first(Some("found"))
        .await?;
    Ok(found.is_some())
}

/// Every PDS the index knows of: its users', and those walked before.
pub async fn known_pdses(env: &Env) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        pds: String,
    }
    let rows: Vec<Row> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT pds_endpoint AS pds FROM users UNION SELECT pds FROM backfill_hosts
             UNION SELECT pds FROM backfill_repos ORDER BY pds",
        )
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.pds).collect())
}

/// What a rebuild emptied: rows per table.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct Emptied {
    pub users: f64,
    pub repositories: f64,
    pub manifests: f64,
    pub tags: f64,
    pub stars: f64,
    pub profiles: f64,
    pub holds: f64,
    pub crew: f64,
}

/// Empties the index tables (users, repositories and their search,
/// manifests, tags, stars, profiles, holds, crew) and the backfill's walks,
/// in one batch (counted first, in the same batch); sessions, devices, pull
/// counts and unlinked blobs are the appview's own and stay.
pub async fn empty_index(env: &Env) -> Result<Emptied> {
    let db = env.d1(DB_BINDING)?;
    let answers = db
        .batch(vec![
            db.prepare(
                "SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM repositories) AS repositories,
                   (SELECT COUNT(*) FROM manifests) AS manifests, (SELECT COUNT(*) FROM tags) AS tags,
                   (SELECT COUNT(*) FROM stars) AS stars, (SELECT COUNT(*) FROM profiles) AS profiles,
                   (SELECT COUNT(*) FROM holds) AS holds, (SELECT COUNT(*) FROM crew) AS crew",
            ),
            db.prepare("DELETE FROM tags"),
            db.prepare("DELETE FROM manifests"),
            db.prepare("DELETE FROM stars"),
            db.prepare("DELETE FROM profiles"),
            db.prepare("DELETE FROM holds"),
            db.prepare("DELETE FROM crew"),
            db.prepare("DELETE FROM repositories"),
            db.prepare("DELETE FROM users"),
            db.prepare("DELETE FROM backfill_repos"),
            db.prepare("DELETE FROM backfill_hosts"),
        ])
        .await?;
    Ok(answers[0]
        .results::<Emptied>()?
        .into_iter()
        .next()
        .unwrap_or_default())
}
