//! Blob uploads: `POST`, `PATCH`, `PUT`, `GET`, `DELETE` on
//! `/v2/<name>/blobs/uploads/…`.
//!
//! Each upload is a multipart upload at the owner's hold, or one checksummed
//! PUT when the whole blob arrives with its digest. Where the upload stands
//! (hold session, how many parts, bytes so far) travels in the `Location`
//! URL as a sealed token of constant size; the ETag storage gave each part,
//! which completing the upload needs, waits in D1 (`index::uploads`), so
//! the URL does not grow with the blob. Request bodies stream
//! straight from the client to a presigned part URL; only a PATCH without a
//! `Content-Length` (Docker streams layers that way) is cut into fixed-size
//! parts (filled by the runtime, `worker_support::blocks`), one uploading
//! while the next fills, so memory is bounded by two parts, never by the
//! blob, and none of it is WebAssembly memory. The hold verifies the digest before the blob
//! becomes visible. Chunks must suit storage's multipart rules (every part
//! but the last at least `MIN_CHUNK` and all of one size;
//! `atcr_protocol::chunking`): a chunk that would not is refused with 416
//! before it is read. `POST` announces the bounds: `OCI-Chunk-Min-Length`,
//! and `OCI-Chunk-Max-Length` under the request body limit the deployment
//! declares (`EDGE_BODY_LIMIT_BYTES`), past which Cloudflare's edge answers
//! 413 before the Worker runs.

use super::owner::{locate, require_owner};
use crate::config::AppConfig;
use crate::holds::{Hold, HoldCallError};
use crate::index;
use crate::oci_error::{error, internal, refuse};
use atcr_protocol::chunk_range::ChunkRange;
use atcr_protocol::chunking::{self, PartsSoFar, MIN_CHUNK};
use atcr_protocol::hold_api::{CompletedPart, SignedPut, MAX_PARTS};
use atcr_protocol::reference::RepoName;
use atcr_protocol::sealed;
use atcr_protocol::{Did, Digest, OciCode, Refusal};
use js_sys::Uint8Array;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Date, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result};
use worker_support::blocks::BlockReader;
use worker_support::{query_param, random_id};

/// Size of the parts a length-less PATCH is cut into.
const STREAM_PART_SIZE: u32 = chunking::PART_SIZE as u32;
/// An upload must finish within a day.
const UPLOAD_LIFETIME_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    /// Short id for `Docker-Upload-UUID`.
    id: String,
    name: String,
    user: Did,
    hold: Did,
    /// The hold's sealed session.
    session: String,
    /// Parts whose ETags travel in the state itself: uploads sealed before
    /// they were kept in D1 (new ones leave this empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<CompletedPart>,
    /// How many parts storage has acknowledged, `parts` among them.
    #[serde(default)]
    part_count: u32,
    /// Parts acknowledged during this request, not yet in D1.
    #[serde(skip)]
    unsaved: Vec<CompletedPart>,
    /// Length of the last part sent, which decides whether more may follow.
    last_part_len: Option<u64>,
    /// Length of the first part, which every part but the last must match.
    /// (Absent from uploads sealed before it was kept.)
    #[serde(default)]
    first_part_len: Option<u64>,
    offset: u64,
    expires_at: u64,
}

pub async fn handle(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    id: Option<&str>,
) -> Result<Response> {
    let outcome = match (req.method(), id) {
        (Method::Post, None) => start(req, env, config, user, name).await,
        (method, Some(id)) => match open_state(id, config, user, name) {
            Ok(state) => match method {
                Method::Patch => patch(req, env, config, state).await,
                Method::Put => finish(req, env, config, state).await,
                Method::Get => status_response(&state, config, 204).map(Created::Not),
                Method::Delete => cancel(env, config, state).await,
                _ => Err((
                    OciCode::Unsupported,
                    format!("{method} is not an upload operation"),
                )),
            },
            Err(refusal) => Err(refusal),
        },
        (method, None) => Err((OciCode::Unsupported, format!("{method} needs an upload id"))),
    };
    match outcome {
        Ok(Created::Blob(digest)) => {
            // A blob deleted from this repository's view is back in it.
            index::blob_linked(env, user, name.repository(), &digest).await?;
            created(name, &digest).or_else(refuse)
        }
        Ok(Created::Not(resp)) => Ok(resp),
        Err(refusal) => refuse(refusal),
    }
}

