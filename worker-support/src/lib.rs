//! Runtime glue shared by the appview and hold workers.
//!
//! Only what needs the `worker` crate lives here; anything testable without
//! the Workers runtime belongs in `atcr-protocol`.

pub mod blocks;
pub mod records;
pub mod service_tokens;
pub mod subrequests;

pub use records::{list_records_page, records_with_prefix, KeyRange};

use atcr_protocol::health::{Check, HealthReport};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::{Duration, SystemTime};
use worker::{Date, Fetch, Headers, Method, Request, RequestInit, Response, Result};

/// The current time. `SystemTime::now()` panics on wasm32, so read the JS clock.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(Date::now().as_millis())
}

/// The current time as RFC 3339 (`2026-01-02T03:04:05.678Z`), as records and tokens write it.
pub fn now_rfc3339() -> String {
    chrono::DateTime::from_timestamp_millis(Date::now().as_millis() as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One query parameter of a request, decoded.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.url()
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// 128 random bits as hex: ids nobody can guess.
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// Serves a health report: 200 when every check passed, 503 otherwise.
pub fn health_response(report: &HealthReport) -> Result<Response> {
    let mut resp = json(report.status(), report)?;
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}

/// Sends one request and reports whether it answered with a status in `expect`.
pub async fn probe(
    name: &str,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    expect: &[u16],
) -> Check {
    timed(name, async {
        match send(method, url, headers).await {
            Ok(status) if expect.contains(&status) => Ok(format!("{url} answered {status}")),
            Ok(status) => Err(format!("{url} answered {status}")),
            Err(e) => Err(format!("{url} unreachable: {e}")),
        }
    })
    .await
}

/// Runs one probe and times it: `Ok(detail)` passes, `Err(detail)` fails.
pub async fn timed<F>(name: &str, probe: F) -> Check
where
    F: std::future::Future<Output = std::result::Result<String, String>>,
{
    let started = Date::now().as_millis();
    let outcome = probe.await;
    let elapsed_ms = Date::now().as_millis().saturating_sub(started);
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Check {
        name: name.into(),
        ok,
        detail,
        elapsed_ms,
    }
}

/// A check that failed before anything was sent (e.g. a setting is missing).
pub fn failed_check(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail: detail.into(),
        elapsed_ms: 0,
    }
}

/// How long a call to another service (PDS, PLC, resolver, hold) may take:
/// a service that accepts the connection and then says nothing is reported
/// as down instead of holding the client's request open.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a write to a PDS may take: a PDS applies one repository's
/// writes one at a time, so a write behind many others (concurrent pushes
/// to one account) waits its turn; still well under the 30 s after which a
/// client should hear that something is down.
pub const PDS_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// Sends `fetch`, giving up (and aborting it) after `timeout`.
pub async fn send_within(fetch: Fetch, timeout: std::time::Duration) -> Result<Response> {
    use futures_util::future::{select, Either};
    subrequests::note();
    let controller = worker::AbortController::default();
    let signal = controller.signal();
    let send = std::pin::pin!(fetch.send_with_signal(&signal));
    let timer = std::pin::pin!(worker::Delay::from(timeout));
    match select(send, timer).await {
        Either::Left((answer, _)) => answer,
        Either::Right(((), _)) => {
            controller.abort();
            Err(worker::Error::RustError(format!(
                "no answer within {} s",
                timeout.as_secs()
            )))
        }
    }
}

/// `send_within(fetch, CALL_TIMEOUT)`.
pub async fn call(fetch: Fetch) -> Result<Response> {
    send_within(fetch, CALL_TIMEOUT).await
}

async fn send(method: Method, url: &str, headers: &[(String, String)]) -> Result<u16> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(h);
    let req = Request::new_with_init(url, &init)?;
    let resp = call(Fetch::Request(req)).await?;
    Ok(resp.status_code())
}

/// Fetches and parses the DID document of `did` (PLC directory or did:web).
pub async fn resolve_did(
    did: &atcr_protocol::Did,
    plc_url: &str,
) -> std::result::Result<atcr_protocol::DidDocument, String> {
    let url = did
        .document_url(plc_url)
        .ok_or_else(|| format!("cannot resolve DIDs of method '{}'", did.method()))?;
    let mut resp = call(Fetch::Url(url.parse().map_err(|e| format!("{url}: {e}"))?))
        .await
        .map_err(|e| format!("{url} unreachable: {e}"))?;
    if resp.status_code() != 200 {
        return Err(format!("{url} answered {}", resp.status_code()));
    }
    let doc: atcr_protocol::DidDocument = resp
        .json()
        .await
        .map_err(|e| format!("{url}: not a DID document: {e}"))?;
    if doc.id != did.as_str() {
        return Err(format!("{url} describes {} instead of {did}", doc.id));
    }
    Ok(doc)
}

