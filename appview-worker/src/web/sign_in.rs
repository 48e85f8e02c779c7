//! Signing in and out of the web pages with ATProto OAuth, and who is
//! looking at a page.
//!
//! | path | what |
//! |---|---|
//! | `GET /login` | the form: a handle or DID |
//! | `POST /login` | resolves it and sends the browser to the user's authorization server |
//! | `GET /oauth/callback` | back from it: the OAuth session is stored, the browser gets a session cookie |
//! | `POST /logout` | revokes the OAuth session and signs every browser of the user out |
//!
//! Both forms carry a CSRF token made from the browser's cookie and are
//! refused when the browser says they come from another site.

use super::views::{Account, AccountUser, Login, Notice};
use super::{render, Page};
use crate::auth::limiter;
use crate::auth::oauth::session::OAuthSession;
use crate::auth::oauth::sign_in::{self, SignInError};
use crate::auth::web_sessions::{self, WebSession};
use crate::config::{AppConfig, SIGN_IN_LIMIT_PERIOD_SECS};
use atcr_protocol::reference::Owner;
use atcr_protocol::web_session::{
    clear_cookie, cookie, csrf_ok, csrf_token, id_hash, is_well_formed, new_cookie_value,
    safe_return_path, same_origin_post, set_cookie, SESSION_COOKIE, SESSION_LIFETIME_SECS,
    SIGN_IN_COOKIE, SIGN_IN_LIFETIME_SECS,
};
use worker::{Context, Env, Request, Response, Result};
use worker_support::query_param;

const SIGN_IN_FORM: &str = "sign-in";
const SIGN_OUT_FORM: &str = "sign-out";
/// Where the account corner goes in `base.html`.
const ACCOUNT_MARK: &str = "<!--account-->";

/// Who is looking at a page.
pub struct Viewer {
    /// The session cookie's value and what it names.
    session: Option<(String, WebSession)>,
    /// The browser's cookie names no live session: it is cleared.
    stale: bool,
}

impl Viewer {
    pub fn signed_in(&self) -> bool {
        self.session.is_some()
    }

    /// Who is signed in.
    pub fn user(&self) -> Option<&WebSession> {
        self.session.as_ref().map(|(_, s)| s)
    }

    /// The CSRF token of `purpose`'s form for this browser's session.
    pub fn csrf(&self, config: &AppConfig, purpose: &str) -> String {
        self.session
            .as_ref()
            .map(|(value, _)| csrf_token(&config.secret_key, purpose, value))
            .unwrap_or_default()
    }

    /// Whether `token` is the CSRF token of `purpose`'s form for this session.
    pub fn csrf_ok(&self, config: &AppConfig, purpose: &str, token: &str) -> bool {
        self.session
            .as_ref()
            .is_some_and(|(value, _)| csrf_ok(&config.secret_key, purpose, value, token))
    }
}

/// The CSRF token of `form` for the browser that sent `req` (empty without
/// a session cookie): pages put it in their forms without knowing yet who
/// is looking; the form's handler checks the session.
pub fn form_csrf(req: &Request, config: &AppConfig, form: &str) -> String {
    request_cookie(req, SESSION_COOKIE)
        .map(|value| csrf_token(&config.secret_key, form, &value))
        .unwrap_or_default()
}

/// The SHA-256 (hex) of the browser's session cookie, which keys its
/// `web_sessions` row: for queries that join what the viewer did.
pub fn session_hash(req: &Request) -> Option<String> {
    request_cookie(req, SESSION_COOKIE).map(|value| id_hash(&value))
}

fn request_cookie(req: &Request, name: &str) -> Option<String> {
    let header = req.headers().get("Cookie").ok().flatten()?;
    cookie(&header, name).map(str::to_string)
}

/// Whether cookies get `Secure`: everywhere but plain http on loopback.
fn secure(config: &AppConfig) -> bool {
    config.public_url.starts_with("https://")
}

