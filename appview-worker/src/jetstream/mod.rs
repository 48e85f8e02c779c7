//! The Jetstream consumer: the index follows the network's `io.atcr.*`
//! records, whoever wrote them.
//!
//! A Durable Object, because a WebSocket needs one place that holds it:
//! a Worker's fetch isolate lives for one request, a Durable Object (one,
//! by name) stays while its socket is open. It subscribes to `JETSTREAM_URL`
//! with `wantedCollections` = the collections the index follows, from its
//! cursor in D1 minus a few seconds (`atcr_protocol::jetstream`); reads each
//! message (`parse`: a record that breaks its lexicon is skipped and
//! counted), applies the messages that arrived together in one D1 batch
//! (`apply.rs`), and saves its progress at most every second (at once
//! after a skip, a second after the last burst when none follows). Applying an
//! event twice leaves the index as once, so the rewind and a cursor saved a
//! little late cost only repeated writes.
//!
//! What keeps it running: the cron trigger pokes it every minute
//! (`poke`, from the scheduled event), and it sets itself an alarm every
//! 30 seconds (2 seconds after its socket closes); each checks the socket
//! and connects again when it is gone. Each check that finds the socket open
//! and the stream caught up (no replay under way) marks the consumer alive
//! in D1 (`alive_at`), and a closed socket clears the mark: registry reads
//! trust the index over PDSs only while it is fresh (`index::current`).
//! `JETSTREAM_URL` empty: it does nothing.

pub(crate) mod apply;

use crate::config::{AppConfig, JETSTREAM_BINDING};
use atcr_protocol::jetstream;
use futures_util::StreamExt;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use worker::*;

/// The consumer's one instance, by name.
const INSTANCE: &str = "jetstream";
/// How often the consumer's alarm checks its socket.
const ALARM_MS: i64 = 30_000;
/// How soon after its socket closes the consumer connects again.
const RECONNECT_MS: i64 = 2_000;
/// Progress is saved at most this often while events flow.
const SAVE_EVERY_MS: f64 = 1_000.0;
/// The most messages applied in one D1 batch: those that arrived together.
const BATCH: usize = 100;

/// Starts the consumer if it is not running (the cron trigger calls this).
pub async fn poke(env: &Env) -> Result<()> {
    ask(env, "poke").await
}

/// Has the consumer connect again, from its saved cursor or rewind (the
/// backfill calls this when a rebuild ends).
pub async fn reconnect(env: &Env) -> Result<()> {
    ask(env, "reconnect").await
}