/// How long a resolved DID document is reused within one isolate.
const DID_CACHE_MS: u64 = 5 * 60 * 1000;

thread_local! {
    static DID_CACHE: IsolateCache<atcr_protocol::DidDocument> = IsolateCache::new(1024);
}

/// `resolve_did`, remembered for a few minutes, in this isolate and then in
/// the location's shared cache: every authenticated request needs the
/// caller's key, and documents change rarely.
pub async fn resolve_did_cached(
    did: &atcr_protocol::Did,
    plc_url: &str,
) -> std::result::Result<atcr_protocol::DidDocument, String> {
    if let Some(doc) = DID_CACHE.with(|c| c.get(did.as_str())) {
        return Ok(doc);
    }
    let shared = SharedCache::new("did");
    let doc = match shared.get(did.as_str()).await {
        Some(doc) => doc,
        None => {
            let doc = resolve_did(did, plc_url).await?;
            shared.put(did.as_str(), &doc, DID_CACHE_MS / 1000).await;
            doc
        }
    };
    DID_CACHE.with(|c| c.put(did.as_str(), doc.clone(), DID_CACHE_MS));
    Ok(doc)
}

/// `did`'s document resolved afresh (its identity changed: a new handle, a
/// new PDS), and remembered in place of what the caches held.
pub async fn resolve_did_again(
    did: &atcr_protocol::Did,
    plc_url: &str,
) -> std::result::Result<atcr_protocol::DidDocument, String> {
    let doc = resolve_did(did, plc_url).await?;
    SharedCache::new("did")
        .put(did.as_str(), &doc, DID_CACHE_MS / 1000)
        .await;
    DID_CACHE.with(|c| c.put(did.as_str(), doc.clone(), DID_CACHE_MS));
    Ok(doc)
}

/// JSON values shared by every isolate of a Worker in one location, in the
/// Workers Cache API. A second level behind `IsolateCache`: new isolates
/// start warm. Misses and failures are silent; the caller fetches again.
pub struct SharedCache {
    namespace: &'static str,
}

impl SharedCache {
    pub fn new(namespace: &'static str) -> Self {
        SharedCache { namespace }
    }

    /// The Cache API keys entries by URL; this host is never fetched.
    fn url(&self, key: &str) -> String {
        let key: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        format!("https://atcr-cache.invalid/{}/{key}", self.namespace)
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut resp = worker::Cache::default()
            .get(self.url(key), false)
            .await
            .ok()??;
        resp.json().await.ok()
    }

    pub async fn put<T: Serialize>(&self, key: &str, value: &T, ttl_secs: u64) {
        let Ok(mut resp) = Response::from_json(value) else {
            return;
        };
        if resp
            .headers_mut()
            .set("Cache-Control", &format!("max-age={ttl_secs}"))
            .is_err()
        {
            return;
        }
        let _ = worker::Cache::default().put(self.url(key), resp).await;
    }
}

/// A small per-isolate cache with expiry and a size bound. For values that
/// are cheap to fetch again: a miss is always safe.
pub struct IsolateCache<V: Clone> {
    entries: std::cell::RefCell<std::collections::HashMap<String, (u64, V)>>,
    capacity: usize,
}

impl<V: Clone> IsolateCache<V> {
    pub fn new(capacity: usize) -> Self {
        IsolateCache {
            entries: std::cell::RefCell::new(std::collections::HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let now = Date::now().as_millis();
        self.entries
            .borrow()
            .get(key)
            .filter(|(exp, _)| *exp > now)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value` for `ttl_ms` (u64::MAX: until evicted).
    pub fn put(&self, key: &str, value: V, ttl_ms: u64) {
        let now = Date::now().as_millis();
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= self.capacity {
            entries.retain(|_, (exp, _)| *exp > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key.to_string(), (now.saturating_add(ttl_ms), value));
    }

    pub fn remove(&self, key: &str) {
        self.entries.borrow_mut().remove(key);
    }
}
