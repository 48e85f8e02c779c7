//! What each page shows: the askama templates (in `templates/`) and the
//! items their lists are made of. Askama escapes everything it prints.

use super::format::when;
use crate::index::{HoldRow, RepositoryRow};
use askama::Template;

pub struct RepoItem {
    pub handle: String,
    pub name: String,
    pub pulls: u64,
    pub tags: u64,
    pub stars: u64,
    pub updated: String,
}

impl From<&RepositoryRow> for RepoItem {
    fn from(row: &RepositoryRow) -> Self {
        RepoItem {
            handle: row.handle.clone(),
            name: row.name.clone(),
            pulls: row.pulls as u64,
            tags: row.tags as u64,
            stars: row.stars as u64,
            updated: when(row.updated_at),
        }
    }
}

/// A hold as the user pages and `/holds` list it.
pub struct HoldItem {
    pub did: String,
    pub endpoint: String,
    pub public: bool,
    /// Its owner's handle.
    pub owner: String,
    /// Members of the owner's crew.
    pub crew: u64,
    pub registered: String,
    /// It is the hold users get when their profile names none.
    pub appview_default: bool,
}

impl HoldItem {
    pub fn new(row: &HoldRow, appview_hold: &str) -> Self {
        HoldItem {
            did: row.hold_did.clone(),
            endpoint: row.endpoint.clone(),
            public: row.public != 0.0,
            owner: row.owner_handle.clone(),
            crew: row.crew as u64,
            registered: when(row.created_at),
            appview_default: row.hold_did == appview_hold,
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
    /// When it was pushed: a date and time, and how long ago.
    pub updated: String,
    pub updated_iso: String,
    pub age: String,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct Home {
    pub query: String,
    pub host: String,
    /// Recently pushed.
    pub repos: Vec<RepoItem>,
    pub empty: &'static str,
    /// Starred most.
    pub starred: Vec<RepoItem>,
    /// Pulled most.
    pub popular: Vec<RepoItem>,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct Search {
    pub query: String,
    /// How many repositories match, and which of them this page shows.
    pub total: u32,
    pub first: u32,
    pub last: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
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
    /// The repositories they starred.
    pub starred: Vec<RepoItem>,
    /// The hold their pushes go to: their profile's, else this registry's
    /// default (`appview_default`).
    pub default_hold: String,
    pub appview_default: bool,
    /// The holds they run.
    pub holds: Vec<HoldItem>,
}

/// `/holds`: every hold known here.
#[derive(Template)]
#[template(path = "holds.html")]
pub struct Holds {
    pub query: String,
    pub appview_hold: String,
    pub holds: Vec<HoldItem>,
    /// Holds in all, and which of them this page shows.
    pub total: u32,
    pub first: u32,
    pub last: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "repository.html")]
pub struct Repository {
    pub query: String,
    pub host: String,
    pub handle: String,
    pub name: String,
    pub owner_did: String,
    pub pulls: u64,
    pub stars: u64,
    /// Whether the viewer starred it, and the star form's CSRF token.
    pub starred: bool,
    pub star_csrf: String,
    pub updated: String,
    pub latest: String,
    /// The holds its images are stored in, the newest push's first.
    pub holds: Vec<String>,
    pub tags: Vec<TagItem>,
    /// Tags in all, and which of them this page shows.
    pub tag_count: u64,
    pub first: u64,
    pub last: u64,
    /// "pushed" or "name".
    pub sort: &'static str,
    pub previous: Option<String>,
    pub next: Option<String>,
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

#[derive(Template)]
#[template(path = "manifest.html")]
pub struct ManifestPage {
    pub query: String,
    pub handle: String,
    pub name: String,
    /// As typed in the URL: a tag or a digest.
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub kind: String,
    pub size: String,
    pub pushed: String,
    /// The pull command by digest.
    pub pull: String,
    pub config: Option<ConfigFacts>,
    pub layers: Vec<Layer>,
    pub platforms: Vec<PlatformLink>,
    pub referrers: Vec<Referrer>,
}

/// What an image's config says about how it runs.
#[derive(Clone)]
pub struct ConfigFacts {
    pub platform: String,
    pub created: String,
    pub env: Vec<String>,
    pub entrypoint: String,
    pub cmd: String,
    pub user: String,
    pub workdir: String,
    pub labels: Vec<(String, String)>,
}

pub struct Layer {
    pub media_type: String,
    pub size: String,
    pub digest: String,
    pub short: String,
}

pub struct PlatformLink {
    pub name: String,
    pub digest: String,
    pub short: String,
}

pub struct Referrer {
    pub kind: String,
    pub digest: String,
    pub short: String,
    pub pushed: String,
}

/// The header's account corner: who is signed in, or the way to sign in.
#[derive(Template)]
#[template(path = "account.html")]
pub struct Account {
    pub user: Option<AccountUser>,
    /// The browser's sign-in has ended (signed out elsewhere, or the PDS
    /// ended the session).
    pub ended: bool,
}

pub struct AccountUser {
    pub handle: String,
    pub avatar: Option<String>,
    /// The sign-out form's CSRF token.
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login {
    pub query: String,
    pub csrf: String,
    pub handle: String,
    pub return_to: String,
    pub error: Option<String>,
}

/// A page that only says something: a refusal or a failure, with a way on.
#[derive(Template)]
#[template(path = "notice.html")]
pub struct Notice {
    pub query: String,
    pub title: String,
    pub message: String,
    /// `(href, text)`.
    pub link: Option<(String, String)>,
}

/// `/settings`.
#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub query: String,
    pub csrf: String,
    pub handle: String,
    /// The hold users get when their profile names none.
    pub appview_hold: String,
    /// The profile's `defaultHold`.
    pub default_hold: Option<String>,
    pub holds: Vec<RegisteredHold>,
    pub crew: Vec<CrewMember>,
    pub repos: Vec<String>,
    pub editor: Option<DescriptionEditor>,
    /// When the app-password session was opened or refreshed.
    pub app_password_since: Option<String>,
    /// The section just saved.
    pub saved: Option<String>,
    pub error: Option<String>,
}

/// An `io.atcr.hold` record of the user's.
pub struct RegisteredHold {
    pub endpoint: String,
    pub public: bool,
}

/// An `io.atcr.hold.crew` record of the user's.
pub struct CrewMember {
    pub member: String,
    /// Empty: read and write.
    pub permissions: String,
}

/// The description of one repository, being edited.
pub struct DescriptionEditor {
    pub repository: String,
    /// Markdown.
    pub text: String,
    /// `text` rendered, when previewing: safe HTML.
    pub preview: Option<String>,
}

/// `/device`: approving (or denying) a device login by its user code.
#[derive(Template)]
#[template(path = "device.html")]
pub struct DevicePage {
    pub query: String,
    pub csrf: String,
    pub handle: String,
    pub user_code: String,
    pub device_name: String,
    pub error: Option<String>,
}

pub struct DeviceItem {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

/// `/settings/devices`: the signed-in user's devices, each revocable.
#[derive(Template)]
#[template(path = "devices.html")]
pub struct DevicesPage {
    pub query: String,
    pub csrf: String,
    pub handle: String,
    pub devices: Vec<DeviceItem>,
}
