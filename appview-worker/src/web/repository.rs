//! The repository page: its tags with kind, platforms, size, digest and age
//! (each tag's manifest record read from the owner's PDS, all at once), 25
//! a page, newest push or name first; the holds its images live in; the
//! pull count and command, the description; its stars and the viewer's
//! star button.

use super::format::{age, human_bytes, is_index, kind, platform_name, short_digest, when};
use super::sign_in::{form_csrf, session_hash};
use super::stars::STAR_FORM;
use super::views::{Repository, TagItem};
use super::{not_found, render, Page};
use crate::atproto::pds::get_record;
use crate::config::AppConfig;
use crate::index::{self, RepositoryRow, TagOrder, TagRow};
use atcr_protocol::markdown::to_safe_html;
use atcr_protocol::record_keys::repo_page_record_key;
use atcr_protocol::Did;
use atcr_protocol::{collections, manifest};
use worker::{Date, Env, Request};
use worker_support::{query_param, IsolateCache};

/// Tags a page shows.
const TAGS_PER_PAGE: u32 = 25;

pub async fn repository(
    req: &Request,
    env: &Env,
    config: &AppConfig,
    handle: &str,
    name: &str,
) -> Page {
    let Some(repo) = index::repository(env, handle, name).await? else {
        return not_found(format!("No repository {handle}/{name} is known here."));
    };
    let (order, sort) = match query_param(req, "sort").as_deref() {
        Some("name") => (TagOrder::Name, "name"),
        _ => (TagOrder::Pushed, "pushed"),
    };
    let tag_count = repo.tags as u32;
    let pages = tag_count.div_ceil(TAGS_PER_PAGE).max(1);
    let page = query_param(req, "page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let offset = (page - 1) * TAGS_PER_PAGE;
    let session = session_hash(req);
    let starred = async {
        match &session {
            Some(hash) => index::starred_by_session(env, &repo.owner_did, &repo.name, hash).await,
            None => Ok(false),
        }
    };
    let (rows, holds, starred) = futures_util::join!(
        index::tags(
            env,
            &repo.owner_did,
            &repo.name,
            order,
            TAGS_PER_PAGE,
            offset
        ),
        index::repository_holds(env, &repo.owner_did, &repo.name),
        starred
    );
    let rows = rows?;
    // Each tag may need its manifest record from the PDS: ask for them all at once.
    let now = Date::now().as_millis() as f64;
    let (tags, description_html) = futures_util::join!(
        futures_util::future::join_all(rows.iter().map(|row| tag_item(row, &repo, now))),
        page_description(&repo)
    );
    let link = |page: u32| format!("/r/{}/{}?sort={sort}&page={page}", repo.handle, repo.name);
    // The owner's page record, else the newest image's own description.
    let summary = match description_html {
        Some(_) => None,
        None => tags.iter().find_map(|t| t.description.clone()),
    };
    render(&Repository {
        query: String::new(),
        host: config.service.clone(),
        handle: repo.handle.clone(),
        name: repo.name.clone(),
        owner_did: repo.owner_did.clone(),
        pulls: repo.pulls as u64,
        stars: repo.stars as u64,
        starred: starred?,
        star_csrf: form_csrf(req, config, STAR_FORM),
        updated: when(repo.updated_at),
        latest: tags
            .iter()
            .find(|t| t.tag == "latest")
            .or(tags.first())
            .map(|t| t.tag.clone())
            .unwrap_or_else(|| "latest".into()),
        holds: holds?,
        first: u64::from(offset) + 1,
        last: u64::from(offset) + tags.len() as u64,
        tag_count: u64::from(tag_count),
        tags,
        sort,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        description_html,
        summary,
    })
}

async fn tag_item(row: &TagRow, repo: &RepositoryRow, now: f64) -> TagItem {
    let is_index = is_index(row.media_type.as_deref());
    let kind = kind(row.media_type.as_deref(), row.artifact_type.as_deref());
    let platforms = row
        .platforms
        .as_deref()
        .and_then(|json| serde_json::from_str::<Vec<serde_json::Value>>(json).ok())
        .unwrap_or_default()
        .iter()
        .map(platform_name)
        .collect();
    let facts = match &row.record_uri {
        Some(uri) => manifest_facts(repo, uri, &row.digest).await,
        None => None,
    };
    let size = match (&facts, is_index) {
        (Some(facts), false) => human_bytes(facts.size),
        _ => String::new(),
    };
    TagItem {
        description: facts.and_then(|f| f.description),
        tag: row.tag.clone(),
        short_digest: short_digest(&row.digest),
        digest: row.digest.clone(),
        kind,
        platforms,
        size,
        updated: when(row.updated_at),
        updated_iso: chrono::DateTime::from_timestamp_millis(row.updated_at as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        age: age(row.updated_at, now),
    }
}

/// What the repository page shows of a manifest, from its record.
#[derive(Clone)]
struct ManifestFacts {
    /// Config plus layers.
    size: u64,
    description: Option<String>,
}

thread_local! {
    /// Manifests are content-addressed: their facts, once read, never change.
    static FACTS: IsolateCache<ManifestFacts> = IsolateCache::new(4096);
    /// `io.atcr.repo.page` descriptions, briefly.
    static PAGES: IsolateCache<Option<String>> = IsolateCache::new(1024);
}

const PAGE_CACHE_MS: u64 = 60_000;

/// The manifest's record in the owner's PDS, summarized.
async fn manifest_facts(
    repo: &RepositoryRow,
    record_uri: &str,
    digest: &str,
) -> Option<ManifestFacts> {
    if let Some(facts) = FACTS.with(|c| c.get(digest)) {
        return Some(facts);
    }
    let did: Did = repo.owner_did.parse().ok()?;
    let rkey = record_uri.rsplit('/').next()?;
    let record = get_record(&repo.pds_endpoint, &did, collections::MANIFEST, rkey)
        .await
        .ok()??;
    let value = &record["value"];
    let sizes = |list: &serde_json::Value| -> u64 {
        list.as_array()
            .map(|l| l.iter().filter_map(|d| d["size"].as_u64()).sum())
            .unwrap_or(0)
    };
    let facts = ManifestFacts {
        size: sizes(&value["layers"]) + value["config"]["size"].as_u64().unwrap_or(0),
        description: value["annotations"][manifest::DESCRIPTION_ANNOTATION]
            .as_str()
            .map(str::to_string),
    };
    FACTS.with(|c| c.put(digest, facts.clone(), u64::MAX / 2));
    Some(facts)
}

/// The owner changed the description: this isolate shows it at once.
pub(super) fn description_changed(owner_did: &str, name: &str) {
    PAGES.with(|c| c.remove(&format!("{owner_did}/{name}")));
}

/// The owner's `io.atcr.repo.page` description (Markdown) for the
/// repository, rendered so that nothing in it can run.
async fn page_description(repo: &RepositoryRow) -> Option<String> {
    let key = format!("{}/{}", repo.owner_did, repo.name);
    if let Some(cached) = PAGES.with(|c| c.get(&key)) {
        return cached;
    }
    let did: Did = repo.owner_did.parse().ok()?;
    let rkey = repo_page_record_key(&repo.name);
    let record = get_record(&repo.pds_endpoint, &did, collections::REPO_PAGE, &rkey)
        .await
        .ok()?;
    let html = record
        .as_ref()
        .and_then(|r| r["value"]["description"].as_str())
        .filter(|text| !text.trim().is_empty())
        .map(to_safe_html);
    PAGES.with(|c| c.put(&key, html.clone(), PAGE_CACHE_MS));
    html
}