type Outcome = std::result::Result<Created, Refusal>;

/// How an upload request ended: with the blob in the repository, or with
/// an answer to send as it is (upload status, 416).
enum Created {
    Blob(Digest),
    Not(Response),
}

/// `POST /v2/<name>/blobs/uploads/`: mount (`?mount=&from=`), monolithic
/// (`?digest=` with the body), or a new session (202 + `Location`).
async fn start(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
) -> Outcome {
    let (owner, hold) = locate(name, config).await?;
    require_owner(&owner, user, name, "push to")?;
    if let Some(mount) = query_param(req, "mount") {
        let digest: Digest = mount.parse().map_err(digest_invalid)?;
        // The owner's hold already has it: "mounting" is just saying so.
        if hold
            .stat(config, Some(user), &digest)
            .await
            .map_err(hold_refusal)?
            .is_some()
        {
            return Ok(Created::Blob(digest));
        }
    }
    let mut state = new_state(name, user, &hold)?;
    if let Some(digest) = query_param(req, "digest") {
        let digest: Digest = digest.parse().map_err(digest_invalid)?;
        return upload_whole(req, env, config, &hold, &mut state, &digest).await;
    }
    state.session = hold
        .start_upload(config, user, None)
        .await
        .map_err(hold_refusal)?
        .session;
    status_response(&state, config, 202).map(Created::Not)
}

/// A state with no hold session yet.
fn new_state(
    name: &RepoName,
    user: &Did,
    hold: &Hold,
) -> std::result::Result<UploadState, Refusal> {
    Ok(UploadState {
        id: random_id().map_err(internal)?,
        name: name.to_string(),
        user: user.clone(),
        hold: hold.did.clone(),
        session: String::new(),
        parts: vec![],
        part_count: 0,
        unsaved: vec![],
        last_part_len: None,
        first_part_len: None,
        offset: 0,
        expires_at: Date::now().as_millis() / 1000 + UPLOAD_LIFETIME_SECS,
    })
}

/// The whole blob arrives in this request with its digest (monolithic POST,
/// or "POST then PUT"): a fresh hold upload that knows digest and size, so
/// storage can checksum one PUT instead of the hold reading parts back.
async fn upload_whole(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    hold: &Hold,
    state: &mut UploadState,
    digest: &Digest,
) -> Outcome {
    let length = header(req, "Content-Length").and_then(|v| v.parse::<u64>().ok());
    let started = hold
        .start_upload(config, &state.user, length.map(|len| (digest, len)))
        .await
        .map_err(hold_refusal)?;
    state.session = started.session;
    let Some(put) = started.single_put else {
        append_body(req, config, hold, state).await?;
        return complete(env, config, hold, state, digest).await;
    };
    if let Err(refusal) = send_single_put(req.inner().body(), &put).await {
        // Storage refused the bytes; make sure nothing stays staged.
        hold.abort_upload(config, &state.user, &state.session)
            .await
            .ok();
        return Err(refusal);
    }
    state.offset = length.unwrap_or(0);
    publish(config, hold, state, &[], digest).await
}

