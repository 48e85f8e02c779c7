//! The web UI: server-rendered pages over the D1 index (templates in
//! `templates/`, compiled in by askama, which escapes everything it prints).
//!
//! | path | page |
//! |---|---|
//! | `/` | what ATCR is, how to push, recently pushed, most starred and most pulled repositories |
//! | `/search?q=&page=` | repositories matching the words (owner, name, description), ranked, 20 a page, with the count |
//! | `/u/<handle>` | a user's default hold, repositories, the holds they run and the repositories they starred |
//! | `/holds?page=` | every hold known here: owner, endpoint, public or private, crew size, 50 a page |
//! | `/r/<handle>/<repository>?sort=&page=` | description, holds, tags (25 a page, by push or name) with kind, platforms, size, digest, age; pull count and command (`repository`) |
//! | `/r/<handle>/<repository>/<tag or digest>` | one manifest: config, layers or platforms, referrers, pull by digest (`manifest`) |
//! | `/login`, `/oauth/callback`, `/logout` | signing in and out with ATProto OAuth (`sign_in`) |
//! | `/settings` | the signed-in user's default hold, holds, crew, repository descriptions and sign-ins (`settings`) |
//! | `POST /star` | starring and unstarring a repository, a record in the starrer's PDS (`stars`) |
//! | `/device`, `/settings/devices` | approving the credential helper's device logins, listing and revoking devices (`devices`) |
//! | `/assets/<name>.<hash>.<ext>` | the stylesheet and scripts of `web/`, embedded (`assets`) |
//!
//! Every page's header shows who is signed in (`sign_in::viewer`): pages
//! are put together without knowing who looks, and the account corner is
//! put in last.
//!
//! Pages read the D1 index and, for what it lacks, the owners' PDSs (and a
//! hold, for an image's config); they import `index`, `atproto`, `holds`
//! and `auth` (sign-in), never `registry`.

mod assets;
mod devices;
mod format;
mod manifest;
mod repository;
mod settings;
mod sign_in;
mod stars;
mod views;

use crate::config::AppConfig;
use crate::index;
use askama::Template;
use repository::repository;
use views::{Failed, HoldItem, Holds, Home, NotFound, RepoItem, Search, User};
use worker::{Context, Env, Method, Request, Response, Result};
use worker_support::query_param;

const RECENT: u32 = 20;
const POPULAR: u32 = 10;
const SEARCH_PAGE: u32 = 20;
/// Pages beyond this are not served: refine the search instead.
const MAX_SEARCH_PAGE: u32 = 50;
const HOLDS_PAGE: u32 = 50;

/// Answers `req` if it is a page of the UI.
pub async fn serve(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
) -> Option<Result<Response>> {
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get, "/login") => return Some(sign_in::login_page(req, env, config).await),
        (Method::Post, "/login") => return Some(sign_in::login_submit(req, env, config).await),
        (Method::Get, "/oauth/callback") => {
            return Some(sign_in::callback(req, env, ctx, config).await)
        }
        (Method::Post, "/logout") => return Some(sign_in::sign_out(req, env, config).await),
        (Method::Post, "/star") => return Some(stars::star(req, env, config).await),
        (Method::Get, "/device") => return Some(devices::approval_page(req, env, config).await),
        (Method::Post, "/device") => return Some(devices::decide(req, env, config).await),
        (Method::Get, "/settings/devices") => {
            return Some(devices::list_page(req, env, config).await)
        }
        (Method::Post, "/settings/devices/revoke") => {
            return Some(devices::revoke(req, env, config).await)
        }
        (Method::Get, "/settings") => return Some(settings::page(req, env, config).await),
        (Method::Post, p) if p.starts_with("/settings/") => {
            let action = p.trim_start_matches("/settings/").to_string();
            return Some(settings::submit(req, env, config, &action).await);
        }
        (method @ (Method::Get | Method::Head), p) if p.starts_with("/assets/") => {
            return assets::serve(p, method == Method::Head)
        }
        (Method::Get, _) => {}
        _ => return None,
    }
    let req: &Request = req;
    let is_page = matches!(path.as_str(), "/" | "/search" | "/holds")
        || path.starts_with("/u/")
        || path.starts_with("/r/");
    if !is_page {
        return None;
    }
    // Who is looking (a D1 read when a session cookie came) is asked while
    // the page is put together.
    let (page, viewer) =
        futures_util::join!(page(req, env, config, &path), sign_in::viewer(req, env));
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
    Some(sign_in::page_response((status, html), &viewer, config))
}

/// The page at `path`, one of those `serve` answers, without its account corner.
async fn page(req: &Request, env: &Env, config: &AppConfig, path: &str) -> Page {
    if path == "/" {
        return home(env, config).await;
    }
    if path == "/search" {
        return search(req, env).await;
    }
    if path == "/holds" {
        return holds(req, env, config).await;
    }
    if let Some(handle) = path.strip_prefix("/u/") {
        return user(env, config, handle).await;
    }
    let rest = path.strip_prefix("/r/").unwrap_or_default();
    match rest.split_once('/') {
        Some((handle, name)) => repository_or_manifest(req, env, config, handle, name).await,
        None => not_found(format!("{rest} names no repository")),
    }
}

