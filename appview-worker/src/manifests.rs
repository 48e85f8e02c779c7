//! Manifests: `PUT`, `GET`, `HEAD /v2/<name>/manifests/<reference>` and
//! `GET /v2/<name>/tags/list`.
//!
//! A manifest lives in its owner's PDS: the exact bytes as a blob, described
//! by an `io.atcr.manifest` record; a tag is an `io.atcr.tag` record pointing
//! at it. Writes go in the order blob → manifest record → tag record → D1
//! index, so a failure part-way leaves nothing that points at something
//! missing. Reads go to the PDS, the source of truth.

use crate::config::AppConfig;
use crate::holds::{locate, Hold};
use crate::index::{self, StoredManifest};
use crate::oci::{error, internal, Refusal};
use crate::pds::{all_records, get_blob, get_record, Body, PdsWriter};
use crate::resolve::{require_owner, resolve_repo_owner, Identity};
use atcr_protocol::digest::Algorithm;
use atcr_protocol::manifest::{self, tag_record_key, ManifestError, MAX_MANIFEST_BYTES};
use atcr_protocol::pagination::Page;
use atcr_protocol::reference::{Reference, RepoName};
use atcr_protocol::tid::tid;
use atcr_protocol::{Did, Digest, OciCode};
use serde_json::{json, Value};
use worker::{Context, Date, EncodeBody, Env, Method, Request, Response, Result};
use worker_support::{now_rfc3339, query_param, IsolateCache};

pub const MANIFEST_COLLECTION: &str = "io.atcr.manifest";
const TAG_COLLECTION: &str = "io.atcr.tag";
const PROFILE_COLLECTION: &str = "io.atcr.sailor.profile";

/// A manifest as served: (media type, digest, bytes).
type Served = (String, Digest, Vec<u8>);

/// Tags move, so a tag is trusted for a few seconds; a pusher's own isolate
/// sees the new value at once (the PUT updates the cache).
const TAG_CACHE_MS: u64 = 10_000;

thread_local! {
    // Content-addressed: a manifest's bytes never change under its digest.
    static MANIFESTS: IsolateCache<Served> = IsolateCache::new(512);
    static TAGS: IsolateCache<Digest> = IsolateCache::new(4096);
}

fn manifest_key(owner: &Did, repository: &str, digest: &Digest) -> String {
    format!("{owner}/{repository}@{digest}")
}

fn tag_key(owner: &Did, repository: &str, tag: &str) -> String {
    format!("{owner}/{repository}:{tag}")
}

/// `PUT /v2/<name>/manifests/<reference>`.
pub async fn put_manifest(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: Reference,
) -> Result<Response> {
    match store(req, env, config, user, name, reference).await {
        Ok(resp) => Ok(resp),
        Err((code, message)) => {
            let resp = error(code, Some(message))?;
            // Oversized manifests are a 413 ("Payload Too Large").
            Ok(if code == OciCode::SizeInvalid {
                resp.with_status(413)
            } else {
                resp
            })
        }
    }
}

