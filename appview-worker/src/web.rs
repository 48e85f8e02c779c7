//! The web UI: server-rendered pages over the D1 index (templates in
//! `templates/`, compiled in by askama, which escapes everything it prints).
//!
//! | path | page |
//! |---|---|
//! | `/` | what ATCR is, how to push, recently pushed repositories |
//! | `/search?q=` | repositories whose `<handle>/<name>` contains the text |
//! | `/u/<handle>` | a user's repositories |
//! | `/r/<handle>/<repository>` | description, tags with kind, platforms, size, digest; pull count and command |

use crate::config::AppConfig;
use crate::index::{self, RepositoryRow, TagRow};
use crate::manifests::MANIFEST_COLLECTION;
use crate::pds::get_record;
use askama::Template;
use atcr_protocol::manifest::{DOCKER_LIST, OCI_INDEX};
use atcr_protocol::markdown::to_safe_html;
use atcr_protocol::Did;
use worker::{Env, Method, Request, Response, Result};
use worker_support::{query_param, IsolateCache};

const RECENT: u32 = 20;
/// Owners describe a repository with an `io.atcr.repo.page` record whose key
/// is the repository name (`/` written as `~`).
const PAGE_COLLECTION: &str = "io.atcr.repo.page";
const SEARCH_RESULTS: u32 = 50;

/// Answers `req` if it is a page of the UI.
pub async fn serve(req: &Request, env: &Env, config: &AppConfig) -> Option<Result<Response>> {
    if req.method() != Method::Get {
        return None;
    }
    let path = req.path();
    let page = match path.as_str() {
        "/" => home(env, config).await,
        "/search" => search(req, env).await,
        p => match (p.strip_prefix("/u/"), p.strip_prefix("/r/")) {
            (Some(handle), _) => user(env, handle).await,
            (_, Some(rest)) => match rest.split_once('/') {
                Some((handle, name)) => repository(env, config, handle, name).await,
                None => not_found(format!("{rest} names no repository")),
            },
            _ => return None,
        },
    };
    let (status, html) = match page {
        Ok(page) => page,
        Err(e) => {
            worker::console_error!("page {path} failed: {e}");
            match render(&Failed {
                query: String::new(),
            }) {
                Ok((_, html)) => (500, html),
                Err(e) => return Some(Err(e)),
            }
        }
    };
    Some(Response::from_html(html).map(|r| r.with_status(status)))
}

type Page = Result<(u16, String)>;

fn render(template: &impl Template) -> Page {
    let html = template
        .render()
        .map_err(|e| worker::Error::RustError(format!("rendering failed: {e}")))?;
    Ok((200, html))
}

fn not_found(message: String) -> Page {
    let (_, html) = render(&NotFound {
        query: String::new(),
        message,
    })?;
    Ok((404, html))
}

struct RepoItem {
    handle: String,
    name: String,
    pulls: u64,
    tags: u64,
    updated: String,
}

impl From<&RepositoryRow> for RepoItem {
    fn from(row: &RepositoryRow) -> Self {
        RepoItem {
            handle: row.handle.clone(),
            name: row.name.clone(),
            pulls: row.pulls as u64,
            tags: row.tags as u64,
            updated: when(row.updated_at),
        }
    }
}

struct TagItem {
    /// The manifest's `org.opencontainers.image.description` annotation.
    description: Option<String>,
    tag: String,
    digest: String,
    short_digest: String,
    kind: String,
    platforms: Vec<String>,
    size: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    query: String,
    host: String,
    repos: Vec<RepoItem>,
    empty: &'static str,
}

#[derive(Template)]
#[template(path = "search.html")]
struct Search {
    query: String,
    repos: Vec<RepoItem>,
    empty: &'static str,
}

#[derive(Template)]
#[template(path = "user.html")]
struct User {
    query: String,
    handle: String,
    did: String,
    repos: Vec<RepoItem>,
    empty: &'static str,
}

#[derive(Template)]
#[template(path = "repository.html")]
struct Repository {
    query: String,
    host: String,
    handle: String,
    name: String,
    pulls: u64,
    updated: String,
    latest: String,
    tags: Vec<TagItem>,
    /// From the owner's `io.atcr.repo.page` record: safe HTML.
    description_html: Option<String>,
    /// Else the newest image's description annotation: plain text.
    summary: Option<String>,
}

