//! Backfill: the index learns what PDSs already hold, for an account seen
//! for the first time and for whole PDSs on an admin request.
//!
//! A Durable Object (`Backfiller`, one instance by name) walks them in
//! runs: each run reads at most `BACKFILL_PAGES_PER_RUN` pages
//! (`listRepos` for a PDS's accounts, `listRecords` per collection for an
//! account's records), applies each page's records in one D1 batch through
//! the Jetstream consumer's own code (`jetstream::apply`; records validated
//! by `atcr_protocol::jetstream::record_change`), saves where the walk
//! stands after every page (`backfill_hosts`, `backfill_repos`), and sets
//! its alarm `BACKFILL_PAUSE_MS` later while work remains. So each run is
//! one invocation with a bounded number of subrequests, the PDSs are asked
//! at a bounded rate, and a walk cut off anywhere (a deployment, an
//! eviction) resumes from D1 at the next alarm or cron.
//!
//! Requests hand work over without waiting on it: `first_sight` runs in
//! `ctx.wait_until` after the answer is sent.

use crate::atproto::resolve::resolve_owner;
use crate::config::{AppConfig, BACKFILL_BINDING};
use crate::index::{self, HostWalk, RepoWalk};
use crate::jetstream::{self, apply};
use atcr_protocol::backfill::{self, Place};
use atcr_protocol::reference::Owner;
use atcr_protocol::Did;
use std::cell::RefCell;
use std::collections::HashSet;
use worker::*;

/// The backfill's one instance, by name.
const INSTANCE: &str = "backfill";