async fn ask(env: &Env, what: &str) -> Result<()> {
    let stub = env
        .durable_object(JETSTREAM_BINDING)?
        .get_by_name(INSTANCE)?;
    let mut res = stub
        .fetch_with_str(&format!("https://jetstream.internal/{what}"))
        .await?;
    if res.status_code() != 200 {
        return Err(Error::RustError(format!(
            "the Jetstream consumer answered {}: {}",
            res.status_code(),
            res.text().await.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Progress not yet saved, and whether the socket is open.
#[derive(Default)]
struct Live {
    connected: bool,
    /// The open socket, to close when asked to reconnect.
    socket: Option<WebSocket>,
    /// Counts connections: a closed socket's task clears `connected` only
    /// if no newer connection replaced it.
    generation: u64,
    endpoint: String,
    /// The newest event applied since the last save.
    time_us: Option<i64>,
    applied: u64,
    skipped: u64,
    last_skip: Option<String>,
    saved_at_ms: f64,
    /// A save is set for a second from now (`save_soon`).
    save_coming: bool,
    /// Unix ms when the last burst of messages came, when this connection
    /// opened, and the newest event applied on it: together they say
    /// whether a replay is still under way.
    last_burst_ms: f64,
    connected_ms: f64,
    newest_us: Option<i64>,
}

/// No message for this long means the consumer has caught up: a replay
/// streams without pause, so a quiet socket has drained it.
const CAUGHT_UP_MS: f64 = 5_000.0;

/// How far past the connection's opening an applied event must be to show
/// that the replay is over. Events come in time order, so one stamped after
/// the connection opened follows everything the replay had to send; the
/// margin covers a Jetstream clock a little ahead of the runtime's. (An
/// event merely recent is no proof: after a short outage, the replay of
/// what was missed is recent too.)
const CLOCK_MARGIN_MS: f64 = 1_000.0;

impl Live {
    fn caught_up(&self, now_ms: f64) -> bool {
        let past_the_replay = self
            .newest_us
            .is_some_and(|t| (t as f64) / 1000.0 >= self.connected_ms + CLOCK_MARGIN_MS);
        self.connected && (past_the_replay || now_ms - self.last_burst_ms > CAUGHT_UP_MS)
    }
}

#[derive(Serialize)]
struct Status {
    enabled: bool,
    connected: bool,
}

#[durable_object(alarm)]
pub struct JetstreamConsumer {
    state: State,
    env: Env,
    live: Rc<RefCell<Live>>,
}

impl DurableObject for JetstreamConsumer {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            live: Rc::new(RefCell::new(Live::default())),
        }
    }

    /// `/reconnect`: close the socket, so the consumer connects again from
    /// its saved cursor or rewind (after a rebuild); anything else: make
    /// sure it runs.
    async fn fetch(&self, req: Request) -> Result<Response> {
        if req.path() == "/reconnect" {
            let socket = {
                let mut live = self.live.borrow_mut();
                live.connected = false;
                live.socket.take()
            };
            save(&self.env, &self.live).await;
            if let Some(socket) = socket {
                socket.close(Some(1000), Some("reconnecting from the saved cursor"))?;
            }
        }
        let enabled = self.keep_alive().await?;
        Response::from_json(&Status {
            enabled,
            connected: self.live.borrow().connected,
        })
    }

    async fn alarm(&self) -> Result<Response> {
        self.keep_alive().await?;
        Response::ok("")
    }
}

impl JetstreamConsumer {
    /// Connects if the socket is gone, saves progress, and sets the next
    /// alarm. False when no Jetstream is configured.
    async fn keep_alive(&self) -> Result<bool> {
        let config = AppConfig::cached(&self.env).map_err(Error::RustError)?;
        let Some(base) = config.jetstream_url.clone() else {
            return Ok(false);
        };
        save(&self.env, &self.live).await;
        if !self.live.borrow().connected {
            if let Err(e) = self.connect(&base).await {
                console_error!("jetstream: cannot connect to {base}: {e}");
            }
        } else if self.live.borrow().caught_up(Date::now().as_millis() as f64) {
            if let Err(e) = crate::index::jetstream_alive(&self.env, &base).await {
                console_error!("jetstream: not marked alive: {e}");
            }
        }
        self.state.storage().set_alarm(ALARM_MS).await?;
        Ok(true)
    }

    async fn connect(&self, base: &str) -> Result<()> {
        let row = crate::index::jetstream_cursor(&self.env).await?;
        let saved = row.as_ref().and_then(|c| c.time_us).map(|t| t as i64);
        // After a rebuild: from its start, whatever was saved since.
        let rewind = row.as_ref().and_then(|c| c.rewind_to_us).map(|t| t as i64);
        let from = match (saved, rewind) {
            (Some(saved), Some(rewind)) => Some(saved.min(rewind)),
            (saved, rewind) => saved.or(rewind),
        };
        let cursor = jetstream::resume_cursor(from);
        let url = jetstream::subscribe_url(base, cursor);
        let ws = WebSocket::connect(url.parse()?).await?;
        ws.accept()?;
        console_log!("jetstream: connected to {url}");
        let connected_ms = Date::now().as_millis() as f64;
        let generation = {
            let mut live = self.live.borrow_mut();
            live.connected = true;
            live.newest_us = None;
            live.last_burst_ms = connected_ms;
            live.connected_ms = connected_ms;
            live.socket = Some(ws.clone());
            live.endpoint = base.to_string();
            live.generation += 1;
            live.generation
        };
        let (env, live, storage) = (self.env.clone(), self.live.clone(), self.state.storage());
        // `follow` listens before anything else awaits: a message the socket
        // dispatches with no listener is lost.
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = follow(&ws, &env, &live, saved).await {
                console_error!("jetstream: the stream failed: {e}");
            }
            let current = {
                let mut live = live.borrow_mut();
                let current = live.generation == generation;
                if current {
                    live.connected = false;
                    live.socket = None;
                }
                current
            };
            save(&env, &live).await;
            if current {
                if let Err(e) = crate::index::jetstream_down(&env).await {
                    console_error!("jetstream: not marked down: {e}");
                }
                if let Err(e) = storage.set_alarm(RECONNECT_MS).await {
                    console_error!("jetstream: no alarm to connect again: {e}");
                }
            }
        });
        let recorded = crate::index::jetstream_connected(&self.env, cursor, connected_ms);
        if let Err(e) = recorded.await {
            console_error!("jetstream: the connection's replay not recorded: {e}");
        }
        Ok(())
    }
}

/// Applies the messages until the socket closes: those that arrived
/// together (up to [`BATCH`]) in one D1 batch.
async fn follow(
    ws: &WebSocket,
    env: &Env,
    live: &Rc<RefCell<Live>>,
    replayed_until: Option<i64>,
) -> Result<()> {
    let config = AppConfig::cached(env).map_err(Error::RustError)?;
    let mut bursts = ws.events()?.ready_chunks(BATCH);
    while let Some(burst) = bursts.next().await {
        let mut texts = Vec::with_capacity(burst.len());
        let mut closed = false;
        for event in burst {
            match event? {
                WebsocketEvent::Message(message) => texts.extend(message.text()),
                WebsocketEvent::Close(close) => {
                    console_log!("jetstream: closed ({}: {})", close.code(), close.reason());
                    closed = true;
                    break;
                }
            }
        }
        let skipped = apply_burst(env, &config, live, replayed_until, &texts).await;
        let due =
            skipped || Date::now().as_millis() as f64 - live.borrow().saved_at_ms >= SAVE_EVERY_MS;
        if due {
            save(env, live).await;
        } else {
            save_soon(env, live);
        }
        if closed {
            return Ok(());
        }
    }
    Ok(())
}

/// Applies a burst of messages in one batch and counts them; true when one
/// was skipped.
async fn apply_burst(
    env: &Env,
    config: &AppConfig,
    live: &Rc<RefCell<Live>>,
    replayed_until: Option<i64>,
    texts: &[String],
) -> bool {
    let mut skips = Vec::new();
    let events: Vec<jetstream::Event> = texts
        .iter()
        .filter_map(|text| {
            jetstream::parse(text)
                .map_err(|s| skips.push(s.to_string()))
                .ok()
        })
        .collect();
    let changes: Vec<(&atcr_protocol::Did, &jetstream::Change)> = events
        .iter()
        .filter_map(|e| e.change.as_ref().ok().map(|c| (&e.did, c)))
        .collect();
    let mut outcomes = apply::apply_all(env, config, &changes).await.into_iter();
    {
        let mut live = live.borrow_mut();
        live.last_burst_ms = Date::now().as_millis() as f64;
        for event in &events {
            let outcome = match &event.change {
                Ok(_) => outcomes.next().unwrap_or(Ok(())),
                Err(skip) => Err(skip.to_string()),
            };
            // Events up to the saved cursor come again after a rewind:
            // applied again (harmless), counted once.
            let new = replayed_until.is_none_or(|until| event.time_us > until);
            live.time_us = live.time_us.max(Some(event.time_us));
            live.newest_us = live.newest_us.max(Some(event.time_us));
            match outcome {
                Ok(()) => live.applied += u64::from(new),
                Err(why) if new => skips.push(why),
                Err(_) => {}
            }
        }
        for why in &skips {
            console_warn!("jetstream: skipped: {why}");
            live.skipped += 1;
            live.last_skip = Some(why.clone());
        }
    }
    !skips.is_empty()
}

/// Saves the progress a second from now, unless a save is already coming:
/// the last events of a burst are saved even if no event follows them.
fn save_soon(env: &Env, live: &Rc<RefCell<Live>>) {
    if std::mem::replace(&mut live.borrow_mut().save_coming, true) {
        return;
    }
    let (env, live) = (env.clone(), live.clone());
    wasm_bindgen_futures::spawn_local(async move {
        Delay::from(std::time::Duration::from_millis(SAVE_EVERY_MS as u64)).await;
        live.borrow_mut().save_coming = false;
        save(&env, &live).await;
    });
}

/// Writes the progress not yet saved; kept for the next try if D1 fails.
async fn save(env: &Env, live: &Rc<RefCell<Live>>) {
    let (endpoint, time_us, applied, skipped, last_skip) = {
        let mut l = live.borrow_mut();
        if l.time_us.is_none() && l.applied == 0 && l.skipped == 0 {
            return;
        }
        l.saved_at_ms = Date::now().as_millis() as f64;
        (
            l.endpoint.clone(),
            l.time_us.take(),
            std::mem::take(&mut l.applied),
            std::mem::take(&mut l.skipped),
            l.last_skip.take(),
        )
    };
    let saved = crate::index::jetstream_progress(
        env,
        &endpoint,
        time_us,
        applied,
        skipped,
        last_skip.as_deref(),
    )
    .await;
    if let Err(e) = saved {
        console_error!("jetstream: progress not saved, kept for the next save: {e}");
        let mut l = live.borrow_mut();
        l.time_us = l.time_us.max(time_us);
        l.applied += applied;
        l.skipped += skipped;
        l.last_skip = l.last_skip.take().or(last_skip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected_at(ms: f64) -> Live {
        Live {
            connected: true,
            connected_ms: ms,
            last_burst_ms: ms,
            ..Live::default()
        }
    }

    #[test]
    fn a_replay_of_recent_events_is_not_caught_up() {
        // Reconnected at 100 s after a 3-second outage: the replay's events
        // are recent, but none is stamped after the connection opened.
        let mut live = connected_at(100_000.0);
        live.newest_us = Some(98_000_000);
        live.last_burst_ms = 100_500.0;
        assert!(!live.caught_up(101_000.0));
    }

    #[test]
    fn an_event_from_after_the_connection_shows_the_replay_is_over() {
        let mut live = connected_at(100_000.0);
        live.newest_us = Some(101_500_000);
        live.last_burst_ms = 101_600.0;
        assert!(live.caught_up(101_700.0));
    }

    #[test]
    fn a_quiet_socket_is_caught_up_and_a_closed_one_never() {
        let mut live = connected_at(100_000.0);
        assert!(!live.caught_up(104_000.0));
        assert!(live.caught_up(105_500.0));
        live.connected = false;
        assert!(!live.caught_up(105_500.0));
    }
}