pub(crate) type Page = Result<(u16, String)>;

pub(crate) fn render(template: &impl Template) -> Page {
    let html = template
        .render()
        .map_err(|e| worker::Error::RustError(format!("rendering failed: {e}")))?;
    Ok((200, html))
}

pub(crate) fn not_found(message: String) -> Page {
    let (_, html) = render(&NotFound {
        query: String::new(),
        message,
    })?;
    Ok((404, html))
}

async fn home(env: &Env, config: &AppConfig) -> Page {
    let (recent, starred, popular) = futures_util::join!(
        index::recent_repositories(env, RECENT),
        index::most_starred_repositories(env, POPULAR),
        index::most_pulled_repositories(env, POPULAR)
    );
    render(&Home {
        query: String::new(),
        host: config.service.clone(),
        repos: recent?.iter().map(RepoItem::from).collect(),
        empty: "Nothing has been pushed here yet.",
        starred: starred?.iter().map(RepoItem::from).collect(),
        popular: popular?.iter().map(RepoItem::from).collect(),
    })
}

async fn search(req: &Request, env: &Env) -> Page {
    let query = query_param(req, "q").unwrap_or_default().trim().to_string();
    let page = query_param(req, "page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, MAX_SEARCH_PAGE);
    let (rows, total) = if query.is_empty() {
        (Vec::new(), 0)
    } else {
        index::search_repositories(env, &query, SEARCH_PAGE, (page - 1) * SEARCH_PAGE).await?
    };
    let link = |page: u32| {
        let q: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        format!("/search?q={q}&page={page}")
    };
    let shown_to = (page - 1) * SEARCH_PAGE + rows.len() as u32;
    render(&Search {
        total,
        first: (page - 1) * SEARCH_PAGE + 1,
        last: shown_to,
        previous: (page > 1).then(|| link(page - 1)),
        next: (shown_to < total && page < MAX_SEARCH_PAGE).then(|| link(page + 1)),
        query,
        repos: rows.iter().map(RepoItem::from).collect(),
        empty: "No repository matches.",
    })
}

async fn user(env: &Env, config: &AppConfig, handle: &str) -> Page {
    let (repos, starred, did, default_hold, holds) = futures_util::join!(
        index::user_repositories(env, handle),
        index::starred_repositories(env, handle),
        index::user_did(env, handle),
        index::default_hold_of(env, handle),
        index::holds_run_by(env, handle)
    );
    let Some(did) = did? else {
        return not_found(format!("No user {handle} is known here."));
    };
    let appview_hold = config.default_hold.as_str();
    let default_hold = default_hold?;
    render(&User {
        query: String::new(),
        handle: handle.to_string(),
        did,
        repos: repos?.iter().map(RepoItem::from).collect(),
        empty: "No repositories yet.",
        starred: starred?.iter().map(RepoItem::from).collect(),
        appview_default: default_hold.is_none(),
        default_hold: default_hold.unwrap_or_else(|| appview_hold.to_string()),
        holds: holds?
            .iter()
            .map(|h| HoldItem::new(h, appview_hold))
            .collect(),
    })
}

/// `/holds`: hold discovery, public holds first.
async fn holds(req: &Request, env: &Env, config: &AppConfig) -> Page {
    let page = query_param(req, "page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    let offset = (page - 1).saturating_mul(HOLDS_PAGE);
    let (rows, total) = index::known_holds(env, HOLDS_PAGE, offset).await?;
    let appview_hold = config.default_hold.as_str();
    let shown_to = offset.saturating_add(rows.len() as u32);
    render(&Holds {
        query: String::new(),
        appview_hold: appview_hold.to_string(),
        holds: rows
            .iter()
            .map(|h| HoldItem::new(h, appview_hold))
            .collect(),
        total,
        first: offset.saturating_add(1),
        last: shown_to,
        previous: (page > 1).then(|| format!("/holds?page={}", page - 1)),
        next: (shown_to < total).then(|| format!("/holds?page={}", page + 1)),
    })
}

/// `/r/<handle>/<rest>`: a repository page when `rest` names a repository
/// (names may hold `/`), else the manifest page of `<repository>/<reference>`.
async fn repository_or_manifest(
    req: &Request,
    env: &Env,
    config: &AppConfig,
    handle: &str,
    rest: &str,
) -> Page {
    if let Some((name, reference)) = rest.rsplit_once('/') {
        if index::repository(env, handle, rest).await?.is_none() {
            return match index::repository(env, handle, name).await? {
                Some(repo) => manifest::manifest(env, config, &repo, reference).await,
                None => not_found(format!("No repository {handle}/{name} is known here.")),
            };
        }
    }
    repository(req, env, config, handle, rest).await
}