/// Streams `body` to a checksummed PUT; storage refuses other bytes.
async fn send_single_put(
    body: Option<web_sys::ReadableStream>,
    put: &SignedPut,
) -> std::result::Result<(), Refusal> {
    let headers = Headers::new();
    for (name, value) in &put.headers {
        headers.set(name, value).map_err(internal)?;
    }
    let body = match body {
        Some(stream) => JsValue::from(stream),
        None => js_sys::Uint8Array::new_with_length(0).into(),
    };
    let mut init = RequestInit::new();
    init.with_method(Method::Put)
        .with_headers(headers)
        .with_body(Some(body));
    let request = Request::new_with_init(&put.url, &init).map_err(internal)?;
    worker_support::subrequests::note();
    let mut resp = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| (OciCode::Internal, format!("storage unreachable: {e}")))?;
    match resp.status_code() {
        200 => Ok(()),
        status => {
            let body = resp.text().await.unwrap_or_default();
            let code = atcr_protocol::s3::xml_element(&body, "Code").unwrap_or_default();
            if code == "BadDigest" {
                return Err((
                    OciCode::DigestInvalid,
                    "the uploaded bytes do not have the digest named; nothing was stored"
                        .to_string(),
                ));
            }
            Err((
                OciCode::BlobUploadInvalid,
                format!("storage refused the upload: {status} {code}"),
            ))
        }
    }
}

/// `PATCH`: appends the body as the next part(s).
async fn patch(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    mut state: UploadState,
) -> Outcome {
    if let Some(refusal) = cannot_continue(req, &state, config)? {
        return Ok(Created::Not(refusal));
    }
    let hold = Hold::resolve(&state.hold, config)
        .await
        .map_err(hold_refusal)?;
    append_body(req, config, &hold, &mut state).await?;
    save_parts(env, &mut state).await?;
    status_response(&state, config, 202).map(Created::Not)
}

/// `PUT ?digest=`: the last bytes (if any), then verification at the hold.
async fn finish(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    mut state: UploadState,
) -> Outcome {
    let digest: Digest = query_param(req, "digest")
        .ok_or((
            OciCode::DigestInvalid,
            "PUT must name the blob's digest (?digest=)".to_string(),
        ))?
        .parse()
        .map_err(digest_invalid)?;
    let has_body =
        header(req, "Content-Length").map_or(req.inner().body().is_some(), |len| len != "0");
    if has_body {
        if let Some(refusal) = cannot_continue(req, &state, config)? {
            return Ok(Created::Not(refusal));
        }
    }
    let hold = Hold::resolve(&state.hold, config)
        .await
        .map_err(hold_refusal)?;
    if state.parts_sent() == 0 && has_body {
        // "POST then PUT": the whole blob is in this request.
        let opened = state.session.clone();
        let outcome = upload_whole(req, env, config, &hold, &mut state, &digest).await;
        hold.abort_upload(config, &state.user, &opened).await.ok();
        return outcome;
    }
    append_body(req, config, &hold, &mut state).await?;
    complete(env, config, &hold, &mut state, &digest).await
}

/// A 416 for a chunk the upload cannot take: out of order, or of a size
/// storage cannot assemble after the parts so far.
fn cannot_continue(
    req: &Request,
    state: &UploadState,
    config: &AppConfig,
) -> std::result::Result<Option<Response>, Refusal> {
    match out_of_order(req, state, config)? {
        Some(refusal) => Ok(Some(refusal)),
        None => wrong_size(req, state, config),
    }
}

/// "If the chunk is uploaded out of order, the registry MUST respond with
/// 416": a `Content-Range` that does not start where the upload stands.
fn out_of_order(
    req: &Request,
    state: &UploadState,
    config: &AppConfig,
) -> std::result::Result<Option<Response>, Refusal> {
    let Some(range) = header(req, "Content-Range") else {
        return Ok(None);
    };
    if ChunkRange::parse(&range).is_some_and(|r| r.start == state.offset) {
        return Ok(None);
    }
    let message = format!(
        "Content-Range {range} does not continue at byte {}; GET the upload URL to see where it stands",
        state.offset
    );
    unsatisfiable(state, config, message).map(Some)
}

/// More bytes turn the last part into a middle one, which storage accepts
/// only from `MIN_CHUNK` bytes up and only as long as the first; and no part
/// may be longer than the first: a 416 naming the sizes, if this chunk
/// breaks that.
fn wrong_size(
    req: &Request,
    state: &UploadState,
    config: &AppConfig,
) -> std::result::Result<Option<Response>, Refusal> {
    let parts = PartsSoFar {
        first: state.first_part_len,
        last: state.last_part_len,
    };
    let length = header(req, "Content-Length").and_then(|v| v.parse::<u64>().ok());
    match chunking::check_next(parts, length) {
        Ok(()) => Ok(None),
        Err(why) => unsatisfiable(state, config, why.to_string()).map(Some),
    }
}

