//! One blob from disk straight to the owner's hold: `startUpload` (with
//! the digest, so a shared hold checks its quota first), then its parts in
//! parallel, each read from disk at its offset right before it is sent (so
//! memory holds at most `parallel` parts), each PUT to a URL the hold
//! presigned and retried on its own, each ETag saved (`state.rs`) as it
//! arrives; then `completeUpload`, where the hold verifies the digest and
//! charges the quota. A push interrupted anywhere resumes from the parts
//! saved; a session the hold no longer knows starts over.

use crate::image::Located;
use crate::progress::{Bar, Progress};
use crate::registry::{now_secs, Registry};
use crate::retry::{retry, Failure};
use crate::state::{StateFile, UploadState};
use atcr_protocol::chunking::{part_size_for, plan_parts, PlannedPart};
use atcr_protocol::hold_api::{
    PresignedUrl, UploadCompleted, UploadStarted, ABORT_UPLOAD, COMPLETE_UPLOAD,
    GET_UPLOAD_PART_URL, START_UPLOAD,
};
use serde_json::json;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

pub struct Settings {
    pub parallel: usize,
    pub part_size: u64,
    /// Test hook (`ATCR_TEST_STOP_AFTER_PARTS`): end the process after this
    /// many parts were confirmed in this run, as an interruption would.
    pub stop_after_parts: Option<u64>,
    /// Parts in flight across every blob being sent.
    pub slots: Slots,
}

/// A counting semaphore: a part takes a slot before it is read from disk
/// and gives it back once storage confirmed it, so however many blobs go
/// at once, at most `parallel` parts are in memory.
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    pub fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap();
        while *free == 0 {
            free = self.freed.wait(free).unwrap();
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap() += 1;
        self.0.freed.notify_one();
    }
}

/// What an upload sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub parts_sent: u64,
    pub parts_resumed: u64,
    pub bytes_sent: u64,
    /// Sending the parts, and `completeUpload` (the hold's verification
    /// and publishing), in seconds.
    pub parts_secs: f64,
    pub complete_secs: f64,
}

/// Counts parts confirmed across every blob of this run (for the test hook).
static PARTS_CONFIRMED: AtomicU64 = AtomicU64::new(0);

pub fn upload_blob(
    registry: &Registry,
    digest: &str,
    blob: &Located,
    settings: &Settings,
    state_dir: &Path,
    progress: &Progress,
) -> Result<Sent, Failure> {
    let hold = registry.hold_access()?.hold.to_string();
    let file = StateFile::new(state_dir, &hold, digest);
    match upload_once(registry, &hold, digest, blob, settings, &file, progress) {
        // The hold no longer knows the session (expired, or the storage
        // upload was swept): start over, once.
        Err(e) if e.hold_error.as_deref() == Some("UploadNotFound") => {
            file.remove();
            progress.say(&format!(
                "{digest}: the upload was gone from the hold; starting over"
            ));
            upload_once(registry, &hold, digest, blob, settings, &file, progress)
        }
        other => other,
    }
}

