//! Storing a pushed manifest. Four steps, each its own function: read and
//! validate the bytes; check that every blob and child manifest it names is
//! already here; write the PDS blob and records (blob → manifest record →
//! tag record, so a failure part-way leaves nothing that points at
//! something missing); then update the D1 index and the caches.

use super::cache::{self, Served};
use super::read::{find_manifest, pds_unavailable};
use crate::atproto::pds::{get_record, record_key, Body};
use crate::atproto::resolve::Identity;
use crate::auth::writer::PdsWriter;
use crate::config::AppConfig;
use crate::holds::Hold;
use crate::index::{self, Author, StoredManifest};
use crate::oci_error::internal;
use crate::registry::owner::{locate, require_owner, writer_for};
use atcr_protocol::collections;
use atcr_protocol::digest::Algorithm;
use atcr_protocol::manifest::{
    self, manifest_record_key, tag_record_key, ManifestError, ParsedManifest,
};
use atcr_protocol::manifest::{MAX_MANIFEST_BYTES, MAX_RECORD_BYTES};
use atcr_protocol::reference::{Reference, RepoName};
use atcr_protocol::{Did, Digest, OciCode, Refusal};
use serde_json::{json, Value};
use worker::{Env, Request, Response};
use worker_support::now_rfc3339;

/// Room kept in a record for its `manifestBlob` reference.
const BLOB_REF_ROOM: usize = 512;

/// A manifest that passed validation, about to be stored.
struct Pushed {
    bytes: Vec<u8>,
    digest: Digest,
    parsed: ParsedManifest,
}

/// Who pushes into which repository, and the hold its blobs live in.
struct Target<'a> {
    env: &'a Env,
    config: &'a AppConfig,
    user: &'a Did,
    name: &'a RepoName,
    owner: Identity,
    hold: Hold,
}

pub async fn store(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: Reference,
) -> Result<Response, Refusal> {
    let (owner, hold) = locate(name, config).await?;
    require_owner(&owner, user, name, "push to")?;
    let target = Target {
        env,
        config,
        user,
        name,
        owner,
        hold,
    };
    let pushed = validate(req, &reference).await?;
    check_references(&target, &pushed.parsed).await?;
    let manifest_uri = write_records(&target, &reference, &pushed).await?;
    update_index(&target, &reference, &pushed, &manifest_uri).await;
    created(name, &pushed).map_err(internal)
}

/// The request body, within the size limit, matching the digest it was
/// pushed under, and a manifest or index we understand.
async fn validate(req: &mut Request, reference: &Reference) -> Result<Pushed, Refusal> {
    let declared = req
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_MANIFEST_BYTES) {
        return Err((
            OciCode::SizeInvalid,
            format!("manifests may be at most {MAX_MANIFEST_BYTES} bytes"),
        ));
    }
    let bytes = req.bytes().await.map_err(internal)?;
    let algorithm = match reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = Digest::of(algorithm, &bytes);
    if let Reference::Digest(expected) = reference {
        if expected != &digest {
            return Err((
                OciCode::DigestInvalid,
                format!("the manifest's digest is {digest}, not {expected}"),
            ));
        }
    }
    let content_type = req.headers().get("Content-Type").ok().flatten();
    let parsed = manifest::parse(&bytes, content_type.as_deref()).map_err(|e| match e {
        ManifestError::TooLarge => (OciCode::SizeInvalid, e.to_string()),
        other => (OciCode::ManifestInvalid, other.to_string()),
    })?;
    Ok(Pushed {
        bytes,
        digest,
        parsed,
    })
}