async fn store(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: Reference,
) -> std::result::Result<Response, Refusal> {
    let (owner, hold) = locate(name, config).await?;
    require_owner(&owner, user, name, "push to")?;
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
    let algorithm = match &reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = Digest::of(algorithm, &bytes);
    if let Reference::Digest(expected) = &reference {
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
    for blob in parsed.blobs() {
        if hold
            .stat(config, Some(user), &blob.digest)
            .await
            .map_err(|e| (OciCode::Internal, e.to_string()))?
            .is_none()
        {
            return Err((
                OciCode::ManifestBlobUnknown,
                format!(
                    "blob {} is not in {name}'s hold; push it first",
                    blob.digest
                ),
            ));
        }
    }
    for child in &parsed.manifests {
        if find_manifest(env, &owner, name.repository(), &child.digest)
            .await?
            .is_none()
        {
            return Err((
                OciCode::ManifestBlobUnknown,
                format!("manifest {} is not in {name}; push it first", child.digest),
            ));
        }
    }

    let mut writer = PdsWriter::for_user(env, config, user)
        .await
        .map_err(internal)?
        .ok_or((
            OciCode::Denied,
            format!("the registry holds no PDS session for {user}: log in again"),
        ))?;
    ensure_profile(&mut writer, &owner, &hold).await?;
    let pds_error = |e: String| (OciCode::Internal, e);
    let blob = writer
        .post(
            "com.atproto.repo.uploadBlob",
            Body::Bytes(&bytes, &parsed.media_type),
        )
        .await
        .map_err(pds_error)?["blob"]
        .clone();
    let now = now_rfc3339();
    let record = manifest::record(
        &parsed,
        name.repository(),
        &digest,
        hold.did.as_str(),
        blob,
        &now,
    );
    // Re-pushing the same manifest updates its record instead of adding one.
    let rkey = match index::manifest_record(env, &owner.did, name.repository(), &digest)
        .await
        .map_err(internal)?
    {
        Some(uri) => uri.rsplit('/').next().unwrap_or_default().to_string(),
        None => new_record_key(),
    };
    let written = writer
        .post(
            "com.atproto.repo.putRecord",
            Body::Json(json!({
                "repo": user, "collection": MANIFEST_COLLECTION, "rkey": rkey, "record": record,
            })),
        )
        .await
        .map_err(pds_error)?;
    let manifest_uri = written["uri"].as_str().unwrap_or_default().to_string();
    if let Reference::Tag(tag) = &reference {
        writer
            .post("com.atproto.repo.putRecord", Body::Json(json!({
                "repo": user, "collection": TAG_COLLECTION, "rkey": tag_record_key(name.repository(), tag),
                "record": { "$type": TAG_COLLECTION, "repository": name.repository(), "tag": tag,
                            "manifest": manifest_uri, "createdAt": now, "updatedAt": now },
            })))
            .await
            .map_err(pds_error)?;
    }

    // The PDS has it all now; the index is a cache, so a failure here is logged, not returned.
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
        digest: &digest,
        media_type: &parsed.media_type,
        artifact_type: parsed.artifact_type.as_deref(),
        subject: parsed.subject.as_ref().map(|s| &s.digest),
        size: bytes.len() as u64,
        hold: hold.did.as_str(),
        record_uri: &manifest_uri,
        platforms,
    };
    let handle = owner.doc.handle().map(|h| h.to_string());
    if let Err(e) =
        index::manifest_stored(env, &owner.did, &owner.pds, handle.as_deref(), &stored).await
    {
        worker::console_error!("index write failed for {name}@{digest}: {e}");
    }
    if let Reference::Tag(tag) = &reference {
        if let Err(e) = index::tag_stored(
            env,
            &owner.did,
            name.repository(),
            tag,
            &digest,
            &manifest_uri,
        )
        .await
        {
            worker::console_error!("index write failed for {name}:{tag}: {e}");
        }
    }

    let served = (parsed.media_type.clone(), digest.clone(), bytes.clone());
    MANIFESTS.with(|c| {
        c.put(
            &manifest_key(&owner.did, name.repository(), &digest),
            served,
            u64::MAX,
        )
    });
    if let Reference::Tag(tag) = &reference {
        TAGS.with(|c| {
            c.put(
                &tag_key(&owner.did, name.repository(), tag),
                digest.clone(),
                TAG_CACHE_MS,
            )
        });
    }

    let mut resp = Response::empty().map_err(internal)?.with_status(201);
    let h = resp.headers_mut();
    h.set("Location", &format!("/v2/{name}/manifests/{digest}"))
        .map_err(internal)?;
    h.set("Docker-Content-Digest", digest.as_str())
        .map_err(internal)?;
    if let Some(subject) = &parsed.subject {
        h.set("OCI-Subject", subject.digest.as_str())
            .map_err(internal)?;
    }
    Ok(resp)
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`: the exact bytes pushed.
pub async fn get_manifest(
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
    method: Method,
    name: &RepoName,
    reference: Reference,
) -> Result<Response> {
    match fetch(env, config, name, &reference).await {
        Ok((owner, media_type, digest, bytes)) => {
            let length = bytes.len();
            let mut resp = if method == Method::Head {
                Response::empty()?
            } else {
                Response::from_bytes(bytes)?
            };
            // Keep Content-Length: no compression of registry payloads.
            resp = resp.with_encode_body(EncodeBody::Manual);
            let h = resp.headers_mut();
            h.set("Content-Type", &media_type)?;
            h.set("Content-Length", &length.to_string())?;
            h.set("Docker-Content-Digest", digest.as_str())?;
            if method == Method::Get {
                // Counted after the answer: the client does not wait on D1.
                let (env, repository) = (env.clone(), name.repository().to_string());
                ctx.wait_until(async move {
                    if let Err(e) = index::count_pull(&env, &owner, &repository).await {
                        worker::console_error!("pull count failed for {repository}: {e}");
                    }
                });
            }
            Ok(resp)
        }
        Err((code, message)) => error(code, Some(message)),
    }
}

async fn fetch(
    env: &Env,
    config: &AppConfig,
    name: &RepoName,
    reference: &Reference,
) -> std::result::Result<(Did, String, Digest, Vec<u8>), Refusal> {
    let owner = resolve_repo_owner(name, config).await?;
    let unknown = || {
        (
            OciCode::ManifestUnknown,
            format!("{name} has no manifest {}", display(reference)),
        )
    };
    let cached_digest = match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(tag) => TAGS.with(|c| c.get(&tag_key(&owner.did, name.repository(), tag))),
    };
    if let Some(digest) = cached_digest {
        if let Some((media_type, digest, bytes)) =
            MANIFESTS.with(|c| c.get(&manifest_key(&owner.did, name.repository(), &digest)))
        {
            return Ok((owner.did, media_type, digest, bytes));
        }
    }
    let record = match reference {
        Reference::Tag(tag) => {
            let tag_record = get_record(
                &owner.pds,
                &owner.did,
                TAG_COLLECTION,
                &tag_record_key(name.repository(), tag),
            )
            .await
            .map_err(pds_unavailable)?
            .ok_or_else(unknown)?;
            let uri = tag_record["value"]["manifest"].as_str().unwrap_or_default();
            let rkey = uri.rsplit('/').next().unwrap_or_default();
            get_record(&owner.pds, &owner.did, MANIFEST_COLLECTION, rkey)
                .await
                .map_err(pds_unavailable)?
                .ok_or_else(unknown)?
        }
        Reference::Digest(digest) => find_manifest(env, &owner, name.repository(), digest)
            .await?
            .ok_or_else(unknown)?,
    };
    let value = &record["value"];
    if value["repository"].as_str() != Some(name.repository()) {
        return Err(unknown());
    }
    let digest: Digest = value["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| (OciCode::Internal, "record has no valid digest".to_string()))?;
    let cid = value["manifestBlob"]["ref"]["$link"]
        .as_str()
        .ok_or((OciCode::Internal, "record has no manifestBlob".to_string()))?;
    let bytes = get_blob(&owner.pds, &owner.did, cid)
        .await
        .map_err(pds_unavailable)?;
    // The PDS is trusted to store, not to be right: check before serving.
    if Digest::of(digest.algorithm(), &bytes) != digest {
        return Err((
            OciCode::Internal,
            format!("the stored bytes of {digest} do not match their digest"),
        ));
    }
    let media_type = value["mediaType"]
        .as_str()
        .unwrap_or(manifest::OCI_MANIFEST)
        .to_string();
    if let Reference::Tag(tag) = reference {
        TAGS.with(|c| {
            c.put(
                &tag_key(&owner.did, name.repository(), tag),
                digest.clone(),
                TAG_CACHE_MS,
            )
        });
    }
    let served = (media_type.clone(), digest.clone(), bytes.clone());
    MANIFESTS.with(|c| {
        c.put(
            &manifest_key(&owner.did, name.repository(), &digest),
            served,
            u64::MAX,
        )
    });
    Ok((owner.did, media_type, digest, bytes))
}

/// The `io.atcr.manifest` record of `digest` in `repository`: through the
/// index when this appview wrote it, else by scanning the owner's records.
async fn find_manifest(
    env: &Env,
    owner: &Identity,
    repository: &str,
    digest: &Digest,
) -> std::result::Result<Option<Value>, Refusal> {
    if let Some(uri) = index::manifest_record(env, &owner.did, repository, digest)
        .await
        .map_err(internal)?
    {
        let rkey = uri.rsplit('/').next().unwrap_or_default();
        if let Some(record) = get_record(&owner.pds, &owner.did, MANIFEST_COLLECTION, rkey)
            .await
            .map_err(pds_unavailable)?
        {
            return Ok(Some(record));
        }
    }
    let records = all_records(&owner.pds, &owner.did, MANIFEST_COLLECTION)
        .await
        .map_err(pds_unavailable)?;
    Ok(records.into_iter().find(|r| {
        r["value"]["digest"].as_str() == Some(digest.as_str())
            && r["value"]["repository"].as_str() == Some(repository)
    }))
}

/// `GET /v2/<name>/tags/list?n=&last=`, from the owner's tag records.
pub async fn list_tags(req: &Request, config: &AppConfig, name: &RepoName) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err((code, m)) => return error(code, Some(m)),
    };
    let records = match all_records(&owner.pds, &owner.did, TAG_COLLECTION).await {
        Ok(records) => records,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    let mut tags: Vec<String> = records
        .iter()
        .filter(|r| r["value"]["repository"].as_str() == Some(name.repository()))
        .filter_map(|r| r["value"]["tag"].as_str().map(str::to_string))
        .collect();
    if tags.is_empty() {
        return error(OciCode::NameUnknown, Some(format!("{name} has no tags")));
    }
    tags.sort();
    let page = Page::of(
        tags,
        query_param(req, "last").as_deref(),
        query_param(req, "n").and_then(|n| n.parse().ok()),
    );
    let mut resp = Response::from_json(&json!({ "name": name.as_str(), "tags": page.items }))?;
    if let Some(link) = page.next_link(&format!("/v2/{name}/tags/list")) {
        resp.headers_mut().set("Link", &link)?;
    }
    Ok(resp)
}

/// The owner's profile names their hold; created on their first push.
async fn ensure_profile(
    writer: &mut PdsWriter<'_>,
    owner: &Identity,
    hold: &Hold,
) -> std::result::Result<(), Refusal> {
    if get_record(&owner.pds, &owner.did, PROFILE_COLLECTION, "self")
        .await
        .map_err(pds_unavailable)?
        .is_some()
    {
        return Ok(());
    }
    let now = now_rfc3339();
    writer
        .post("com.atproto.repo.putRecord", Body::Json(json!({
            "repo": owner.did, "collection": PROFILE_COLLECTION, "rkey": "self",
            "record": { "$type": PROFILE_COLLECTION, "defaultHold": hold.did, "createdAt": now, "updatedAt": now },
        })))
        .await
        .map(|_| ())
        .map_err(|e| (OciCode::Internal, e))
}

fn new_record_key() -> String {
    let mut clock = [0u8; 2];
    getrandom::getrandom(&mut clock).unwrap_or_default();
    tid(
        Date::now().as_millis() * 1000,
        u16::from_le_bytes(clock) & 0x3ff,
    )
}

fn display(reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => t.clone(),
        Reference::Digest(d) => d.to_string(),
    }
}

fn pds_unavailable(e: String) -> Refusal {
    (
        OciCode::Internal,
        format!("the owner's PDS could not be read: {e}"),
    )
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: every manifest in the
/// repository whose `subject` is `digest`, as an OCI index. Read from the
/// owner's records, so any appview answers the same.
pub async fn referrers(
    req: &Request,
    config: &AppConfig,
    name: &RepoName,
    subject: &Digest,
) -> Result<Response> {
    let owner = match resolve_repo_owner(name, config).await {
        Ok(o) => o,
        Err((code, m)) => return error(code, Some(m)),
    };
    let filter = query_param(req, "artifactType");
    let records = match all_records(&owner.pds, &owner.did, MANIFEST_COLLECTION).await {
        Ok(records) => records,
        Err(e) => return error(OciCode::Internal, Some(e)),
    };
    let mut found = Vec::new();
    for record in records {
        let v = &record["value"];
        if v["repository"].as_str() != Some(name.repository())
            || v["subject"]["digest"].as_str() != Some(subject.as_str())
        {
            continue;
        }
        // "If the artifactType is empty or missing in an image manifest, the config descriptor's mediaType."
        let artifact_type = v["artifactType"]
            .as_str()
            .or_else(|| v["config"]["mediaType"].as_str())
            .map(str::to_string);
        if filter.is_some() && artifact_type != filter {
            continue;
        }
        let mut descriptor = json!({
            "mediaType": v["mediaType"],
            "digest": v["digest"],
            "size": v["manifestBlob"]["size"],
        });
        if let Some(t) = artifact_type {
            descriptor["artifactType"] = json!(t);
        }
        if !v["annotations"].is_null() {
            descriptor["annotations"] = v["annotations"].clone();
        }
        found.push(descriptor);
    }
    let body = json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": found })
        .to_string();
    let mut resp = Response::ok(body)?.with_encode_body(EncodeBody::Manual);
    resp.headers_mut()
        .set("Content-Type", manifest::OCI_INDEX)?;
    if filter.is_some() {
        resp.headers_mut()
            .set("OCI-Filters-Applied", "artifactType")?;
    }
    Ok(resp)
}

/// `DELETE /v2/<name>/manifests/<reference>`: a tag deletes its tag record;
/// a digest deletes the manifest record and first every tag pointing at it,
/// so no tag is left naming a missing manifest.
pub async fn delete_manifest(
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: Reference,
) -> Result<Response> {
    let outcome: std::result::Result<(), Refusal> = async {
        let owner = resolve_repo_owner(name, config).await?;
        require_owner(&owner, user, name, "delete from")?;
        let mut writer = PdsWriter::for_user(env, config, user)
            .await
            .map_err(internal)?
            .ok_or((OciCode::Denied, format!("the registry holds no PDS session for {user}: log in again")))?;
        let unknown = || (OciCode::ManifestUnknown, format!("{name} has no manifest {}", display(&reference)));
        let delete = |collection: &'static str, rkey: String| json!({ "repo": user, "collection": collection, "rkey": rkey });
        match &reference {
            Reference::Tag(tag) => {
                let rkey = tag_record_key(name.repository(), tag);
                get_record(&owner.pds, &owner.did, TAG_COLLECTION, &rkey).await.map_err(pds_unavailable)?.ok_or_else(unknown)?;
                writer.post("com.atproto.repo.deleteRecord", Body::Json(delete(TAG_COLLECTION, rkey))).await.map_err(|e| (OciCode::Internal, e))?;
                TAGS.with(|c| c.remove(&tag_key(&owner.did, name.repository(), tag)));
                index::tag_deleted(env, &owner.did, name.repository(), tag).await.map_err(internal)?;
            }
            Reference::Digest(digest) => {
                let record = find_manifest(env, &owner, name.repository(), digest).await?.ok_or_else(unknown)?;
                let uri = record["uri"].as_str().unwrap_or_default().to_string();
                let tags = all_records(&owner.pds, &owner.did, TAG_COLLECTION).await.map_err(pds_unavailable)?;
                for tag in tags.iter().filter(|t| t["value"]["manifest"].as_str() == Some(uri.as_str())) {
                    let rkey = tag["uri"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
                    writer.post("com.atproto.repo.deleteRecord", Body::Json(delete(TAG_COLLECTION, rkey))).await.map_err(|e| (OciCode::Internal, e))?;
                }
                let rkey = uri.rsplit('/').next().unwrap_or_default().to_string();
                writer.post("com.atproto.repo.deleteRecord", Body::Json(delete(MANIFEST_COLLECTION, rkey))).await.map_err(|e| (OciCode::Internal, e))?;
                MANIFESTS.with(|c| c.remove(&manifest_key(&owner.did, name.repository(), digest)));
                index::manifest_deleted(env, &owner.did, name.repository(), digest).await.map_err(internal)?;
            }
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(Response::empty()?.with_status(202)),
        Err((code, message)) => error(code, Some(message)),
    }
}
