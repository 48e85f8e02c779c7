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
}

pub async fn jetstream_cursor(env: &Env) -> Result<Option<JetstreamCursor>> {
    env.d1(DB_BINDING)?
        .prepare("SELECT time_us, applied, skipped, last_skip, updated_at FROM jetstream_cursor WHERE consumer = ?1")
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
