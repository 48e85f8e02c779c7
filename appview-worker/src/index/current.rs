//! Registry reads the index answers in place of the owner's PDS, when it is
//! current for the owner: their records were read by a backfill, the
//! Jetstream consumer has since replayed the stream over that walk (so no
//! page read before a concurrent write left the older record standing), and
//! the consumer is following the network now (`alive_at`). Then a tag list
//! or a referrers call costs one D1 batch, whatever the owner's history;
//! otherwise each answers `None`, and the caller reads the PDS.
//!
//! Current means "behind the network by the consumer's lag" (seconds): a
//! record written through another appview appears here once its event is
//! applied; writes through this appview are in the index at once.

use super::browse::{ManifestRow, MANIFEST_COLUMNS};
use crate::config::DB_BINDING;
use serde::Deserialize;
use worker::{D1Database, D1PreparedStatement, Date, Env, Result};

/// How fresh the consumer's last sign of an open socket must be: it checks
/// every 30 s, so three missed checks mean it is not following.
const ALIVE_WITHIN_MS: f64 = 90_000.0;

/// One page of a repository's tags, and whether more follow.
pub struct TagPage {
    pub tags: Vec<String>,
    pub more: bool,
}

fn current_statement(db: &D1Database, owner: &str) -> Result<D1PreparedStatement> {
    db.prepare(
        "SELECT 1 AS current FROM backfill_repos b, jetstream_cursor j
         WHERE b.did = ?1 AND b.state = 'done' AND b.replayed = 1
           AND j.consumer = 'jetstream' AND j.alive_at >= ?2",
    )
    .bind(&[
        owner.into(),
        (Date::now().as_millis() as f64 - ALIVE_WITHIN_MS).into(),
    ])
}

/// Runs the currency check and `read` in one batch: `read`'s rows when the
/// index is current for `owner`.
async fn if_current<T: for<'de> Deserialize<'de>>(
    db: &D1Database,
    owner: &str,
    read: D1PreparedStatement,
) -> Result<Option<Vec<T>>> {
    let answers = db.batch(vec![current_statement(db, owner)?, read]).await?;
    let current = !answers[0].results::<serde_json::Value>()?.is_empty();
    Ok(match current {
        true => Some(answers[1].results()?),
        false => None,
    })
}

/// Up to `n` of the repository's tags after `last`, in the order the
/// distribution spec asks for (lexical, by bytes).
pub async fn current_tags(
    env: &Env,
    owner: &str,
    repository: &str,
    last: Option<&str>,
    n: usize,
) -> Result<Option<TagPage>> {
    #[derive(Deserialize)]
    struct Row {
        tag: String,
    }
    let db = env.d1(DB_BINDING)?;
    let read = db
        .prepare(
            "SELECT tag FROM tags WHERE owner_did = ?1 AND repository = ?2 AND tag > ?3
             ORDER BY tag LIMIT ?4",
        )
        .bind(&[
            owner.into(),
            repository.into(),
            last.unwrap_or("").into(),
            ((n + 1) as f64).into(),
        ])?;
    let Some(rows) = if_current::<Row>(&db, owner, read).await? else {
        return Ok(None);
    };
    let mut tags: Vec<String> = rows.into_iter().map(|r| r.tag).collect();
    let more = tags.len() > n;
    tags.truncate(n);
    Ok(Some(TagPage { tags, more }))
}

/// The repository's manifests whose `subject` is `digest`, newest first.
pub async fn current_referrers(
    env: &Env,
    owner: &str,
    repository: &str,
    digest: &str,
) -> Result<Option<Vec<ManifestRow>>> {
    let db = env.d1(DB_BINDING)?;
    let read = db
        .prepare(format!(
            "{MANIFEST_COLUMNS} WHERE owner_did = ?1 AND repository = ?2 AND subject = ?3
             ORDER BY created_at DESC"
        ))
        .bind(&[owner.into(), repository.into(), digest.into()])?;
    if_current(&db, owner, read).await
}
