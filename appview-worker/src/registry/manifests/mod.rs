//! Manifests: `PUT`, `GET`, `HEAD`, `DELETE /v2/<name>/manifests/<reference>`.
//!
//! A manifest lives in its owner's PDS: the exact bytes as a blob, described
//! by an `io.atcr.manifest` record; a tag is an `io.atcr.tag` record pointing
//! at it. Reads go to the PDS, the source of truth (`read`); writes are in
//! `push` and `delete`; `cache` remembers what an isolate has seen.

mod cache;
mod delete;
mod push;
mod read;

use crate::config::AppConfig;
use crate::index;
use crate::oci_error::{error, refuse};
use atcr_protocol::reference::{Reference, RepoName};
use atcr_protocol::{Did, OciCode};
use worker::{Context, EncodeBody, Env, Method, Request, Response, Result};

/// `PUT /v2/<name>/manifests/<reference>`.
pub async fn put_manifest(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: Reference,
) -> Result<Response> {
    match push::store(req, env, config, user, name, reference).await {
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

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`: the exact bytes pushed.
pub async fn get_manifest(
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
    method: Method,
    name: &RepoName,
    reference: Reference,
) -> Result<Response> {
    let (owner, served) = match read::read_manifest(env, config, name, &reference).await {
        Ok(found) => found,
        Err(refusal) => return refuse(refusal),
    };
    let length = served.bytes.len();
    let mut resp = if method == Method::Head {
        Response::empty()?
    } else {
        Response::from_bytes(served.bytes)?
    };
    // Keep Content-Length: no compression of registry payloads.
    resp = resp.with_encode_body(EncodeBody::Manual);
    let h = resp.headers_mut();
    h.set("Content-Type", &served.media_type)?;
    h.set("Content-Length", &length.to_string())?;
    h.set("Docker-Content-Digest", served.digest.as_str())?;
    if method == Method::Get {
        // Counted in the isolate and sent after the answer (index::pulls).
        index::count_pull(ctx, env, &owner, name.repository());
    }
    Ok(resp)
}

/// `DELETE /v2/<name>/manifests/<reference>`: `202 Accepted` once the
/// records are gone.
pub async fn delete_manifest(
    env: &Env,
    config: &AppConfig,
    user: &Did,
    name: &RepoName,
    reference: Reference,
) -> Result<Response> {
    match delete::delete(env, config, user, name, &reference).await {
        Ok(()) => Ok(Response::empty()?.with_status(202)),
        Err(refusal) => refuse(refusal),
    }
}
