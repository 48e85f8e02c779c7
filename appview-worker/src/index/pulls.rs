//! Pull counts, kept off the request path and off D1's write path. An
//! isolate adds up the manifest GETs it answers for [`SEND_AFTER`], then
//! sends them to the `PULLS` queue as one message per repository (a
//! thousand pulls of one image in that second are one message), and the
//! queue's consumer writes each batch as one upsert per repository, in one
//! D1 batch. A deployment without the queue binding writes the isolate's
//! counts straight to D1 instead, as one batch.
//!
//! Counts pending in an isolate live only in its memory: the send is
//! handed to `ctx.wait_until` of the pull that started the count, which
//! the runtime keeps running after the answer, so they are lost only if
//! the isolate itself dies within that second.

use crate::config::DB_BINDING;
use atcr_protocol::pulls::{tally, PendingPulls, PullTally};
use atcr_protocol::Did;
use std::cell::RefCell;
use std::time::Duration;
use worker::{Context, Date, Delay, Env, Result};

/// The queue binding pulls travel on (wrangler.toml, `[[queues.producers]]`).
pub const PULLS_QUEUE: &str = "PULLS";

/// How long an isolate gathers pulls before it sends them.
const SEND_AFTER: Duration = Duration::from_secs(1);

/// The most messages one `sendBatch` may carry.
const QUEUE_BATCH_MAX: usize = 100;

thread_local! {
    static PENDING: RefCell<PendingPulls> = RefCell::new(PendingPulls::default());
}

/// One more pull of `repository`: counted in the isolate, sent within
/// [`SEND_AFTER`] by the first pull since the last send.
pub fn count_pull(ctx: &Context, env: &Env, owner: &Did, repository: &str) {
    let now = Date::now().as_millis();
    let first = PENDING.with(|p| p.borrow_mut().add(owner.as_str(), repository, now));
    if first {
        let env = env.clone();
        ctx.wait_until(async move {
            Delay::from(SEND_AFTER).await;
            if let Err(e) = send_pending(&env).await {
                worker::console_error!("pull counts not sent: {e}");
            }
        });
    }
}

/// Sends the isolate's pending counts: to the queue, or without one to D1.
async fn send_pending(env: &Env) -> Result<()> {
    let events = PENDING.with(|p| p.borrow_mut().take());
    match env.queue(PULLS_QUEUE) {
        Ok(queue) => {
            for chunk in events.chunks(QUEUE_BATCH_MAX) {
                queue.send_batch(chunk.to_vec()).await?;
            }
            Ok(())
        }
        Err(_) => write_tallies(env, &tally(&events)).await,
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
