//! Deleting a manifest or a tag from the owner's PDS.

use super::cache;
use super::read::{find_manifest, pds_unavailable, unknown};
use crate::atproto::pds::{get_record, record_key, repository_records, Body};
use crate::auth::writer::PdsWriter;
use crate::config::AppConfig;
use crate::index;
use crate::oci_error::internal;
use crate::registry::owner::{require_owner, resolve_repo_owner, writer_for};
use atcr_protocol::collections;
use atcr_protocol::manifest::tag_record_key;
use atcr_protocol::reference::{Reference, RepoName};
use atcr_protocol::{Did, OciCode, Refusal};
use serde_json::json;
use worker::Env;

/// The most tags a repository may have for its manifests to be deleted by
/// digest (every tag naming the manifest goes first).
const MAX_TAGS_SEEN: usize = 10_000;

/// A tag deletes its tag record; a digest deletes the manifest record and
/// first every tag pointing at it, so no tag is left naming a missing
/// manifest.
pub async fn delete(
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: &Reference,
) -> Result<(), Refusal> {
    let owner = resolve_repo_owner(name, config).await?;
    require_owner(&owner, user, name, "delete from")?;
    let mut writer = writer_for(env, config, user).await?;
    let repository = name.repository();
    match reference {
        Reference::Tag(tag) => {
            let rkey = tag_record_key(repository, tag);
            get_record(&owner.pds, &owner.did, collections::TAG, &rkey)
                .await
                .map_err(pds_unavailable)?
                .ok_or_else(|| unknown(name, reference))?;
            delete_record(&mut writer, collections::TAG, rkey).await?;
            cache::forget_tag(&owner.did, repository, tag);
            index::tag_deleted(env, &owner.did, repository, tag)
                .await
                .map_err(internal)?;
        }
        Reference::Digest(digest) => {
            let record = find_manifest(env, &owner, repository, digest)
                .await?
                .ok_or_else(|| unknown(name, reference))?;
            let uri = record["uri"].as_str().unwrap_or_default().to_string();
            let tags = repository_records(
                &owner.pds,
                &owner.did,
                collections::TAG,
                repository,
                None,
                MAX_TAGS_SEEN,
            )
            .await
            .map_err(pds_unavailable)?;
            if tags.more {
                // Deleting the manifest could leave a tag unseen, naming nothing.
                return Err((
                    OciCode::Unsupported,
                    format!("{name} has more than {MAX_TAGS_SEEN} tags: delete tags by name first"),
                ));
            }
            for tag in tags
                .records
                .iter()
                .filter(|t| t["value"]["manifest"].as_str() == Some(uri.as_str()))
            {
                let rkey = record_key(tag["uri"].as_str().unwrap_or_default()).to_string();
                delete_record(&mut writer, collections::TAG, rkey).await?;
            }
            delete_record(
                &mut writer,
                collections::MANIFEST,
                record_key(&uri).to_string(),
            )
            .await?;
            cache::forget_manifest(&owner.did, repository, digest);
            index::manifest_deleted(env, &owner.did, repository, digest)
                .await
                .map_err(internal)?;
        }
    }
    Ok(())
}

async fn delete_record(
    writer: &mut PdsWriter<'_>,
    collection: &str,
    rkey: String,
) -> Result<(), Refusal> {
    let body = json!({ "repo": writer.did(), "collection": collection, "rkey": rkey });
    writer
        .post("com.atproto.repo.deleteRecord", Body::Json(body))
        .await
        .map(|_| ())
}