/// 416 `BLOB_UPLOAD_INVALID`, with the upload's `Location` and `Range` so
/// the client can resume where it stands.
fn unsatisfiable(
    state: &UploadState,
    config: &AppConfig,
    message: String,
) -> std::result::Result<Response, Refusal> {
    let mut resp = error(OciCode::BlobUploadInvalid, Some(message))
        .map_err(internal)?
        .with_status(416);
    let status = status_response(state, config, 416)?;
    for name in ["Location", "Range", "Docker-Upload-UUID"] {
        if let Some(value) = status.headers().get(name).map_err(internal)? {
            resp.headers_mut().set(name, &value).map_err(internal)?;
        }
    }
    Ok(resp)
}

async fn cancel(env: &Env, config: &AppConfig, state: UploadState) -> Outcome {
    let hold = Hold::resolve(&state.hold, config)
        .await
        .map_err(hold_refusal)?;
    hold.abort_upload(config, &state.user, &state.session)
        .await
        .map_err(hold_refusal)?;
    index::forget_upload_parts(env, &state.id)
        .await
        .map_err(internal)?;
    Response::empty()
        .map(|r| Created::Not(r.with_status(204)))
        .map_err(internal)
}

async fn complete(
    env: &Env,
    config: &AppConfig,
    hold: &Hold,
    state: &mut UploadState,
    digest: &Digest,
) -> Outcome {
    if state.parts_sent() == 0 {
        // An empty blob is still one (empty) part.
        put_part(
            config,
            hold,
            state,
            PartBody::Part(Uint8Array::new_with_length(0)),
        )
        .await?;
    }
    // Every part, in order: those the state carries, those earlier requests
    // saved, those this request sent.
    let legacy = state.parts.len() as u32;
    let mut parts = state.parts.clone();
    if state.part_count > legacy {
        let saved = index::upload_parts(env, &state.id, legacy + 1, state.part_count)
            .await
            .map_err(internal)?;
        parts.extend(saved);
    }
    for part in &state.unsaved {
        parts.retain(|p| p.part_number != part.part_number);
        parts.push(part.clone());
    }
    parts.sort_by_key(|p| p.part_number);
    if parts.len() as u32 != state.parts_sent() {
        return Err((
            OciCode::BlobUploadUnknown,
            format!(
                "the upload's parts are no longer known ({} of {}); start it again",
                parts.len(),
                state.parts_sent()
            ),
        ));
    }
    let outcome = publish(config, hold, state, &parts, digest).await;
    if outcome.is_ok() {
        // Only the sweep would remove them otherwise.
        index::forget_upload_parts(env, &state.id).await.ok();
    }
    outcome
}

/// Asks the hold to verify the upload of `parts` and publish it under `digest`.
async fn publish(
    config: &AppConfig,
    hold: &Hold,
    state: &UploadState,
    parts: &[CompletedPart],
    digest: &Digest,
) -> Outcome {
    match hold
        .complete_upload(
            config,
            &state.user,
            &state.session,
            parts,
            digest,
            state.offset,
        )
        .await
    {
        Ok(done) => Ok(Created::Blob(done.digest)),
        Err(HoldCallError::Refused { error, .. }) if error.error == "DigestMismatch" => {
            Err((OciCode::DigestInvalid, error.message))
        }
        Err(HoldCallError::Refused { error, .. }) if error.error == "UploadNotFound" => {
            Err((OciCode::BlobUploadUnknown, error.message))
        }
        Err(e) => Err(hold_refusal(e)),
    }
}

enum PartBody {
    /// The incoming request body, passed through without buffering.
    Stream(web_sys::ReadableStream, u64),
    /// A part cut from a body without a length (or the empty blob's one part).
    Part(Uint8Array),
}