/// Every blob the manifest needs is in the owner's hold (and was not
/// deleted from this repository), and every child manifest of an index is
/// in the repository. Foreign layers are not looked for.
async fn check_references(target: &Target<'_>, parsed: &ParsedManifest) -> Result<(), Refusal> {
    let Target {
        env,
        config,
        user,
        name,
        owner,
        hold,
    } = target;
    let needed: Vec<&Digest> = parsed.blobs().map(|b| &b.digest).collect();
    let unlinked = index::unlinked_among(env, &owner.did, name.repository(), &needed)
        .await
        .map_err(internal)?;
    if let Some(digest) = unlinked.first() {
        return Err((
            OciCode::ManifestBlobUnknown,
            format!("blob {digest} was deleted from {name}; push it again first"),
        ));
    }
    // One statBlobs call per batch of blobs, and the child manifests read
    // by key, all at once: a 100-layer image costs a handful of requests.
    let children = parsed
        .manifests
        .iter()
        .map(|child| find_manifest(env, owner, name.repository(), &child.digest));
    let (stats, children) = futures_util::join!(
        hold.stat_many(config, Some(user), &needed),
        futures_util::future::try_join_all(children),
    );
    let present = stats.map_err(|e| (OciCode::Internal, e.to_string()))?;
    if let Some(missing) = needed
        .iter()
        .find(|d| !present.iter().any(|stat| &stat.digest == **d))
    {
        return Err((
            OciCode::ManifestBlobUnknown,
            format!("blob {missing} is not in {name}'s hold; push it first"),
        ));
    }
    if let Some((child, _)) = parsed
        .manifests
        .iter()
        .zip(children?)
        .find(|(_, record)| record.is_none())
    {
        return Err((
            OciCode::ManifestBlobUnknown,
            format!("manifest {} is not in {name}; push it first", child.digest),
        ));
    }
    Ok(())
}

/// Writes the manifest into the owner's PDS: the profile on a first push,
/// the exact bytes as a blob, the manifest record, then the tag record.
/// Returns the manifest record's URI.
async fn write_records(
    target: &Target<'_>,
    reference: &Reference,
    pushed: &Pushed,
) -> Result<String, Refusal> {
    let Target {
        env,
        config,
        user,
        name,
        owner,
        hold,
    } = target;
    let mut writer = writer_for(env, config, user).await?;
    let now = now_rfc3339();
    // Shaped (and shrunk to what a PDS takes) before anything is written;
    // the blob reference is filled in once the bytes are uploaded.
    let record = manifest::record(
        &pushed.parsed,
        name.repository(),
        &pushed.digest,
        hold.did.as_str(),
        Value::Null,
        &now,
    );
    let mut record = manifest::fit_record(record, MAX_RECORD_BYTES - BLOB_REF_ROOM)
        .map_err(|e| (OciCode::ManifestInvalid, e.to_string()))?;
    ensure_profile(env, &mut writer, owner, hold).await?;
    record["manifestBlob"] = writer
        .post(
            "com.atproto.repo.uploadBlob",
            Body::Bytes(&pushed.bytes, &pushed.parsed.media_type),
        )
        .await?["blob"]
        .clone();
    // Re-pushing the same manifest updates its record instead of adding
    // one, also one written before keys were derived from the digest.
    let rkey = match index::manifest_record(env, &owner.did, name.repository(), &pushed.digest)
        .await
        .map_err(internal)?
    {
        Some(uri) => record_key(&uri).to_string(),
        None => manifest_record_key(name.repository(), &pushed.digest),
    };
    let written = writer
        .post(
            "com.atproto.repo.putRecord",
            Body::Json(json!({
                "repo": user, "collection": collections::MANIFEST, "rkey": rkey, "record": record,
            })),
        )
        .await?;
    let manifest_uri = written["uri"].as_str().unwrap_or_default().to_string();
    if let Reference::Tag(tag) = reference {
        writer
            .post("com.atproto.repo.putRecord", Body::Json(json!({
                "repo": user, "collection": collections::TAG, "rkey": tag_record_key(name.repository(), tag),
                "record": { "$type": collections::TAG, "repository": name.repository(), "tag": tag,
                            "manifest": manifest_uri, "createdAt": now, "updatedAt": now },
            })))
            .await?;
    }
    Ok(manifest_uri)
}

