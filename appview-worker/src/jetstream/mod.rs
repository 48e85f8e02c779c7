//! The Jetstream consumer: the index follows the network's `io.atcr.*`
//! records, whoever wrote them.
//!
//! A Durable Object, because a WebSocket needs one place that holds it:
//! a Worker's fetch isolate lives for one request, a Durable Object (one,
//! by name) stays while its socket is open. It subscribes to `JETSTREAM_URL`
//! with `wantedCollections` = the collections the index follows, from its
//! cursor in D1 minus a few seconds (`atcr_protocol::jetstream`); reads each
//! message (`parse`: a record that breaks its lexicon is skipped and
//! counted), applies it through `index` (`apply.rs`), and saves its
//! progress at most every second (and at once after a skip). Applying an
//! event twice leaves the index as once, so the rewind and a cursor saved a
//! little late cost only repeated writes.
//!
//! What keeps it running: the cron trigger pokes it every minute
//! (`poke`, from the scheduled event), and it sets itself an alarm every
//! 30 seconds (2 seconds after its socket closes); each checks the socket
//! and connects again when it is gone. `JETSTREAM_URL` empty: it does nothing.

mod apply;

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

/// Starts the consumer if it is not running (the cron trigger calls this).
pub async fn poke(env: &Env) -> Result<()> {
    let stub = env
        .durable_object(JETSTREAM_BINDING)?
        .get_by_name(INSTANCE)?;
    let mut res = stub
        .fetch_with_str("https://jetstream.internal/poke")
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
    endpoint: String,
    /// The newest event applied since the last save.
    time_us: Option<i64>,
    applied: u64,
    skipped: u64,
    last_skip: Option<String>,
    saved_at_ms: f64,
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

    async fn fetch(&self, _req: Request) -> Result<Response> {
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
        }
        self.state.storage().set_alarm(ALARM_MS).await?;
        Ok(true)
    }

    async fn connect(&self, base: &str) -> Result<()> {
        let saved = crate::index::jetstream_cursor(&self.env)
            .await?
            .and_then(|c| c.time_us)
            .map(|t| t as i64);
        let cursor = jetstream::resume_cursor(saved);
        let url = jetstream::subscribe_url(base, cursor);
        let ws = WebSocket::connect(url.parse()?).await?;
        ws.accept()?;
        console_log!("jetstream: connected to {url}");
        {
            let mut live = self.live.borrow_mut();
            live.connected = true;
            live.endpoint = base.to_string();
        }
        let (env, live, storage) = (self.env.clone(), self.live.clone(), self.state.storage());
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = follow(&ws, &env, &live, saved).await {
                console_error!("jetstream: the stream failed: {e}");
            }
            live.borrow_mut().connected = false;
            save(&env, &live).await;
            if let Err(e) = storage.set_alarm(RECONNECT_MS).await {
                console_error!("jetstream: no alarm to connect again: {e}");
            }
        });
        Ok(())
    }
}

/// Applies each message until the socket closes. `replayed_until`: the
/// cursor saved when it connected.
async fn follow(
    ws: &WebSocket,
    env: &Env,
    live: &Rc<RefCell<Live>>,
    replayed_until: Option<i64>,
) -> Result<()> {
    let config = AppConfig::cached(env).map_err(Error::RustError)?;
    let mut events = ws.events()?;
    while let Some(event) = events.next().await {
        let text = match event? {
            WebsocketEvent::Message(message) => match message.text() {
                Some(text) => text,
                None => continue,
            },
            WebsocketEvent::Close(close) => {
                console_log!("jetstream: closed ({}: {})", close.code(), close.reason());
                return Ok(());
            }
        };
        let skipped = match jetstream::parse(&text) {
            Ok(event) => {
                let outcome = match &event.change {
                    Ok(change) => apply::apply(env, &config, &event.did, change).await,
                    Err(skip) => Err(skip.to_string()),
                };
                // Events up to the saved cursor come again after a rewind:
                // applied again (harmless), counted once.
                let new = replayed_until.is_none_or(|until| event.time_us > until);
                let mut live = live.borrow_mut();
                live.time_us = live.time_us.max(Some(event.time_us));
                match outcome {
                    Ok(()) => {
                        live.applied += u64::from(new);
                        None
                    }
                    Err(why) => new.then_some(why),
                }
            }
            Err(skip) => Some(skip.to_string()),
        };
        if let Some(why) = &skipped {
            console_warn!("jetstream: skipped: {why}");
            let mut live = live.borrow_mut();
            live.skipped += 1;
            live.last_skip = Some(why.clone());
        }
        let due = skipped.is_some()
            || Date::now().as_millis() as f64 - live.borrow().saved_at_ms >= SAVE_EVERY_MS;
        if due {
            save(env, live).await;
        }
    }
    Ok(())
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