/// The viewer of `req`. A cookie naming no session, an expired one, or one
/// whose OAuth session has ended counts as signed out (and is cleared).
pub async fn viewer(req: &Request, env: &Env) -> Viewer {
    let Some(value) = request_cookie(req, SESSION_COOKIE) else {
        return Viewer {
            session: None,
            stale: false,
        };
    };
    match web_sessions::find(env, &value).await {
        Ok(Some(session)) if session.is_live() => Viewer {
            session: Some((value, session)),
            stale: false,
        },
        Ok(_) => Viewer {
            session: None,
            stale: true,
        },
        Err(e) => {
            worker::console_error!("web session lookup failed: {e}");
            Viewer {
                session: None,
                stale: false,
            }
        }
    }
}

/// `html` with the viewer's account corner in the header.
fn with_account(html: &str, viewer: &Viewer, config: &AppConfig) -> Result<String> {
    let user = viewer.session.as_ref().map(|(value, s)| AccountUser {
        handle: s.handle.clone(),
        avatar: s.avatar_url.clone(),
        csrf: csrf_token(&config.secret_key, SIGN_OUT_FORM, value),
    });
    let (_, account) = render(&Account {
        user,
        ended: viewer.stale,
    })?;
    Ok(html.replacen(ACCOUNT_MARK, &account, 1))
}

/// The response of a page: its status, its HTML with the account corner,
/// never cached when someone is signed in, a stale cookie cleared.
pub fn page_response(
    (status, html): (u16, String),
    viewer: &Viewer,
    config: &AppConfig,
) -> Result<Response> {
    let mut resp = Response::from_html(with_account(&html, viewer, config)?)?.with_status(status);
    if viewer.signed_in() {
        resp.headers_mut()
            .set("Cache-Control", "private, no-store")?;
    }
    if viewer.stale {
        resp.headers_mut()
            .append("Set-Cookie", &clear_cookie(SESSION_COOKIE, secure(config)))?;
    }
    Ok(resp)
}

/// A page that tells the viewer what happened, with `status`.
pub(super) fn notice(
    viewer: &Viewer,
    config: &AppConfig,
    status: u16,
    title: &str,
    message: String,
    link: Option<(&str, &str)>,
) -> Result<Response> {
    let (_, html) = render(&Notice {
        query: String::new(),
        title: title.into(),
        message,
        link: link.map(|(href, text)| (href.to_string(), text.to_string())),
    })?;
    page_response((status, html), viewer, config)
}

/// `303 See Other` to `location`.
pub(super) fn see_other(location: &str) -> Result<Response> {
    let mut resp = Response::empty()?.with_status(303);
    resp.headers_mut().set("Location", location)?;
    resp.headers_mut().set("Cache-Control", "no-store")?;
    Ok(resp)
}

fn login_form(
    config: &AppConfig,
    sign_in_cookie: &str,
    handle: String,
    return_to: String,
    error: Option<String>,
) -> Page {
    render(&Login {
        query: String::new(),
        csrf: csrf_token(&config.secret_key, SIGN_IN_FORM, sign_in_cookie),
        handle,
        return_to,
        error,
    })
}

/// The browser's sign-in cookie, or a new one (to be set with the answer).
fn sign_in_cookie(req: &Request) -> Result<(String, bool)> {
    if let Some(value) = request_cookie(req, SIGN_IN_COOKIE).filter(|v| is_well_formed(v)) {
        return Ok((value, false));
    }
    let mut random = [0u8; 32];
    getrandom::getrandom(&mut random)
        .map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))?;
    Ok((new_cookie_value(random), true))
}

/// `GET /login`: the sign-in form (or home, for someone signed in).
pub async fn login_page(req: &Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let viewer = viewer(req, env).await;
    let return_to = safe_return_path(query_param(req, "return_to").as_deref());
    if viewer.signed_in() {
        return see_other(&return_to);
    }
    let (value, new) = sign_in_cookie(req)?;
    let page = login_form(config, &value, String::new(), return_to, None)?;
    let mut resp = page_response(page, &viewer, config)?;
    if new {
        resp.headers_mut().append(
            "Set-Cookie",
            &set_cookie(
                SIGN_IN_COOKIE,
                &value,
                SIGN_IN_LIFETIME_SECS,
                secure(config),
            ),
        )?;
    }
    Ok(resp)
}

