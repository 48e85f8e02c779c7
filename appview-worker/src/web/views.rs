//! What each page shows: the askama templates (in `templates/`) and the
//! items their lists are made of. Askama escapes everything it prints.

use super::format::when;
use crate::index::RepositoryRow;
use askama::Template;

pub struct RepoItem {
    pub handle: String,
    pub name: String,
    pub pulls: u64,
    pub tags: u64,
    pub updated: String,
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

pub struct TagItem {
    /// The manifest's `org.opencontainers.image.description` annotation.
    pub description: Option<String>,
    pub tag: String,
    pub digest: String,
    pub short_digest: String,
    pub kind: String,
    pub platforms: Vec<String>,
    pub size: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct Home {
    pub query: String,
    pub host: String,
    pub repos: Vec<RepoItem>,
    pub empty: &'static str,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct Search {
    pub query: String,
    pub repos: Vec<RepoItem>,
    pub empty: &'static str,
}

#[derive(Template)]
#[template(path = "user.html")]
pub struct User {
    pub query: String,
    pub handle: String,
    pub did: String,
    pub repos: Vec<RepoItem>,
    pub empty: &'static str,
}

#[derive(Template)]
#[template(path = "repository.html")]
pub struct Repository {
    pub query: String,
    pub host: String,
    pub handle: String,
    pub name: String,
    pub pulls: u64,
    pub updated: String,
    pub latest: String,
    pub tags: Vec<TagItem>,
    /// From the owner's `io.atcr.repo.page` record: safe HTML.
    pub description_html: Option<String>,
    /// Else the newest image's description annotation: plain text.
    pub summary: Option<String>,
}

#[derive(Template)]
#[template(path = "failed.html")]
pub struct Failed {
    pub query: String,
}

#[derive(Template)]
#[template(path = "not_found.html")]
pub struct NotFound {
    pub query: String,
    pub message: String,
}
