//! Manifests and tags remembered within one isolate. A manifest's bytes
//! never change under its digest, so they are kept until evicted; a tag
//! moves, so it is trusted for a few seconds (a pusher's own isolate sees
//! the new value at once: the PUT updates the cache).

use atcr_protocol::{Did, Digest};
use worker_support::IsolateCache;

/// A manifest as served: its media type, digest and exact bytes.
#[derive(Clone)]
pub struct Served {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

const TAG_CACHE_MS: u64 = 10_000;

thread_local! {
    static MANIFESTS: IsolateCache<Served> = IsolateCache::new(512);
    static TAGS: IsolateCache<Digest> = IsolateCache::new(4096);
}

fn manifest_key(owner: &Did, repository: &str, digest: &Digest) -> String {
    format!("{owner}/{repository}@{digest}")
}

fn tag_key(owner: &Did, repository: &str, tag: &str) -> String {
    format!("{owner}/{repository}:{tag}")
}

pub fn manifest(owner: &Did, repository: &str, digest: &Digest) -> Option<Served> {
    MANIFESTS.with(|c| c.get(&manifest_key(owner, repository, digest)))
}

pub fn remember_manifest(owner: &Did, repository: &str, served: &Served) {
    let key = manifest_key(owner, repository, &served.digest);
    MANIFESTS.with(|c| c.put(&key, served.clone(), u64::MAX));
}

pub fn forget_manifest(owner: &Did, repository: &str, digest: &Digest) {
    MANIFESTS.with(|c| c.remove(&manifest_key(owner, repository, digest)));
}

pub fn tag(owner: &Did, repository: &str, tag: &str) -> Option<Digest> {
    TAGS.with(|c| c.get(&tag_key(owner, repository, tag)))
}

pub fn remember_tag(owner: &Did, repository: &str, tag: &str, digest: &Digest) {
    let key = tag_key(owner, repository, tag);
    TAGS.with(|c| c.put(&key, digest.clone(), TAG_CACHE_MS));
}

pub fn forget_tag(owner: &Did, repository: &str, tag: &str) {
    TAGS.with(|c| c.remove(&tag_key(owner, repository, tag)));
}
