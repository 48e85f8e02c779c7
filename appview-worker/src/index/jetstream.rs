//! The Jetstream consumer's place in the stream (`jetstream_cursor`): the
//! `time_us` of the last event applied, and how many events were applied
//! and skipped.

use crate::config::DB_BINDING;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Date, Env, Result};

/// The consumer's row (one consumer per appview).
const CONSUMER: &str = "jetstream";

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

/// The consumer connected from its rewind: it is spent.
pub async fn jetstream_rewound(env: &Env) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("UPDATE jetstream_cursor SET rewind_to_us = NULL WHERE consumer = ?1")
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
/// the consumer is asked to replay from its start (the events that came
/// while the backfill read, applied again over what it read). True when a
/// rebuild was finished.
pub async fn rebuild_finished(env: &Env) -> Result<bool> {
    let db = env.d1(DB_BINDING)?;
    let now = Date::now().as_millis() as f64;
    let answers = db
        .batch(vec![
            db.prepare(
                "UPDATE jetstream_cursor SET rewind_to_us = (SELECT MIN(started_at) * 1000 FROM backfill_rebuilds WHERE finished_at IS NULL)
                 WHERE consumer = ?1 AND EXISTS (SELECT 1 FROM backfill_rebuilds WHERE finished_at IS NULL)",
            )
            .bind(&[CONSUMER.into()])?,
            db.prepare("UPDATE backfill_rebuilds SET finished_at = ?1 WHERE finished_at IS NULL")
                .bind(&[now.into()])?,
        ])
        .await?;
    Ok(answers[1]
        .meta()?
        .and_then(|m| m.changes)
        .is_some_and(|c| c > 0))
}