/// Sends whatever body the request has to the hold as parts.
async fn append_body(
    req: &mut Request,
    config: &AppConfig,
    hold: &Hold,
    state: &mut UploadState,
) -> std::result::Result<(), Refusal> {
    let length = header(req, "Content-Length").and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(0) => Ok(()),
        Some(len) => {
            let Some(body) = req.inner().body() else {
                return Ok(());
            };
            put_part(config, hold, state, PartBody::Stream(body, len)).await
        }
        None => {
            // No length: cut the stream into parts. Each part uploads while
            // the next one is read, so at most two are in memory.
            let (user, session) = (state.user.clone(), state.session.clone());
            let Some(body) = req.inner().body() else {
                return Ok(());
            };
            let mut reader = BlockReader::new(&body, STREAM_PART_SIZE);
            let mut current = next_part(&mut reader).await?;
            while let Some(bytes) = current {
                let number = next_part_number(state)?;
                let (sent, next) = futures_util::join!(
                    send_part(config, hold, &user, &session, number, PartBody::Part(bytes)),
                    next_part(&mut reader)
                );
                record_part(state, sent?);
                current = next?;
            }
            Ok(())
        }
    }
}

async fn next_part(reader: &mut BlockReader) -> std::result::Result<Option<Uint8Array>, Refusal> {
    reader.next_block().await.map_err(|e| {
        (
            OciCode::BlobUploadInvalid,
            format!("reading the upload failed: {e:?}"),
        )
    })
}

/// Sends one part and records it in the upload state.
async fn put_part(
    config: &AppConfig,
    hold: &Hold,
    state: &mut UploadState,
    body: PartBody,
) -> std::result::Result<(), Refusal> {
    let number = next_part_number(state)?;
    let sent = send_part(config, hold, &state.user, &state.session, number, body).await?;
    record_part(state, sent);
    Ok(())
}

fn next_part_number(state: &UploadState) -> std::result::Result<u32, Refusal> {
    let number = state.parts_sent() + 1;
    if number > MAX_PARTS {
        return Err((
            OciCode::BlobUploadInvalid,
            format!("an upload may have at most {MAX_PARTS} parts"),
        ));
    }
    Ok(number)
}

fn record_part(state: &mut UploadState, (part, len): (CompletedPart, u64)) {
    state.part_count = state.parts_sent() + 1;
    state.unsaved.push(part);
    state.first_part_len.get_or_insert(len);
    state.last_part_len = Some(len);
    state.offset += len;
}

/// PUTs part `number` to the URL the hold presigns for it: the part as
/// storage acknowledged it, and its length.
async fn send_part(
    config: &AppConfig,
    hold: &Hold,
    user: &Did,
    session: &str,
    number: u32,
    body: PartBody,
) -> std::result::Result<(CompletedPart, u64), Refusal> {
    let url = hold
        .part_url(config, user, session, number)
        .await
        .map_err(hold_refusal)?;
    let headers = Headers::new();
    let mut init = RequestInit::new();
    let len = match body {
        PartBody::Stream(stream, len) => {
            headers
                .set("Content-Length", &len.to_string())
                .map_err(internal)?;
            init.with_body(Some(JsValue::from(stream)));
            len
        }
        PartBody::Part(bytes) => {
            let len = u64::from(bytes.length());
            init.with_body(Some(bytes.into()));
            len
        }
    };
    init.with_method(Method::Put).with_headers(headers);
    let request = Request::new_with_init(&url, &init).map_err(internal)?;
    worker_support::subrequests::note();
    let mut resp = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| (OciCode::Internal, format!("storage unreachable: {e}")))?;
    // The part URL was presigned a moment ago, so a refusal means the
    // multipart upload is gone (S3 answers 404 NoSuchUpload; some servers 403).
    if matches!(resp.status_code(), 403 | 404) {
        return Err((
            OciCode::BlobUploadUnknown,
            "the upload was cancelled or has expired".to_string(),
        ));
    }
    if resp.status_code() != 200 {
        let body = resp.text().await.unwrap_or_default();
        return Err((
            OciCode::BlobUploadInvalid,
            format!(
                "storage refused part {number}: {} {}",
                resp.status_code(),
                body.chars().take(300).collect::<String>()
            ),
        ));
    }
    let etag = resp
        .headers()
        .get("ETag")
        .ok()
        .flatten()
        .ok_or((OciCode::Internal, "storage returned no ETag".to_string()))?;
    let part = CompletedPart {
        part_number: number,
        etag,
    };
    Ok((part, len))
}

