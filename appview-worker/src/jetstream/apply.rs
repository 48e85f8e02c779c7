//! One Jetstream event applied to the index, through the same `index`
//! functions the registry writes with.

use crate::atproto::resolve::{resolve_owner, Identity, ResolveError};
use crate::config::AppConfig;
use crate::index::{self, Starrer, StoredManifest};
use atcr_protocol::jetstream::Change;
use atcr_protocol::reference::Owner;
use atcr_protocol::Did;
use worker::Env;

/// Applies `change`, made by `did`; `Err` says why it was not (counted as
/// skipped).
pub async fn apply(
    env: &Env,
    config: &AppConfig,
    did: &Did,
    change: &Change,
) -> Result<(), String> {
    let failed = |e: worker::Error| format!("not applied ({did}): {e}");
    match change {
        Change::Manifest(m) => {
            let who = identity(did, config).await?;
            let handle = who.doc.handle().map(|h| h.to_string());
            let stored = StoredManifest {
                repository: &m.repository,
                digest: &m.digest,
                media_type: &m.media_type,
                artifact_type: m.artifact_type.as_deref(),
                subject: m.subject.as_ref(),
                size: m.size,
                hold: m.hold.as_deref(),
                record_uri: &m.record_uri,
                platforms: m.platforms.clone(),
                description: m.description.as_deref(),
            };
            index::manifest_stored(env, did, &who.pds, handle.as_deref(), &stored)
                .await
                .map_err(failed)
        }
        Change::ManifestDeleted { record_uri } => {
            match index::manifest_by_record(env, did, record_uri)
                .await
                .map_err(failed)?
            {
                Some((repository, digest)) => {
                    index::manifest_deleted(env, did, &repository, &digest)
                        .await
                        .map_err(failed)
                }
                None => Ok(()),
            }
        }
        Change::Tag(t) => {
            let digest = match &t.digest {
                Some(digest) => digest.clone(),
                None => match index::manifest_by_record(env, did, &t.manifest_uri)
                    .await
                    .map_err(failed)?
                {
                    Some((_, digest)) => digest,
                    None => {
                        return Err(format!(
                            "tag {}: its manifest {} is not in the index",
                            t.record_uri, t.manifest_uri
                        ))
                    }
                },
            };
            index::tag_stored(env, did, &t.repository, &t.tag, &digest, &t.record_uri)
                .await
                .map_err(failed)
        }
        Change::TagDeleted { record_uri } => index::tag_record_deleted(env, did, record_uri)
            .await
            .map_err(failed),
        Change::Star(s) => {
            let who = identity(did, config).await?;
            let handle = who
                .doc
                .handle()
                .map_or_else(|| did.to_string(), |h| h.to_string());
            let starrer = Starrer {
                did,
                handle: &handle,
                pds: &who.pds,
            };
            index::star_added(
                env,
                &starrer,
                s.owner.as_str(),
                &s.repository,
                &s.record_uri,
            )
            .await
            .map_err(failed)
        }
        Change::StarDeleted { record_uri } => index::star_record_removed(env, did, record_uri)
            .await
            .map_err(failed),
        Change::Page {
            repository,
            description,
        } => index::description_changed(env, did, repository, description.as_deref())
            .await
            .map_err(failed),
        Change::PageDeleted { repository } => {
            index::description_changed(env, did, repository, None)
                .await
                .map_err(failed)
        }
        Change::Identity => {
            // Jetstream sends every account's identity events; most are
            // not ours.
            if !index::user_known(env, did).await.map_err(failed)? {
                return Ok(());
            }
            // Afresh: the caches hold the document from before the change.
            let doc = worker_support::resolve_did_again(did, &config.plc_url)
                .await
                .map_err(|e| format!("{did} could not be resolved: {e}"))?;
            let Some(pds) = doc.pds_endpoint() else {
                return Err(format!("{did} names no PDS"));
            };
            let handle = doc.handle().map(|h| h.to_string());
            index::identity_changed(env, did, handle.as_deref(), pds)
                .await
                .map_err(failed)
        }
        Change::Ignored => Ok(()),
    }
}

/// The author's DID document and PDS (the users row needs both).
async fn identity(did: &Did, config: &AppConfig) -> Result<Identity, String> {
    resolve_owner(&Owner::Did(did.clone()), config)
        .await
        .map_err(|e| match e {
            ResolveError::Unknown(m) => format!("{did} does not resolve: {m}"),
            ResolveError::Unavailable(m) => format!("{did} could not be resolved: {m}"),
        })
}
