//! Pull counts, kept off the request path and off D1's write path: a
//! manifest GET sends one event to the `PULLS` queue after answering, and
//! the queue's consumer writes each batch as one upsert per repository, in
//! one D1 batch. A deployment without the queue binding writes each pull
//! straight to D1 instead.

use crate::config::DB_BINDING;
use atcr_protocol::pulls::{tally, PullEvent, PullTally};
use atcr_protocol::Did;
use worker::{Date, Env, Result};

/// The queue binding pulls travel on (wrangler.toml, `[[queues.producers]]`).
pub const PULLS_QUEUE: &str = "PULLS";

/// One more pull of `repository`.
pub async fn count_pull(env: &Env, owner: &Did, repository: &str) -> Result<()> {
    let event = PullEvent {
        owner: owner.to_string(),
        repository: repository.to_string(),
        at: Date::now().as_millis(),
    };
    match env.queue(PULLS_QUEUE) {
        Ok(queue) => queue.send(&event).await,
        Err(_) => write_tallies(env, &tally([&event])).await,
    }
}

/// Adds a batch's pulls to the counts, in one D1 batch.
pub async fn write_tallies(env: &Env, tallies: &[PullTally]) -> Result<()> {
    if tallies.is_empty() {
        return Ok(());
    }
    let db = env.d1(DB_BINDING)?;
    let upserts = tallies
        .iter()
        .map(|t| {
            db.prepare(
                "INSERT INTO pulls (owner_did, repository, count, last_pull) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner_did, repository) DO UPDATE
                 SET count = count + excluded.count,
                     last_pull = max(coalesce(last_pull, 0), excluded.last_pull)",
            )
            .bind(&[
                t.owner.as_str().into(),
                t.repository.as_str().into(),
                (t.count as f64).into(),
                (t.last_pull as f64).into(),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    db.batch(upserts).await?;
    Ok(())
}
