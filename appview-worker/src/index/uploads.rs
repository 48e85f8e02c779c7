//! The ETags of an upload's parts, until the upload completes: storage
//! needs every one to assemble the blob, and the upload's sealed state
//! (its `Location` URL) carries only how many there are, so that a blob of
//! thousands of parts has a URL no longer than one of a single part.

use crate::config::DB_BINDING;
use atcr_protocol::hold_api::CompletedPart;
use serde::Deserialize;
use worker::{Date, Env, Result};

/// Keeps `parts` of upload `upload_id` until `expires_at` (Unix seconds),
/// in one batch. A part sent again (a client retrying a chunk) replaces
/// the one before.
pub async fn save_upload_parts(
    env: &Env,
    upload_id: &str,
    parts: &[CompletedPart],
    expires_at: u64,
) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    let statements = parts
        .iter()
        .map(|part| {
            db.prepare(
                "INSERT INTO upload_parts (upload_id, part_number, etag, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (upload_id, part_number) DO UPDATE SET etag = excluded.etag",
            )
            .bind(&[
                upload_id.into(),
                part.part_number.into(),
                part.etag.as_str().into(),
                (expires_at as f64).into(),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    db.batch(statements).await?;
    Ok(())
}

/// Parts `first..=last` of upload `upload_id`, in order (those saved).
pub async fn upload_parts(
    env: &Env,
    upload_id: &str,
    first: u32,
    last: u32,
) -> Result<Vec<CompletedPart>> {
    #[derive(Deserialize)]
    struct Row {
        part_number: u32,
        etag: String,
    }
    let rows: Vec<Row> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT part_number, etag FROM upload_parts
             WHERE upload_id = ?1 AND part_number BETWEEN ?2 AND ?3 ORDER BY part_number",
        )
        .bind(&[upload_id.into(), first.into(), last.into()])?
        .all()
        .await?
        .results()?;
    Ok(rows
        .into_iter()
        .map(|r| CompletedPart {
            part_number: r.part_number,
            etag: r.etag,
        })
        .collect())
}

/// The upload completed or was cancelled: its parts are not needed.
pub async fn forget_upload_parts(env: &Env, upload_id: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("DELETE FROM upload_parts WHERE upload_id = ?1")
        .bind(&[upload_id.into()])?
        .run()
        .await?;
    Ok(())
}

/// Removes the parts of uploads that expired unfinished (the cron's sweep);
/// resolves to how many rows went.
pub async fn sweep_upload_parts(env: &Env) -> Result<usize> {
    let now = (Date::now().as_millis() / 1000) as f64;
    let result = env
        .d1(DB_BINDING)?
        .prepare("DELETE FROM upload_parts WHERE expires_at < ?1")
        .bind(&[now.into()])?
        .run()
        .await?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or_default())
}