thread_local! {
    /// Accounts this isolate has handed to the backfill or found known, by
    /// DID and by the name a request used (handle or DID): the check costs
    /// a D1 query, once per isolate and account.
    static SEEN: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Whether this isolate has dealt with `owner` already: then a request
/// need not hand `first_sight` anything (checked before `ctx.wait_until`,
/// so a manifest GET for a known owner costs a set lookup, nothing more).
pub fn seen(owner: &Owner) -> bool {
    SEEN.with(|s| s.borrow().contains(&owner.to_string()))
}

/// Starts the backfill's loop if it is not running (a request queued work,
/// or the cron checks on it).
pub async fn poke(env: &Env) -> Result<()> {
    let stub = env
        .durable_object(BACKFILL_BINDING)?
        .get_by_name(INSTANCE)?;
    let res = stub
        .fetch_with_str("https://backfill.internal/poke")
        .await?;
    if res.status_code() != 200 {
        return Err(Error::RustError(format!(
            "the backfill answered {}",
            res.status_code()
        )));
    }
    Ok(())
}

/// An account named in a request (the owner of a repository pulled from,
/// a user signing in): if the index has never read its records, queue it
/// (with no Jetstream consumer: only if the index does not know it at all).
/// For `ctx.wait_until`, after the answer; failures are logged, never seen
/// by the client.
pub async fn first_sight(env: Env, owner: Owner) {
    if seen(&owner) {
        return;
    }
    let Ok(config) = AppConfig::cached(&env) else {
        return;
    };
    // Cached per isolate: the request resolved it already.
    let Ok(who) = resolve_owner(&owner, &config).await else {
        return;
    };
    let did = who.did.to_string();
    if SEEN.with(|s| s.borrow().contains(&did)) {
        return;
    }
    let outcome = async {
        // Without a consumer to replay the stream over the walk, a page read
        // before a write through this appview could put the older record
        // back for good: accounts the index knows are left as they are.
        let db = env.d1(crate::config::DB_BINDING)?;
        if config.jetstream_url.is_none() && index::user_known(&db, &who.did).await? {
            return Ok(false);
        }
        if !index::backfill_first_sight(&env, &who.did, &who.pds).await? {
            return Ok(false);
        }
        poke(&env).await.map(|_| true)
    }
    .await;
    match outcome {
        Ok(queued) => {
            SEEN.with(|s| {
                let mut seen = s.borrow_mut();
                seen.insert(owner.to_string());
                seen.insert(did.clone());
            });
            if queued {
                console_log!("backfill: {did} seen for the first time, its records queued");
            }
        }
        Err(e) => console_error!("backfill: {did} not queued: {e}"),
    }
}

#[durable_object(alarm)]
pub struct Backfiller {
    state: State,
    env: Env,
}

impl DurableObject for Backfiller {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    /// Any request: make sure a run comes soon.
    async fn fetch(&self, _req: Request) -> Result<Response> {
        if self.state.storage().get_alarm().await?.is_none() {
            self.state.storage().set_alarm(0).await?;
        }
        Response::ok("")
    }

    async fn alarm(&self) -> Result<Response> {
        let config = AppConfig::cached(&self.env).map_err(Error::RustError)?;
        let pause = i64::from(config.backfill_pause_ms);
        let next_run = match run(&self.env, &config).await {
            Ok(Ran::Paced) => pause,
            Ok(Ran::RetryAfter(ms)) => ms.max(pause),
            Err(e) => {
                console_error!("backfill: the run failed, tried again at the next: {e}");
                pause
            }
        };
        if index::backfill_pending(&self.env).await.unwrap_or(true) {
            self.state.storage().set_alarm(next_run).await?;
        } else if index::backfill_drained(&self.env, config.jetstream_url.as_deref()).await? {
            // Events that came while the walks read, applied again over them.
            if let Err(e) = jetstream::reconnect(&self.env).await {
                console_error!("backfill: the consumer was not rewound to the walks' start: {e}");
            }
        }
        Response::ok("")
    }
}

/// How many times in a row a page of an account's records is tried before
/// its walk is given up as failed (a PDS that stalls or answers 5xx now
/// and then does not cost a walk of 100,000 records).
const PAGE_TRIES: u32 = 5;

/// How a run ended: its pages read, or a page that failed and is tried
/// again after the delay (ms).
enum Ran {
    Paced,
    RetryAfter(i64),
}

/// One run: PDS listings first, then accounts' records, at most
/// `backfill_pages_per_run` pages in all.
async fn run(env: &Env, config: &AppConfig) -> Result<Ran> {
    let mut pages = 0;
    while pages < config.backfill_pages_per_run {
        let Some(host) = index::next_host_walk(env).await? else {
            break;
        };
        pages += 1;
        list_accounts(env, &host).await?;
    }
    while pages < config.backfill_pages_per_run {
        let Some(repo) = index::next_repo_walk(env).await? else {
            break;
        };
        let Ok(did) = repo.did.parse::<Did>() else {
            index::repo_walk_failed(env, &repo.did, "not a DID").await?;
            continue;
        };
        let mut place = Some(Place::saved(
            repo.collection.as_deref(),
            repo.cursor.as_deref(),
        ));
        while let Some(here) = place.take() {
            if pages >= config.backfill_pages_per_run {
                break;
            }
            pages += 1;
            match read_page(env, config, &repo, &did, &here).await {
                Ok(next) => place = next,
                Err(e) => {
                    console_error!("backfill: {did} at {}: {e}", repo.pds);
                    let tries = index::repo_page_failed(env, &repo.did, &e).await?;
                    if tries < PAGE_TRIES {
                        // The walk keeps its place: the same page, a little later.
                        return Ok(Ran::RetryAfter(1000 << (tries - 1)));
                    }
                    index::repo_walk_failed(env, &repo.did, &e).await?;
                }
            }
        }
    }
    Ok(Ran::Paced)
}

/// One `listRepos` page of `host`: its accounts queued.
async fn list_accounts(env: &Env, host: &HostWalk) -> Result<()> {
    let url = backfill::list_repos_url(&host.pds, host.cursor.as_deref(), backfill::REPOS_PAGE);
    let page = match get(&url).await {
        Ok(text) => backfill::parse_repos(&text, backfill::REPOS_PAGE),
        Err(e) => Err(e),
    };
    match page {
        Ok(page) => index::host_page_listed(env, &host.pds, &page.dids, page.next.as_deref()).await,
        Err(e) => {
            console_error!("backfill: listing {}: {e}", host.pds);
            index::host_walk_failed(env, &host.pds, &e).await
        }
    }
}

/// One `listRecords` page of `did`'s records at `here`: its records applied
/// in one batch, then where the walk goes next saved (a page applied twice,
/// after a cut between the two, leaves the index as once); answers that
/// place (`None`: done).
async fn read_page(
    env: &Env,
    config: &AppConfig,
    repo: &RepoWalk,
    did: &Did,
    here: &Place,
) -> std::result::Result<Option<Place>, String> {
    let size = config.backfill_page_size;
    let url = backfill::list_records_url(
        &repo.pds,
        did,
        here.collection,
        here.cursor.as_deref(),
        size,
    );
    let text = get(&url).await?;
    let page = backfill::parse_records(did, here.collection, &text, size)?;
    let next = here.after(page.next.clone());
    let valid: Vec<_> = page
        .changes
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .collect();
    let changes: Vec<_> = valid.iter().map(|c| (did, *c)).collect();
    let outcomes = apply::apply_all(env, config, &changes).await;
    let mut skips: Vec<String> = page
        .changes
        .iter()
        .filter_map(|c| c.as_ref().err().map(|s| s.to_string()))
        .collect();
    skips.extend(outcomes.iter().filter_map(|o| o.as_ref().err().cloned()));
    for why in &skips {
        console_warn!("backfill: skipped: {why}");
    }
    let applied = outcomes.iter().filter(|o| o.is_ok()).count();
    let saved = async {
        let db = env.d1(crate::config::DB_BINDING)?;
        index::repo_page_statement(
            &db,
            &repo.did,
            next.as_ref(),
            applied,
            skips.len(),
            skips.last().map(String::as_str),
        )?
        .run()
        .await
    }
    .await;
    saved.map_err(|e| format!("progress not saved: {e}"))?;
    Ok(next)
}

/// GET `url`, its body when the answer is 200.
async fn get(url: &str) -> std::result::Result<String, String> {
    let mut resp =
        worker_support::call(Fetch::Url(url.parse().map_err(|e| format!("{url}: {e}"))?))
            .await
            .map_err(|e| format!("{url} unreachable: {e}"))?;
    let text = resp.text().await.map_err(|e| e.to_string())?;
    match resp.status_code() {
        200 => Ok(text),
        status => Err(format!(
            "{url} answered {status}: {}",
            text.chars().take(200).collect::<String>()
        )),
    }
}
