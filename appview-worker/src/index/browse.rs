//! Reading the index: repositories as lists show them, a repository's
//! tags, a manifest and its referrers, the holds a repository's manifests
//! live in.

use crate::config::DB_BINDING;
use worker::{Env, Result};

/// A repository as lists show it.
#[derive(Debug, serde::Deserialize)]
pub struct RepositoryRow {
    pub handle: String,
    pub name: String,
    pub owner_did: String,
    pub pds_endpoint: String,
    pub updated_at: f64,
    pub pulls: f64,
    pub tags: f64,
    pub stars: f64,
}

/// A tag and the manifest it names, as the repository page shows it.
#[derive(Debug, serde::Deserialize)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    pub updated_at: f64,
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
    pub platforms: Option<String>,
    pub record_uri: Option<String>,
}

/// What a `RepositoryRow` is made of, for a query whose `r` is the
/// repository, `u` its owner and `p` its pull count (search has its own FROM).
macro_rules! repository_fields {
    () => {
        "SELECT u.handle AS handle, r.name AS name, r.owner_did AS owner_did,
        u.pds_endpoint AS pds_endpoint, r.updated_at AS updated_at,
        COALESCE(p.count, 0) AS pulls,
        (SELECT count(*) FROM tags t WHERE t.owner_did = r.owner_did AND t.repository = r.name) AS tags,
        (SELECT count(*) FROM stars s WHERE s.owner_did = r.owner_did AND s.repository = r.name) AS stars"
    };
}
pub(super) const REPOSITORY_FIELDS: &str = repository_fields!();

const REPOSITORY_COLUMNS: &str = concat!(
    repository_fields!(),
    " FROM repositories r JOIN users u ON u.did = r.owner_did
     LEFT JOIN pulls p ON p.owner_did = r.owner_did AND p.repository = r.name
     WHERE u.handle IS NOT NULL AND u.deactivated = 0"
);

/// The repositories pulled most, most first.
pub async fn most_pulled_repositories(env: &Env, limit: u32) -> Result<Vec<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} AND p.count > 0 ORDER BY p.count DESC, r.updated_at DESC LIMIT ?1"
        ))
        .bind(&[limit.into()])?
        .all()
        .await?
        .results()
}

/// The repositories starred most, most first.
pub async fn most_starred_repositories(env: &Env, limit: u32) -> Result<Vec<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} AND stars > 0 ORDER BY stars DESC, r.updated_at DESC LIMIT ?1"
        ))
        .bind(&[limit.into()])?
        .all()
        .await?
        .results()
}

/// The repositories the user with `handle` starred, newest star first.
pub async fn starred_repositories(env: &Env, handle: &str) -> Result<Vec<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} AND EXISTS (SELECT 1 FROM stars s JOIN users su ON su.did = s.starrer_did
               WHERE su.handle = ?1 AND s.owner_did = r.owner_did AND s.repository = r.name)
             ORDER BY (SELECT max(s.created_at) FROM stars s JOIN users su ON su.did = s.starrer_did
               WHERE su.handle = ?1 AND s.owner_did = r.owner_did AND s.repository = r.name) DESC"
        ))
        .bind(&[handle.into()])?
        .all()
        .await?
        .results()
}

/// The DID of the user known here by `handle`.
pub async fn user_did(env: &Env, handle: &str) -> Result<Option<String>> {
    env.d1(DB_BINDING)?
        .prepare("SELECT did FROM users WHERE handle = ?1 AND deactivated = 0 ORDER BY updated_at DESC LIMIT 1")
        .bind(&[handle.into()])?
        .first(Some("did"))
        .await
}

pub async fn recent_repositories(env: &Env, limit: u32) -> Result<Vec<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} ORDER BY r.updated_at DESC LIMIT ?1"
        ))
        .bind(&[limit.into()])?
        .all()
        .await?
        .results()
}

pub async fn user_repositories(env: &Env, handle: &str) -> Result<Vec<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} AND u.handle = ?1 ORDER BY r.name"
        ))
        .bind(&[handle.into()])?
        .all()
        .await?
        .results()
}

