//! The OCI Distribution API under `/v2/`: the route table, the access check,
//! then one handler module per endpoint family.
//!
//! Imports run one way: this router → the handler modules → the clients
//! (`holds`, `atproto`, `auth::writer`, `index`) → `worker-support` and
//! `atcr-protocol`. Handlers answer through `crate::oci_error`, never through
//! this module.

mod access;
mod blobs;
mod catalog;
pub mod hold_access;
mod manifests;
mod owner;
mod referrers;
mod tags;
mod uploads;

use crate::config::AppConfig;
use crate::oci_error::{error, internal, refuse, API_VERSION_HEADER};
use access::{authorize, signed_in};
use atcr_protocol::route::{Route, RouteError};
use atcr_protocol::{Did, OciCode};
use worker::{Context, Env, Method, Request, Response, Result};

/// Every answer under `/v2/` is an OCI one: a failure a handler did not
/// turn into a refusal (a D1 or runtime error) becomes a 500 `INTERNAL`
/// envelope naming it, never the runtime's bare text.
pub async fn handle(
    req: Request,
    path: &str,
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
) -> Result<Response> {
    match dispatch(req, path, env, ctx, config).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            worker::console_error!("registry request failed: {e}");
            refuse(internal(e))
        }
    }
}

async fn dispatch(
    mut req: Request,
    path: &str,
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
) -> Result<Response> {
    let route = match Route::parse(path) {
        Ok(route) => route,
        Err(RouteError::NotFound) => {
            return error(
                OciCode::NameUnknown,
                Some(format!("no registry endpoint at {path}")),
            )
        }
        Err(RouteError::NameInvalid(m)) => return error(OciCode::NameInvalid, Some(m)),
        Err(RouteError::DigestInvalid(m)) => return error(OciCode::DigestInvalid, Some(m)),
        Err(RouteError::ReferenceInvalid(m)) => return error(OciCode::ManifestInvalid, Some(m)),
    };
    let claims = match authorize(&req, config, &route).await {
        Ok(claims) => claims,
        Err(refused) => return refused,
    };
    let method = req.method();
    // The owner of a repository read: if the index has never read their
    // records, they are queued, after this answer.
    if matches!(method, Method::Get | Method::Head) {
        if let Some(name) = route.name().filter(|n| !crate::backfill::seen(n.owner())) {
            ctx.wait_until(crate::backfill::first_sight(
                env.clone(),
                name.owner().clone(),
            ));
        }
    }
    match route {
        // "If the response is 200 OK, then the registry implements this specification."
        Route::Base => {
            let mut resp = Response::ok("{}")?;
            resp.headers_mut().set("Content-Type", "application/json")?;
            resp.headers_mut()
                .set(API_VERSION_HEADER.0, API_VERSION_HEADER.1)?;
            Ok(resp)
        }
        Route::Blob { name, digest } if matches!(method, Method::Get | Method::Head) => {
            let user = claims.sub.parse::<Did>().ok();
            blobs::get_blob(&req, env, config, user.as_ref(), &name, &digest).await
        }
        Route::Blob { name, digest } if method == Method::Delete => {
            match signed_in(&claims, "delete") {
                Ok(user) => blobs::delete_blob(env, config, &user, &name, &digest).await,
                Err(refused) => refused,
            }
        }
        Route::Manifest { name, reference } => match method {
            Method::Get | Method::Head => {
                manifests::get_manifest(env, ctx, config, method, &name, reference).await
            }
            Method::Put => match signed_in(&claims, "push") {
                Ok(user) => {
                    manifests::put_manifest(&mut req, env, config, &user, &name, reference).await
                }
                Err(refused) => refused,
            },
            Method::Delete => match signed_in(&claims, "delete") {
                Ok(user) => manifests::delete_manifest(env, config, &user, &name, reference).await,
                Err(refused) => refused,
            },
            _ => error(
                OciCode::Unsupported,
                Some(format!("{method} on manifests is not supported")),
            ),
        },
        Route::Referrers { name, digest } => {
            referrers::list_referrers(&req, env, config, &name, &digest).await
        }
        Route::Tags { name } => tags::list_tags(&req, env, config, &name).await,
        Route::Catalog if method == Method::Get => catalog::list(&req, env).await,
        // Push was granted, so the token names its user.
        Route::UploadStart { name } => match signed_in(&claims, "push") {
            Ok(user) => uploads::handle(&mut req, env, config, &user, &name, None).await,
            Err(refused) => refused,
        },
        Route::Upload { name, id } => match signed_in(&claims, "push") {
            Ok(user) => uploads::handle(&mut req, env, config, &user, &name, Some(&id)).await,
            Err(refused) => refused,
        },
        _ => error(
            OciCode::Unsupported,
            Some(format!("{method} {path} is not served by this registry")),
        ),
    }
}