/// The owner's profile names their hold; created on their first push (and
/// written through to the index, which shows it on their page).
async fn ensure_profile(
    env: &Env,
    writer: &mut PdsWriter<'_>,
    owner: &Identity,
    hold: &Hold,
) -> Result<(), Refusal> {
    if get_record(&owner.pds, &owner.did, collections::PROFILE, "self")
        .await
        .map_err(pds_unavailable)?
        .is_some()
    {
        return Ok(());
    }
    let now = now_rfc3339();
    let record = json!({ "$type": collections::PROFILE, "defaultHold": hold.did, "createdAt": now, "updatedAt": now });
    writer
        .post("com.atproto.repo.putRecord", Body::Json(json!({
            "repo": owner.did, "collection": collections::PROFILE, "rkey": "self", "record": record,
        })))
        .await?;
    let handle = owner.doc.handle().map(|h| h.to_string());
    let author = Author {
        did: &owner.did,
        handle: handle.as_deref(),
        pds: &owner.pds,
    };
    if let Err(e) = index::record_written(env, &author, collections::PROFILE, "self", &record).await
    {
        worker::console_error!("index write failed for the profile of {}: {e}", owner.did);
    }
    Ok(())
}

/// The PDS has it all now; the index is a cache, so a failure here is
/// logged, not returned. The caches learn the new manifest and tag.
async fn update_index(
    target: &Target<'_>,
    reference: &Reference,
    pushed: &Pushed,
    manifest_uri: &str,
) {
    let Target {
        env,
        name,
        owner,
        hold,
        ..
    } = target;
    let (parsed, digest) = (&pushed.parsed, &pushed.digest);
    let platforms = (!parsed.manifests.is_empty()).then(|| {
        Value::Array(
            parsed
                .manifests
                .iter()
                .filter_map(|m| m.platform.clone())
                .collect(),
        )
        .to_string()
    });
    let stored = StoredManifest {
        repository: name.repository(),
        digest,
        media_type: &parsed.media_type,
        artifact_type: parsed.artifact_type.as_deref(),
        subject: parsed.subject.as_ref().map(|s| &s.digest),
        size: pushed.bytes.len() as u64,
        hold: Some(hold.did.as_str()),
        record_uri: manifest_uri,
        platforms,
        description: parsed
            .annotations
            .as_ref()
            .and_then(|a| a[manifest::DESCRIPTION_ANNOTATION].as_str()),
        pushed_at: index::now_ms(),
    };
    let handle = owner.doc.handle().map(|h| h.to_string());
    if let Err(e) =
        index::manifest_stored(env, &owner.did, &owner.pds, handle.as_deref(), &stored).await
    {
        worker::console_error!("index write failed for {name}@{digest}: {e}");
    }
    let served = Served {
        media_type: parsed.media_type.clone(),
        digest: digest.clone(),
        bytes: pushed.bytes.clone(),
    };
    cache::remember_manifest(&owner.did, name.repository(), &served);
    if let Reference::Tag(tag) = reference {
        let tagged = index::tag_stored(
            env,
            &owner.did,
            name.repository(),
            tag,
            digest,
            manifest_uri,
        );
        if let Err(e) = tagged.await {
            worker::console_error!("index write failed for {name}:{tag}: {e}");
        }
        cache::remember_tag(&owner.did, name.repository(), tag, digest);
    }
}

/// `201 Created` with the manifest's location, digest and subject.
fn created(name: &RepoName, pushed: &Pushed) -> worker::Result<Response> {
    let mut resp = Response::empty()?.with_status(201);
    let h = resp.headers_mut();
    h.set(
        "Location",
        &format!("/v2/{name}/manifests/{}", pushed.digest),
    )?;
    h.set("Docker-Content-Digest", pushed.digest.as_str())?;
    if let Some(subject) = &pushed.parsed.subject {
        h.set("OCI-Subject", subject.digest.as_str())?;
    }
    Ok(resp)
}
