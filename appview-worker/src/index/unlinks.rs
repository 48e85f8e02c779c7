//! Blobs deleted from one repository's view. The hold's storage is shared
//! and content-addressed, so `DELETE /v2/<name>/blobs/<digest>` cannot
//! always remove the bytes (another manifest may use them); it unlinks the
//! blob from `<name>` instead: GET and HEAD there answer `BLOB_UNKNOWN`, and
//! manifests pushed there may not name it, until it is uploaded or mounted
//! there again.

use crate::config::DB_BINDING;
use atcr_protocol::{Did, Digest};
use worker::{Date, Env, Result};

pub async fn blob_unlinked(
    env: &Env,
    owner: &Did,
    repository: &str,
    digest: &Digest,
) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare(
            "INSERT INTO blob_unlinks (owner_did, repository, digest, unlinked_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner_did, repository, digest) DO UPDATE SET unlinked_at = excluded.unlinked_at",
        )
        .bind(&[
            owner.as_str().into(),
            repository.into(),
            digest.as_str().into(),
            (Date::now().as_millis() as f64).into(),
        ])?
        .run()
        .await?;
    Ok(())
}

/// The blob was uploaded or mounted into `repository` again.
pub async fn blob_linked(env: &Env, owner: &Did, repository: &str, digest: &Digest) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare(
            "DELETE FROM blob_unlinks WHERE owner_did = ?1 AND repository = ?2 AND digest = ?3",
        )
        .bind(&[
            owner.as_str().into(),
            repository.into(),
            digest.as_str().into(),
        ])?
        .run()
        .await?;
    Ok(())
}

/// Which of `digests` are unlinked from `repository`.
pub async fn unlinked_among(
    env: &Env,
    owner: &Did,
    repository: &str,
    digests: &[&Digest],
) -> Result<Vec<String>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct Row {
        digest: String,
    }
    let list = serde_json::to_string(&digests.iter().map(|d| d.as_str()).collect::<Vec<_>>())?;
    let rows: Vec<Row> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT digest FROM blob_unlinks WHERE owner_did = ?1 AND repository = ?2
             AND digest IN (SELECT value FROM json_each(?3))",
        )
        .bind(&[owner.as_str().into(), repository.into(), list.into()])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.digest).collect())
}