pub async fn repository(env: &Env, handle: &str, name: &str) -> Result<Option<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} AND u.handle = ?1 AND r.name = ?2"
        ))
        .bind(&[handle.into(), name.into()])?
        .first(None)
        .await
}

/// The repository `name` of the user `owner` (a DID).
pub async fn repository_of(env: &Env, owner: &str, name: &str) -> Result<Option<RepositoryRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{REPOSITORY_COLUMNS} AND r.owner_did = ?1 AND r.name = ?2"
        ))
        .bind(&[owner.into(), name.into()])?
        .first(None)
        .await
}

/// How the repository page orders its tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// Newest push first.
    Pushed,
    /// By name, A to Z.
    Name,
}

/// One page of the repository's tags, with the manifests they name.
pub async fn tags(
    env: &Env,
    owner: &str,
    repository: &str,
    order: TagOrder,
    limit: u32,
    offset: u32,
) -> Result<Vec<TagRow>> {
    // Chosen from a fixed set, never from the request's text.
    let order_by = match order {
        TagOrder::Pushed => "t.updated_at DESC, t.tag",
        TagOrder::Name => "t.tag",
    };
    env.d1(DB_BINDING)?
        .prepare(format!(
            "SELECT t.tag AS tag, t.digest AS digest, t.updated_at AS updated_at,
                    m.media_type AS media_type, m.artifact_type AS artifact_type,
                    m.platforms AS platforms, m.record_uri AS record_uri
             FROM tags t LEFT JOIN manifests m
               ON m.owner_did = t.owner_did AND m.repository = t.repository AND m.digest = t.digest
             WHERE t.owner_did = ?1 AND t.repository = ?2
             ORDER BY {order_by} LIMIT ?3 OFFSET ?4"
        ))
        .bind(&[owner.into(), repository.into(), limit.into(), offset.into()])?
        .all()
        .await?
        .results()
}

/// A manifest as the manifest page shows it.
#[derive(Debug, serde::Deserialize)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub hold_did: Option<String>,
    pub record_uri: String,
    pub created_at: f64,
}

pub(super) const MANIFEST_COLUMNS: &str =
    "SELECT digest, media_type, artifact_type, hold_did, record_uri, created_at FROM manifests";

/// The manifest `reference` (a tag or a digest) names in the repository.
pub async fn manifest(
    env: &Env,
    owner: &str,
    repository: &str,
    reference: &str,
) -> Result<Option<ManifestRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{MANIFEST_COLUMNS} WHERE owner_did = ?1 AND repository = ?2 AND digest = COALESCE(
               (SELECT digest FROM tags WHERE owner_did = ?1 AND repository = ?2 AND tag = ?3), ?3)"
        ))
        .bind(&[owner.into(), repository.into(), reference.into()])?
        .first(None)
        .await
}

/// The manifests of the repository whose `subject` is `digest`
/// (signatures, SBOMs, attestations), newest first.
pub async fn referrers(
    env: &Env,
    owner: &str,
    repository: &str,
    digest: &str,
) -> Result<Vec<ManifestRow>> {
    env.d1(DB_BINDING)?
        .prepare(format!(
            "{MANIFEST_COLUMNS} WHERE owner_did = ?1 AND repository = ?2 AND subject = ?3
             ORDER BY created_at DESC LIMIT 100"
        ))
        .bind(&[owner.into(), repository.into(), digest.into()])?
        .all()
        .await?
        .results()
}

/// The holds the repository's indexed manifests were pushed to, the hold
/// of the newest push first.
pub async fn repository_holds(env: &Env, owner: &str, repository: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Row {
        hold_did: String,
    }
    let rows: Vec<Row> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT hold_did FROM manifests
             WHERE owner_did = ?1 AND repository = ?2 AND hold_did IS NOT NULL
             GROUP BY hold_did ORDER BY max(created_at) DESC",
        )
        .bind(&[owner.into(), repository.into()])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.hold_did).collect())
}
