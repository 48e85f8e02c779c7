//! `atcr push SOURCE REGISTRY/NAME:TAG`: blobs the registry lacks go
//! straight from disk to the owner's hold (`upload.rs`), small ones
//! through the registry's own upload; then the manifests through the
//! appview (children of an index first, the tagged one last), which writes
//! the records as for any client.

use crate::progress::Progress;
use crate::registry::{Registry, Target};
use crate::retry::Failure;
use crate::source::{open, Place};
use crate::upload::{upload_blob, Sent, Settings, Slots};
use crate::Options;
use atcr_helper::store::CredentialStore;
use atcr_protocol::chunking::MIN_CHUNK;
use indicatif::HumanBytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// Blobs smaller than this go through the registry in one request (a
/// config, a small layer): one round trip, and below any plan's body limit.
const DIRECT_MIN: u64 = MIN_CHUNK;

pub fn push(
    store: &CredentialStore,
    source: &str,
    target: &str,
    opts: &Options,
) -> Result<String, String> {
    let target = Target::parse(target)?;
    let creds = store.get(&target.registry)?.ok_or_else(|| {
        format!(
            "not logged in to {0}: run `atcr login {0}` (or docker-credential-atcr login)",
            target.registry
        )
    })?;
    let source = open(&Place::parse(source)?)?;
    let image = &source.image;
    let registry = Registry::new(target.clone(), Some(creds), true);
    let progress = Progress::new();
    let fail = |e: Failure| e.message;

    // Refused here (another user's repository, no hold) before any byte goes.
    let access = registry.hold_access().map_err(fail)?;
    let settings = Settings {
        parallel: opts.parallel,
        part_size: opts.part_size,
        stop_after_parts: std::env::var("ATCR_TEST_STOP_AFTER_PARTS")
            .ok()
            .and_then(|n| n.parse().ok()),
        slots: Slots::new(opts.parallel),
    };
    let state_dir = crate::state::default_dir()?;
    let started = Instant::now();
    let mut total = Sent::default();
    let (mut present, mut linked, mut small) = (0, 0, 0);
    let mut to_hold = VecDeque::new();
    for blob in &image.blobs {
        let short = &blob.digest[..blob.digest.len().min(19)];
        if registry.has_blob(&blob.digest).map_err(fail)? {
            present += 1;
            progress.say(&format!("{short}: already in the registry"));
            continue;
        }
        let located = image.locate(&blob.digest)?;
        if blob.size < DIRECT_MIN {
            let bytes = located
                .read_all()
                .map_err(|e| format!("cannot read {}: {e}", blob.digest))?;
            registry.upload_small(&blob.digest, &bytes).map_err(fail)?;
            small += 1;
            total.bytes_sent += blob.size;
            progress.say(&format!("{short}: {} sent", HumanBytes(blob.size)));
            continue;
        }
        // The owner's hold may have it all the same (deleted from this
        // repository, or pushed to another): a mount links it, no bytes sent.
        if registry.link(&blob.digest).map_err(fail)? {
            linked += 1;
            progress.say(&format!("{short}: already in the hold, linked"));
            continue;
        }
        to_hold.push_back((blob, located));
    }
    // Up to `parallel` layers at once; their parts share `parallel` slots,
    // so memory stays at `parallel` parts whatever the number of layers.
    let direct = to_hold.len();
    let queue = Mutex::new(to_hold);
    let totals = Mutex::new(total);
    let failure = Mutex::new(None::<String>);
    std::thread::scope(|scope| {
        for _ in 0..settings.parallel.clamp(1, 64).min(direct) {
            scope.spawn(|| loop {
                if failure.lock().unwrap().is_some() {
                    return;
                }
                let Some((blob, located)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let outcome = to_the_hold(
                    &registry,
                    &blob.digest,
                    blob.size,
                    located,
                    &settings,
                    &state_dir,
                    &progress,
                    &access.hold.to_string(),
                );
                match outcome {
                    Ok(sent) => {
                        let mut t = totals.lock().unwrap();
                        t.parts_sent += sent.parts_sent;
                        t.parts_resumed += sent.parts_resumed;
                        t.bytes_sent += sent.bytes_sent;
                    }
                    Err(e) => {
                        failure.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    let total = totals.into_inner().unwrap();
    let top = image.top();
    for m in image.manifests.iter().filter(|m| m.digest != top.digest) {
        registry
            .put_manifest(&m.digest, &m.media_type, &m.bytes)
            .map_err(fail)?;
    }
    registry
        .put_manifest(&target.reference, &top.media_type, &top.bytes)
        .map_err(fail)?;
    Ok(format!(
        "pushed {}/{}:{} {} in {:.1} s: {} blobs to the hold, {} through the registry, \
         {} already present, {} linked from the hold; parts sent: {}, parts resumed: {}, bytes sent: {}",
        target.registry,
        target.name,
        target.reference,
        top.digest,
        started.elapsed().as_secs_f64(),
        direct,
        small,
        present,
        linked,
        total.parts_sent,
        total.parts_resumed,
        total.bytes_sent,
    ))
}

/// One blob to the hold, then linked into the repository.
#[allow(clippy::too_many_arguments)]
fn to_the_hold(
    registry: &Registry,
    digest: &str,
    size: u64,
    located: &crate::image::Located,
    settings: &Settings,
    state_dir: &std::path::Path,
    progress: &Progress,
    hold: &str,
) -> Result<Sent, String> {
    let short = &digest[..digest.len().min(19)];
    let began = Instant::now();
    let sent = upload_blob(registry, digest, located, settings, state_dir, progress)
        .map_err(|e| e.message)?;
    // In the hold now; the repository names it too (undoing any earlier
    // delete of it there), as after any upload through the registry.
    if !registry.link(digest).map_err(|e| e.message)? {
        return Err(format!(
            "{digest}: uploaded, but the registry does not find it in the hold"
        ));
    }
    let secs = began.elapsed().as_secs_f64().max(0.001);
    progress.say(&format!(
        "{short}: {} to {hold} in {} parts ({} sent, {} already stored), {}/s; \
         parts {:.1} s, verified by the hold {:.1} s",
        HumanBytes(size),
        sent.parts_sent + sent.parts_resumed,
        sent.parts_sent,
        sent.parts_resumed,
        HumanBytes((sent.bytes_sent as f64 / secs) as u64),
        sent.parts_secs,
        sent.complete_secs,
    ));
    Ok(sent)
}