pub(super) fn form_fields(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

pub(super) fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Refuses a form POST another site made the browser send.
pub(super) fn cross_site(req: &Request, config: &AppConfig) -> bool {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let public = url::Url::parse(&config.public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    !same_origin_post(
        &public,
        header("Origin").as_deref(),
        header("Sec-Fetch-Site").as_deref(),
    )
}

pub(super) fn cross_site_refusal(viewer: &Viewer, config: &AppConfig) -> Result<Response> {
    notice(
        viewer,
        config,
        403,
        "Refused",
        "This form was sent from another site, so it was not acted on.".into(),
        Some(("/", "Go to the home page")),
    )
}

/// The answer to a form whose user's PDS session has ended (nothing was
/// written): sign in again, then back to `back`.
pub fn sign_in_again(viewer: &Viewer, config: &AppConfig, back: &str) -> Result<Response> {
    let encoded: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    let login = format!("/login?return_to={encoded}");
    let message =
        "Your sign-in with your PDS has ended, so nothing was written to it. Sign in again.";
    notice(
        viewer,
        config,
        401,
        "Sign in again",
        message.into(),
        Some((&login, "Sign in")),
    )
}

/// A form a signed-in browser sent from this site, carrying the CSRF token
/// of its purpose: what the pages' form handlers start from.
pub struct SignedInForm {
    pub viewer: Viewer,
    fields: Vec<(String, String)>,
}

impl SignedInForm {
    /// Who sent it.
    pub fn user(&self) -> &WebSession {
        self.viewer.user().expect("a signed-in form has a user")
    }

    /// The value of the field `name` (empty when absent).
    pub fn field(&self, name: &str) -> String {
        field(&self.fields, name)
    }
}

/// Reads a form POST made for `purpose`, or answers it: a form another site
/// sent, or one without this session's CSRF token, gets a 403 page with a
/// link to `back` (worked out from the fields); a signed-out browser is
/// sent to sign in and come back there. Either way nothing is acted on.
pub async fn signed_in_form(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    purpose: &str,
    back: impl FnOnce(&[(String, String)]) -> String,
) -> Result<std::result::Result<SignedInForm, Response>> {
    let viewer = viewer(req, env).await;
    if cross_site(req, config) {
        return cross_site_refusal(&viewer, config).map(Err);
    }
    let fields = form_fields(&req.text().await?);
    let back = back(&fields);
    if !viewer.signed_in() {
        let encoded: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        return see_other(&format!("/login?return_to={encoded}")).map(Err);
    }
    if !viewer.csrf_ok(config, purpose, &field(&fields, "csrf")) {
        let message = "This form was not made for this browser's session, so it was not acted on.";
        return notice(
            &viewer,
            config,
            403,
            "Refused",
            message.into(),
            Some((&back, "Go back")),
        )
        .map(Err);
    }
    Ok(Ok(SignedInForm { viewer, fields }))
}

/// `POST /login`: starts the sign-in at the user's authorization server.
pub async fn login_submit(req: &mut Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let viewer = viewer(req, env).await;
    if cross_site(req, config) {
        return cross_site_refusal(&viewer, config);
    }
    let fields = form_fields(&req.text().await?);
    let handle = field(&fields, "handle");
    let return_to = safe_return_path(Some(&field(&fields, "return_to")));
    let cookie = request_cookie(req, SIGN_IN_COOKIE).filter(|v| is_well_formed(v));
    let Some(cookie) =
        cookie.filter(|c| csrf_ok(&config.secret_key, SIGN_IN_FORM, c, &field(&fields, "csrf")))
    else {
        return notice(
            &viewer,
            config,
            400,
            "Sign-in expired",
            "This sign-in form is too old or was not made for this browser.".into(),
            Some(("/login", "Start again")),
        );
    };
    // Each sign-in costs the user's PDS work: only so many per source.
    if !limiter::allowed(env, format!("oauth {}", limiter::source_address(req))).await {
        let page = login_form(
            config,
            &cookie,
            handle,
            return_to,
            Some(format!(
                "Too many sign-ins from your address: wait {SIGN_IN_LIMIT_PERIOD_SECS} seconds."
            )),
        )?;
        let mut resp = page_response((429, page.1), &viewer, config)?;
        resp.headers_mut()
            .set("Retry-After", &SIGN_IN_LIMIT_PERIOD_SECS.to_string())?;
        return Ok(resp);
    }
    match sign_in::start(config, &handle, &cookie, return_to.clone()).await {
        Ok(location) => see_other(&location),
        Err(e) => {
            if matches!(e, SignInError::Internal(_) | SignInError::Unavailable(_)) {
                worker::console_error!("sign-in of {handle} failed: {}", e.message());
            }
            let page = login_form(config, &cookie, handle, return_to, Some(e.message().into()))?;
            page_response((e.status(), page.1), &viewer, config)
        }
    }
}

/// `GET /oauth/callback`: the authorization server sends the browser back.
pub async fn callback(
    req: &Request,
    env: &Env,
    ctx: &Context,
    config: &AppConfig,
) -> Result<Response> {
    let viewer = viewer(req, env).await;
    let query = req.url()?.query().unwrap_or_default().to_string();
    let cookie = request_cookie(req, SIGN_IN_COOKIE);
    let signed_in = match sign_in::finish(env, config, &query, cookie.as_deref()).await {
        Ok(signed_in) => signed_in,
        Err(e) => {
            if matches!(e, SignInError::Internal(_) | SignInError::Unavailable(_)) {
                worker::console_error!("sign-in callback failed: {}", e.message());
            }
            return notice(
                &viewer,
                config,
                e.status(),
                "Sign-in failed",
                e.message().into(),
                Some(("/login", "Sign in again")),
            );
        }
    };
    // A user seen for the first time: their records are read into the
    // index after this answer.
    ctx.wait_until(crate::backfill::first_sight(
        env.clone(),
        Owner::Did(signed_in.did.clone()),
    ));
    let value = web_sessions::create(
        env,
        &signed_in.did,
        &signed_in.handle,
        signed_in.avatar_url.as_deref(),
    )
    .await?;
    let mut resp = see_other(&safe_return_path(Some(&signed_in.return_to)))?;
    let headers = resp.headers_mut();
    headers.append(
        "Set-Cookie",
        &set_cookie(
            SESSION_COOKIE,
            &value,
            SESSION_LIFETIME_SECS,
            secure(config),
        ),
    )?;
    headers.append("Set-Cookie", &clear_cookie(SIGN_IN_COOKIE, secure(config)))?;
    Ok(resp)
}

/// `POST /logout`: revokes the user's OAuth session at their authorization
/// server, forgets it and signs every browser of the user out.
pub async fn sign_out(req: &mut Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let viewer = viewer(req, env).await;
    if cross_site(req, config) {
        return cross_site_refusal(&viewer, config);
    }
    let fields = form_fields(&req.text().await?);
    let Some((value, session)) = &viewer.session else {
        return notice(
            &viewer,
            config,
            401,
            "Not signed in",
            "This browser is not signed in (or its sign-in has ended), so there is nothing to sign out of.".into(),
            Some(("/login", "Sign in")),
        );
    };
    if !csrf_ok(
        &config.secret_key,
        SIGN_OUT_FORM,
        value,
        &field(&fields, "csrf"),
    ) {
        return notice(
            &viewer,
            config,
            403,
            "Refused",
            "This sign-out form was not made for this browser's session, so it was not acted on."
                .into(),
            Some(("/", "Go to the home page")),
        );
    }
    let did = session
        .did
        .parse()
        .map_err(|e| worker::Error::RustError(format!("{e}")))?;
    match OAuthSession::load(env, config, &did).await {
        Ok(Some(oauth)) => {
            if let Err(e) = oauth.revoke(env, config).await {
                // The session is forgotten here all the same.
                worker::console_error!("revoking the OAuth session of {did} failed: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => return Err(worker::Error::RustError(e.to_string())),
    }
    web_sessions::delete_all_of(env, &session.did).await?;
    let mut resp = see_other("/")?;
    resp.headers_mut()
        .append("Set-Cookie", &clear_cookie(SESSION_COOKIE, secure(config)))?;
    Ok(resp)
}
