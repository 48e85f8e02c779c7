//! The Jetstream consumer's place in the stream (`jetstream_cursor`): the
//! `time_us` of the last event applied, how many events were applied and
//! skipped, whether its socket is open (`alive_at`), and the replays that
//! follow a rebuild or an account's backfill.

use crate::config::DB_BINDING;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Date, Env, Result};

/// The consumer's row (one consumer per appview).
const CONSUMER: &str = "jetstream";

/// How far back a replay may reach: Jetstream keeps about a day of events
/// or more, so an older walk is left to be read again rather than replayed
/// over from a cursor the stream no longer has.
const REPLAY_WITHIN_MS: f64 = 24.0 * 3600.0 * 1000.0;

#[derive(Debug, Clone, Deserialize)]
pub struct JetstreamCursor {
    /// Unix µs of the last event applied.
    pub time_us: Option<f64>,
    pub applied: f64,
    pub skipped: f64,
    pub last_skip: Option<String>,
    /// Unix ms of the last save.
    pub updated_at: f64,
    /// Where to replay from at the next connection (after a rebuild).
    pub rewind_to_us: Option<f64>,
}

pub async fn jetstream_cursor(env: &Env) -> Result<Option<JetstreamCursor>> {
    env.d1(DB_BINDING)?
        .prepare("SELECT time_us, applied, skipped, last_skip, updated_at, rewind_to_us FROM jetstream_cursor WHERE consumer = ?1")
        .bind(&[CONSUMER.into()])?
        .first(None)
        .await
}

/// Progress since the last save: the newest event applied (never moves the
/// cursor back), and the events applied and skipped since.
pub async fn jetstream_progress(
    env: &Env,
    endpoint: &str,
    time_us: Option<i64>,
    applied: u64,
    skipped: u64,
    last_skip: Option<&str>,
) -> Result<()> {
    let time = time_us.map_or(JsValue::NULL, |t| JsValue::from(t as f64));
    let skip = last_skip.map_or(JsValue::NULL, JsValue::from);
    env.d1(DB_BINDING)?
        .prepare(
            "INSERT INTO jetstream_cursor (consumer, endpoint, time_us, applied, skipped, last_skip, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (consumer) DO UPDATE SET endpoint = excluded.endpoint,
               time_us = MAX(COALESCE(excluded.time_us, 0), COALESCE(jetstream_cursor.time_us, 0)),
               applied = jetstream_cursor.applied + excluded.applied,
               skipped = jetstream_cursor.skipped + excluded.skipped,
               last_skip = COALESCE(excluded.last_skip, jetstream_cursor.last_skip),
               updated_at = excluded.updated_at",
        )
        .bind(&[
            CONSUMER.into(),
            endpoint.into(),
            time,
            (applied as f64).into(),
            (skipped as f64).into(),
            skip,
            (Date::now().as_millis() as f64).into(),
        ])?
        .run()
        .await?;
    Ok(())
}

/// The consumer connected at `connected_ms`, from `cursor_us` (`None`:
/// live): a rewind at or after that cursor is spent, and every finished
/// walk that began at or after it is now replayed over (`replayed`), since
/// the stream is applied again from before the walk read anything.
pub async fn jetstream_connected(
    env: &Env,
    cursor_us: Option<i64>,
    connected_ms: f64,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    let cursor = cursor_us.map_or(JsValue::NULL, |c| JsValue::from(c as f64));
    db.batch(vec![
        db.prepare(
            "UPDATE jetstream_cursor SET rewind_to_us = NULL WHERE consumer = ?1 AND rewind_to_us >= ?2",
        )
        .bind(&[CONSUMER.into(), cursor.clone()])?,
        db.prepare(
            "UPDATE backfill_repos SET replayed = 1
             WHERE state = 'done' AND replayed = 0 AND requested_at * 1000 >= ?1 AND updated_at <= ?2",
        )
        .bind(&[cursor, connected_ms.into()])?,
    ])
    .await?;
    Ok(())
}

/// The consumer checked on its socket and found it open, and caught up
/// with the stream.
pub async fn jetstream_alive(env: &Env, endpoint: &str) -> Result<()> {
    let now = Date::now().as_millis() as f64;
    env.d1(DB_BINDING)?
        .prepare(
            "INSERT INTO jetstream_cursor (consumer, endpoint, updated_at, alive_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (consumer) DO UPDATE SET alive_at = excluded.alive_at",
        )
        .bind(&[CONSUMER.into(), endpoint.into(), now.into()])?
        .run()
        .await?;
    Ok(())
}

/// The consumer's socket closed: until it is open again, the index is not
/// current for anyone (`index::current`).
pub async fn jetstream_down(env: &Env) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("UPDATE jetstream_cursor SET alive_at = NULL WHERE consumer = ?1")
        .bind(&[CONSUMER.into()])?
        .run()
        .await?;
    Ok(())
}

/// A rebuild starts now (its backfill is queued next).
pub async fn rebuild_started(env: &Env) -> Result<f64> {
    let now = Date::now().as_millis() as f64;
    env.d1(DB_BINDING)?
        .prepare("INSERT OR IGNORE INTO backfill_rebuilds (started_at) VALUES (?1)")
        .bind(&[now.into()])?
        .run()
        .await?;
    Ok(now)
}

/// The backfill has no work left: a rebuild still open is finished, and
/// the consumer (`jetstream`: its endpoint, when there is one) is asked to
/// replay from the start of every walk it has not replayed over yet (the
/// rebuild's, and each account's read since), so an event that came while
/// a page was read is applied again over what the page said. True when a
/// replay was asked for.
pub async fn backfill_drained(env: &Env, jetstream: Option<&str>) -> Result<bool> {
    let db = env.d1(DB_BINDING)?;
    let now = Date::now().as_millis() as f64;
    let mut statements = vec![];
    if let Some(endpoint) = jetstream {
        statements.push(
            db.prepare(
                "INSERT INTO jetstream_cursor (consumer, endpoint, updated_at, rewind_to_us)
                 SELECT ?1, ?2, ?3, start FROM (SELECT MIN(start) AS start FROM (
                   SELECT started_at * 1000 AS start FROM backfill_rebuilds WHERE finished_at IS NULL
                   UNION ALL SELECT requested_at * 1000 FROM backfill_repos
                     WHERE state = 'done' AND replayed = 0 AND requested_at >= ?4))
                 WHERE start IS NOT NULL
                 ON CONFLICT (consumer) DO UPDATE SET
                   rewind_to_us = MIN(COALESCE(jetstream_cursor.rewind_to_us, excluded.rewind_to_us), excluded.rewind_to_us)",
            )
            .bind(&[
                CONSUMER.into(),
                endpoint.into(),
                now.into(),
                (now - REPLAY_WITHIN_MS).into(),
            ])?,
        );
    }
    statements.push(
        db.prepare("UPDATE backfill_rebuilds SET finished_at = ?1 WHERE finished_at IS NULL")
            .bind(&[now.into()])?,
    );
    let answers = db.batch(statements).await?;
    Ok(jetstream.is_some()
        && answers[0]
            .meta()?
            .and_then(|m| m.changes)
            .is_some_and(|c| c > 0))
}
