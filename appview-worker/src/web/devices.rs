//! The credential helper's devices, as their user sees them:
//!
//! | path | what |
//! |---|---|
//! | `GET /device?user_code=` | the approval form: the code, a name for the device, Approve and Deny |
//! | `POST /device` | approves or denies the pending login of that code |
//! | `GET /settings/devices` | the user's devices: name, signed in, last used, Revoke |
//! | `POST /settings/devices/revoke` | forgets one device; its secret stops working at once |
//!
//! Signed-out visitors are sent to `/login` and back. Both forms carry a
//! CSRF token made from the session cookie and are refused when the browser
//! says they come from another site, like `POST /logout`.

use super::format::when;
use super::render;
use super::sign_in::{field, notice, page_response, see_other, signed_in_form, viewer, Viewer};
use super::views::{DeviceItem, DevicePage, DevicesPage};
use crate::auth::devices;
use crate::config::AppConfig;
use atcr_protocol::device::{device_name, normalize_user_code};
use worker::{Env, Request, Response, Result};
use worker_support::query_param;

const APPROVE_FORM: &str = "device-approve";
const REVOKE_FORM: &str = "device-revoke";

/// `303` to `/login`, coming back to `return_to`.
fn to_login(return_to: &str) -> Result<Response> {
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    see_other(&format!("/login?return_to={encoded}"))
}

fn approval_form(
    viewer: &Viewer,
    config: &AppConfig,
    status: u16,
    user_code: String,
    device_name: String,
    error: Option<String>,
) -> Result<Response> {
    let (_, html) = render(&DevicePage {
        query: String::new(),
        csrf: viewer.csrf(config, APPROVE_FORM),
        handle: viewer.user().map(|u| u.handle.clone()).unwrap_or_default(),
        user_code,
        device_name,
        error,
    })?;
    page_response((status, html), viewer, config)
}

/// `GET /device`: the approval form, the code filled in from the link.
pub async fn approval_page(req: &Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let viewer = viewer(req, env).await;
    let typed = query_param(req, "user_code").unwrap_or_default();
    if !viewer.signed_in() {
        let back = match normalize_user_code(&typed) {
            Some(code) => format!("/device?user_code={code}"),
            None => "/device".into(),
        };
        return to_login(&back);
    }
    let Some(code) = normalize_user_code(&typed) else {
        let error = (!typed.is_empty()).then(|| format!("{typed:?} is not a device code."));
        return approval_form(&viewer, config, 200, typed, String::new(), error);
    };
    match devices::pending_name(env, &code).await? {
        Some(name) => approval_form(&viewer, config, 200, code, name, None),
        None => {
            let error = "No device login is waiting for this code: it may have expired or been used already.";
            approval_form(
                &viewer,
                config,
                404,
                code,
                String::new(),
                Some(error.into()),
            )
        }
    }
}

/// `POST /device`: approves or denies the login of the code sent.
pub async fn decide(req: &mut Request, env: &Env, config: &AppConfig) -> Result<Response> {
    // A signed-out browser signs in and comes back to the code it sent.
    let back = |fields: &[(String, String)]| {
        let code: String =
            url::form_urlencoded::byte_serialize(field(fields, "user_code").as_bytes()).collect();
        format!("/device?user_code={code}")
    };
    let form = match signed_in_form(req, env, config, APPROVE_FORM, back).await? {
        Ok(form) => form,
        Err(refusal) => return Ok(refusal),
    };
    let (viewer, user) = (&form.viewer, form.user());
    let typed = form.field("user_code");
    let name = device_name(Some(&form.field("device_name")), "docker-credential-atcr");
    let Some(code) = normalize_user_code(&typed) else {
        let error = format!("{typed:?} is not a device code.");
        return approval_form(viewer, config, 400, typed, name, Some(error));
    };
    let approve = form.field("action") == "approve";
    let decided = devices::decide(
        env,
        &code,
        &user.did,
        &user.handle,
        approve.then_some(name.as_str()),
    )
    .await?;
    if let Err(e) = decided {
        return approval_form(viewer, config, 400, code, name, Some(e.message().into()));
    }
    let (title, message) = if approve {
        (
            "Device approved",
            format!(
                "{name} is signed in as {}: go back to your terminal.",
                user.handle
            ),
        )
    } else {
        (
            "Device denied",
            "The device was refused; its login ends without access.".to_string(),
        )
    };
    notice(
        viewer,
        config,
        200,
        title,
        message,
        Some(("/settings/devices", "Your devices")),
    )
}

/// `GET /settings/devices`.
pub async fn list_page(req: &Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let viewer = viewer(req, env).await;
    let Some(user) = viewer.user() else {
        return to_login("/settings/devices");
    };
    let items = devices::list(env, &user.did)
        .await?
        .into_iter()
        .map(|d| DeviceItem {
            id: d.id,
            name: d.name,
            created: when(d.created_at),
            last_used: d.last_used_at.map(when).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let (_, html) = render(&DevicesPage {
        query: String::new(),
        csrf: viewer.csrf(config, REVOKE_FORM),
        handle: user.handle.clone(),
        devices: items,
    })?;
    page_response((200, html), &viewer, config)
}

/// `POST /settings/devices/revoke`.
pub async fn revoke(req: &mut Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let back = |_: &[(String, String)]| "/settings/devices".to_string();
    let form = match signed_in_form(req, env, config, REVOKE_FORM, back).await? {
        Ok(form) => form,
        Err(refusal) => return Ok(refusal),
    };
    let (viewer, user) = (&form.viewer, form.user());
    if devices::revoke(env, &user.did, &form.field("id")).await? {
        see_other("/settings/devices")
    } else {
        notice(
            viewer,
            config,
            404,
            "No such device",
            "You have no device by that id: it may have been revoked already.".into(),
            Some(("/settings/devices", "Your devices")),
        )
    }
}