#[derive(Template)]
#[template(path = "failed.html")]
struct Failed {
    query: String,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound {
    query: String,
    message: String,
}

async fn home(env: &Env, config: &AppConfig) -> Page {
    let rows = index::recent_repositories(env, RECENT).await?;
    render(&Home {
        query: String::new(),
        host: config.service.clone(),
        repos: rows.iter().map(RepoItem::from).collect(),
        empty: "Nothing has been pushed here yet.",
    })
}

async fn search(req: &Request, env: &Env) -> Page {
    let query = query_param(req, "q").unwrap_or_default().trim().to_string();
    let rows = if query.is_empty() {
        Vec::new()
    } else {
        index::search_repositories(env, &query, SEARCH_RESULTS).await?
    };
    render(&Search {
        query,
        repos: rows.iter().map(RepoItem::from).collect(),
        empty: "No repository matches.",
    })
}

async fn user(env: &Env, handle: &str) -> Page {
    let rows = index::user_repositories(env, handle).await?;
    let Some(first) = rows.first() else {
        return not_found(format!("No repositories of {handle} are known here."));
    };
    render(&User {
        query: String::new(),
        handle: handle.to_string(),
        did: first.owner_did.clone(),
        repos: rows.iter().map(RepoItem::from).collect(),
        empty: "",
    })
}

async fn repository(env: &Env, config: &AppConfig, handle: &str, name: &str) -> Page {
    let Some(repo) = index::repository(env, handle, name).await? else {
        return not_found(format!("No repository {handle}/{name} is known here."));
    };
    let rows = index::tags(env, &repo.owner_did, &repo.name).await?;
    // Each tag may need its manifest record from the PDS: ask for them all at once.
    let (tags, description_html) = futures_util::join!(
        futures_util::future::join_all(rows.iter().map(|row| tag_item(row, &repo))),
        page_description(&repo)
    );
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
        pulls: repo.pulls as u64,
        updated: when(repo.updated_at),
        latest: tags
            .iter()
            .find(|t| t.tag == "latest")
            .or(tags.first())
            .map(|t| t.tag.clone())
            .unwrap_or_else(|| "latest".into()),
        tags,
        description_html,
        summary,
    })
}

async fn tag_item(row: &TagRow, repo: &RepositoryRow) -> TagItem {
    let is_index = matches!(row.media_type.as_deref(), Some(OCI_INDEX | DOCKER_LIST));
    let kind = match (&row.artifact_type, is_index) {
        (Some(artifact), _) => format!("artifact ({artifact})"),
        (None, true) => "multi-platform index".into(),
        (None, false) => "image".into(),
    };
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
        short_digest: row.digest.chars().take(7 + 12).collect(),
        digest: row.digest.clone(),
        kind,
        platforms,
        size,
        updated: when(row.updated_at),
    }
}

fn platform_name(p: &serde_json::Value) -> String {
    let part = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    match part("variant") {
        v if v.is_empty() => format!("{}/{}", part("os"), part("architecture")),
        v => format!("{}/{}/{v}", part("os"), part("architecture")),
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
    let record = get_record(&repo.pds_endpoint, &did, MANIFEST_COLLECTION, rkey)
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
        description: value["annotations"]["org.opencontainers.image.description"]
            .as_str()
            .map(str::to_string),
    };
    FACTS.with(|c| c.put(digest, facts.clone(), u64::MAX / 2));
    Some(facts)
}

/// The owner's `io.atcr.repo.page` description (Markdown) for the
/// repository, rendered so that nothing in it can run.
async fn page_description(repo: &RepositoryRow) -> Option<String> {
    let key = format!("{}/{}", repo.owner_did, repo.name);
    if let Some(cached) = PAGES.with(|c| c.get(&key)) {
        return cached;
    }
    let did: Did = repo.owner_did.parse().ok()?;
    let rkey = repo.name.replace('/', "~");
    let record = get_record(&repo.pds_endpoint, &did, PAGE_COLLECTION, &rkey)
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

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Unix milliseconds as a UTC date and time.
fn when(ms: f64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}