impl UploadState {
    /// Parts storage has acknowledged so far.
    fn parts_sent(&self) -> u32 {
        self.part_count.max(self.parts.len() as u32)
    }
}

/// Keeps the ETags of the parts this request sent in D1 (one write), where
/// completing the upload finds them.
async fn save_parts(env: &Env, state: &mut UploadState) -> std::result::Result<(), Refusal> {
    if state.unsaved.is_empty() {
        return Ok(());
    }
    index::save_upload_parts(env, &state.id, &state.unsaved, state.expires_at)
        .await
        .map_err(internal)?;
    state.unsaved.clear();
    Ok(())
}

/// 202/204 with `Location`, `Range` and `Docker-Upload-UUID`: where the upload stands.
fn status_response(
    state: &UploadState,
    config: &AppConfig,
    status: u16,
) -> std::result::Result<Response, Refusal> {
    let location = format!(
        "/v2/{}/blobs/uploads/{}",
        state.name,
        sealed::seal(state, &config.secret_key)
    );
    let mut resp = Response::empty().map_err(internal)?.with_status(status);
    let h = resp.headers_mut();
    h.set("Location", &location).map_err(internal)?;
    // Inclusive byte range received so far ("0-0" before any byte, as distribution does).
    h.set("Range", &format!("0-{}", state.offset.saturating_sub(1)))
        .map_err(internal)?;
    h.set("Docker-Upload-UUID", &state.id).map_err(internal)?;
    h.set("OCI-Chunk-Min-Length", &MIN_CHUNK.to_string())
        .map_err(internal)?;
    let max = chunking::max_chunk(config.edge_body_limit);
    h.set("OCI-Chunk-Max-Length", &max.to_string())
        .map_err(internal)?;
    h.set("Content-Length", "0").map_err(internal)?;
    Ok(resp)
}

/// 201 for a blob that now exists under `digest`.
fn created(name: &RepoName, digest: &Digest) -> std::result::Result<Response, Refusal> {
    let mut resp = Response::empty().map_err(internal)?.with_status(201);
    let h = resp.headers_mut();
    h.set("Location", &format!("/v2/{name}/blobs/{digest}"))
        .map_err(internal)?;
    h.set("Docker-Content-Digest", digest.as_str())
        .map_err(internal)?;
    h.set("Content-Length", "0").map_err(internal)?;
    Ok(resp)
}

/// The upload state in an upload URL, if it is ours, this user's, this
/// repository's and not expired.
fn open_state(
    id: &str,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
) -> std::result::Result<UploadState, Refusal> {
    let unknown = |why: &str| (OciCode::BlobUploadUnknown, format!("upload unknown: {why}"));
    let state: UploadState = sealed::open(id, &config.secret_key)
        .map_err(|_| unknown("malformed or altered upload id"))?;
    if state.expires_at < Date::now().as_millis() / 1000 {
        return Err(unknown("it expired"));
    }
    if &state.user != user || state.name != name.as_str() {
        return Err(unknown("it belongs to another user or repository"));
    }
    Ok(state)
}

fn hold_refusal(e: HoldCallError) -> Refusal {
    match e {
        HoldCallError::Refused {
            status: 401 | 403,
            error,
        } => (
            OciCode::Denied,
            format!("the hold refused: {}", error.message),
        ),
        other => (OciCode::Internal, other.to_string()),
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn digest_invalid(e: atcr_protocol::digest::DigestError) -> Refusal {
    (OciCode::DigestInvalid, e.to_string())
}