fn upload_once(
    registry: &Registry,
    hold: &str,
    digest: &str,
    blob: &Located,
    settings: &Settings,
    file: &StateFile,
    progress: &Progress,
) -> Result<Sent, Failure> {
    let size = blob.len;
    let state = match file.load() {
        Some(s) if s.resumable(hold, digest, size, now_secs()) => s,
        saved => {
            // A session that cannot be continued (another size, too close to
            // its end) is given up, so its parts leave storage now.
            if let Some(old) = saved.filter(|s| s.expires_at > now_secs()) {
                let _ = registry.hold_call::<serde_json::Value>(
                    ABORT_UPLOAD,
                    &json!({ "session": old.session }),
                );
            }
            let started: UploadStarted =
                registry.hold_call(START_UPLOAD, &json!({ "digest": digest }))?;
            let state = UploadState {
                hold: hold.to_string(),
                digest: digest.to_string(),
                size,
                part_size: part_size_for(size, settings.part_size),
                session: started.session,
                expires_at: started.expires_at,
                parts: Default::default(),
            };
            file.save(&state).map_err(Failure::fatal)?;
            state
        }
    };
    let plan = plan_parts(size, state.part_size);
    let missing = state.missing(&plan);
    let resumed = (plan.len() - missing.len()) as u64;
    let done_bytes: u64 = plan
        .iter()
        .filter(|p| state.parts.contains_key(&p.number))
        .map(|p| p.len)
        .sum();
    let short = &digest[..digest.len().min(19)];
    if resumed > 0 {
        progress.say(&format!(
            "{short}: resuming, {resumed} of {} parts already stored",
            plan.len()
        ));
    }
    let bar = progress.bar(short, size, done_bytes);
    let session = state.session.clone();
    let shared = Shared {
        queue: Mutex::new(missing.into_iter().collect()),
        state: Mutex::new(state),
        failure: Mutex::new(None),
        sent: Mutex::new(Sent {
            parts_resumed: resumed,
            ..Sent::default()
        }),
    };
    let workers = settings.parallel.clamp(1, 64);
    let began = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| send_parts(registry, blob, &session, &shared, file, &bar, settings));
        }
    });
    bar.finish();
    if let Some(failure) = shared.failure.into_inner().unwrap() {
        return Err(failure);
    }
    let state = shared.state.into_inner().unwrap();
    let parts_secs = began.elapsed().as_secs_f64();
    let began = std::time::Instant::now();
    let completed: UploadCompleted = registry
        .hold_call(
            COMPLETE_UPLOAD,
            &json!({ "session": session, "parts": state.completed(), "digest": digest }),
        )
        .inspect_err(|e| {
            // Refused for good (the digest does not match, over the quota):
            // the hold discarded the bytes, there is nothing to resume.
            if !e.retryable && e.hold_error.as_deref() != Some("UploadNotFound") {
                file.remove();
            }
        })?;
    file.remove();
    if completed.size != size {
        return Err(Failure::fatal(format!(
            "the hold stored {} bytes for {digest}, not {size}",
            completed.size
        )));
    }
    Ok(Sent {
        parts_secs,
        complete_secs: began.elapsed().as_secs_f64(),
        ..shared.sent.into_inner().unwrap()
    })
}

struct Shared {
    queue: Mutex<VecDeque<PlannedPart>>,
    state: Mutex<UploadState>,
    failure: Mutex<Option<Failure>>,
    sent: Mutex<Sent>,
}

/// One worker: takes parts off the queue until it is empty or a part failed.
fn send_parts(
    registry: &Registry,
    blob: &Located,
    session: &str,
    shared: &Shared,
    file: &StateFile,
    bar: &Bar,
    settings: &Settings,
) {
    loop {
        if shared.failure.lock().unwrap().is_some() {
            return;
        }
        let Some(part) = shared.queue.lock().unwrap().pop_front() else {
            return;
        };
        let slot = settings.slots.take();
        let outcome = send_part(registry, blob, session, part);
        drop(slot);
        match outcome {
            Ok(etag) => {
                {
                    let mut state = shared.state.lock().unwrap();
                    state.parts.insert(part.number, etag);
                    if let Err(e) = file.save(&state) {
                        *shared.failure.lock().unwrap() = Some(Failure::fatal(e));
                        return;
                    }
                    // The test hook ends the process holding the state's
                    // lock: no other part's save is then half-written.
                    let confirmed = PARTS_CONFIRMED.fetch_add(1, Ordering::SeqCst) + 1;
                    if settings.stop_after_parts == Some(confirmed) {
                        eprintln!("stopping after {confirmed} parts (ATCR_TEST_STOP_AFTER_PARTS)");
                        std::process::exit(75);
                    }
                }
                {
                    let mut sent = shared.sent.lock().unwrap();
                    sent.parts_sent += 1;
                    sent.bytes_sent += part.len;
                }
                bar.add(part.len);
            }
            Err(e) => {
                let mut failure = shared.failure.lock().unwrap();
                failure.get_or_insert(Failure {
                    message: format!("part {}: {e}", part.number),
                    ..e
                });
                return;
            }
        }
    }
}

/// Sends one part: a fresh presigned URL, the bytes read from disk, a PUT;
/// the whole retried. Answers the part's ETag.
fn send_part(
    registry: &Registry,
    blob: &Located,
    session: &str,
    part: PlannedPart,
) -> Result<String, Failure> {
    let body = json!({ "session": session, "partNumber": part.number });
    retry("part", || {
        let url: PresignedUrl = registry.hold_call(GET_UPLOAD_PART_URL, &body)?;
        let bytes = blob.read_range(part.offset, part.len)?;
        let resp = registry
            .agent()
            .put(&url.url)
            .send(&bytes[..])
            .map_err(Failure::transport)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Failure::status(
                status,
                format!("storage answered {status} to part {}", part.number),
            ));
        }
        resp.headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Failure::fatal("storage answered a part without an ETag"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn slots_bound_the_parts_in_flight() {
        let slots = Slots::new(3);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
