//! `/settings`: what a signed-in user keeps in their own PDS about ATCR,
//! changed through the session the appview holds for them (their OAuth
//! session). Signed out, every path here leads to `/login`.
//!
//! | path | what it writes |
//! |---|---|
//! | `GET /settings` | the page (`?repository=` picks the description to edit) |
//! | `POST /settings/hold` | the default hold: `io.atcr.sailor.profile` `defaultHold`, once the hold answers healthy |
//! | `POST /settings/holds` | a hold the user runs: `io.atcr.hold`, once its `did:web` document, health and owner check out |
//! | `POST /settings/crew`, `/settings/crew/remove` | crew of the user's holds: `io.atcr.hold.crew` |
//! | `POST /settings/description` | a repository's description (Markdown, previewed first if asked): `io.atcr.repo.page` |
//! | `POST /settings/app-password` | forgets the app-password session `docker login` opened |
//!
//! Every form carries a CSRF token made from the browser's session cookie
//! and is refused when the browser says another site sent it. The index
//! follows each profile, hold and crew record written or deleted here at
//! once, as it does the registry's manifests and tags.

use super::repository::description_changed;
use super::sign_in::{page_response, see_other, sign_in_again, signed_in_form, viewer, Viewer};
use super::views::{CrewMember, DescriptionEditor, RegisteredHold, SettingsPage};
use super::{format::when, render};
use crate::atproto::pds::{get_record, record_key, Body};
use crate::atproto::resolve::resolve_user;
use crate::auth::sessions;
use crate::auth::writer::PdsWriter;
use crate::config::AppConfig;
use crate::holds::{check_hold, hold_chosen};
use crate::index::{self, Author};
use atcr_protocol::markdown::to_safe_html;
use atcr_protocol::record_keys::{record_key_for, repo_page_record_key};
use atcr_protocol::{collections, Did, OciCode};
use serde_json::{json, Value};
use worker::{Env, Request, Response, Result};
use worker_support::{list_records_page, now_rfc3339, query_param};

/// The purpose the settings forms' CSRF token is made for.
const SETTINGS_FORM: &str = "settings";
const LOGIN: &str = "/login?return_to=%2Fsettings";
/// Descriptions longer than this are refused (a record holds ~140 KB).
const MAX_DESCRIPTION: usize = 64 * 1024;

/// What a form led to.
enum Outcome {
    /// Written: back to the page, which says so under `#<section>`.
    Saved(&'static str),
    /// The description as it would look, not saved.
    Preview { repository: String, text: String },
}

/// Why a form was not acted on, as the page says it.
struct Failure {
    status: u16,
    message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

/// `GET /settings`.
pub async fn page(req: &Request, env: &Env, config: &AppConfig) -> Result<Response> {
    let viewer = viewer(req, env).await;
    let Some(user) = signed_in(&viewer, config)? else {
        return see_other(LOGIN);
    };
    let saved = query_param(req, "saved");
    let repository = query_param(req, "repository");
    let page = settings_page(env, config, &user, repository, saved, None, None).await?;
    page_response(page, &viewer, config)
}

/// `POST /settings/<action>`.
pub async fn submit(
    req: &mut Request,
    env: &Env,
    config: &AppConfig,
    action: &str,
) -> Result<Response> {
    let back = |_: &[(String, String)]| "/settings".to_string();
    let form = match signed_in_form(req, env, config, SETTINGS_FORM, back).await? {
        Ok(form) => form,
        Err(refusal) => return Ok(refusal),
    };
    let viewer = &form.viewer;
    let Some(user) = signed_in(viewer, config)? else {
        return see_other(LOGIN);
    };
    let Some(mut writer) = PdsWriter::for_user(env, config, &user.did).await? else {
        return sign_in_again(viewer, config, "/settings");
    };
    let get = |name: &str| form.field(name).trim().to_string();
    let outcome = match action {
        "hold" => default_hold(env, config, &user, &mut writer, &get("hold")).await,
        "holds" => {
            let public = !get("public").is_empty();
            register_hold(env, config, &user, &mut writer, &get("hold"), public).await
        }
        "crew" => add_crew(env, config, &user, &mut writer, &get("member")).await,
        "crew/remove" => remove_crew(env, &mut writer, &get("member")).await,
        "description" => {
            description(
                env,
                &user,
                &mut writer,
                &get("repository"),
                &form.field("description"),
                &get("do"),
            )
            .await
        }
        "app-password" => sessions::forget_app_password(env, &user.did)
            .await
            .map(|_| Outcome::Saved("sign-ins"))
            .map_err(|e| refuse(500, e.to_string())),
        _ => Err(refuse(
            404,
            format!("There is no setting called “{action}”."),
        )),
    };
    let page = match outcome {
        Ok(Outcome::Saved(section)) => {
            return see_other(&format!("/settings?saved={section}#{section}"))
        }
        Ok(Outcome::Preview { repository, text }) => {
            settings_page(env, config, &user, Some(repository), None, None, Some(text)).await?
        }
        Err(Failure { status: 401, .. }) => return sign_in_again(viewer, config, "/settings"),
        Err(Failure { status, message }) => {
            let (_, html) =
                settings_page(env, config, &user, None, None, Some(message), None).await?;
            (status, html)
        }
    };
    page_response(page, viewer, config)
}

/// The signed-in user, with the token their forms carry.
struct User {
    did: Did,
    handle: String,
    csrf: String,
}

fn signed_in(viewer: &Viewer, config: &AppConfig) -> Result<Option<User>> {
    let Some(session) = viewer.user() else {
        return Ok(None);
    };
    let csrf = viewer.csrf(config, SETTINGS_FORM);
    let did = session
        .did
        .parse()
        .map_err(|e| worker::Error::RustError(format!("{e}")))?;
    Ok(Some(User {
        did,
        handle: session.handle.clone(),
        csrf,
    }))
}

/// A write the PDS refused: `DENIED` means the session ended (401).
fn pds_failure((code, message): (OciCode, String)) -> Failure {
    match code {
        OciCode::Denied => refuse(401, message),
        _ => refuse(
            502,
            format!("Your PDS did not take the change: {message}. Nothing was changed."),
        ),
    }
}

async fn put_record(
    writer: &mut PdsWriter<'_>,
    collection: &str,
    rkey: &str,
    record: Value,
) -> std::result::Result<Value, Failure> {
    let body =
        json!({ "repo": writer.did(), "collection": collection, "rkey": rkey, "record": record });
    writer
        .post("com.atproto.repo.putRecord", Body::Json(body))
        .await
        .map_err(pds_failure)
}

async fn delete_record(
    writer: &mut PdsWriter<'_>,
    collection: &str,
    rkey: &str,
) -> std::result::Result<(), Failure> {
    let body = json!({ "repo": writer.did(), "collection": collection, "rkey": rkey });
    writer
        .post("com.atproto.repo.deleteRecord", Body::Json(body))
        .await
        .map(|_| ())
        .map_err(pds_failure)
}

/// The index follows a profile, hold or crew record just written to the
/// user's PDS; it is a cache, so a failure is logged, not shown.
async fn index_written(
    env: &Env,
    user: &User,
    writer: &PdsWriter<'_>,
    collection: &str,
    rkey: &str,
    record: &Value,
) {
    let author = Author {
        did: &user.did,
        handle: Some(&user.handle),
        pds: &writer.pds,
    };
    if let Err(e) = index::record_written(env, &author, collection, rkey, record).await {
        worker::console_error!("indexing {collection} {rkey} of {} failed: {e}", user.did);
    }
}

/// A hold typed as its DID or its URL.
fn hold_did(typed: &str) -> std::result::Result<Did, Failure> {
    let parsed = if typed.starts_with("did:") {
        typed.parse().ok()
    } else {
        Did::web_for_url(typed).ok()
    };
    parsed
        .filter(|did: &Did| did.method() == "web")
        .ok_or_else(|| {
            refuse(
                400,
                format!("“{typed}” is neither a hold's did:web nor its URL."),
            )
        })
}

async fn default_hold(
    env: &Env,
    config: &AppConfig,
    user: &User,
    writer: &mut PdsWriter<'_>,
    typed: &str,
) -> std::result::Result<Outcome, Failure> {
    let hold = hold_did(typed)?;
    check_hold(&hold, config)
        .await
        .map_err(|e| refuse(400, format!("{hold} cannot be your hold: {e}")))?;
    let pds = writer.pds.clone();
    let current = get_record(&pds, writer.did(), collections::PROFILE, "self")
        .await
        .map_err(|e| refuse(502, e))?;
    let now = now_rfc3339();
    let created = current
        .as_ref()
        .and_then(|r| r["value"]["createdAt"].as_str())
        .unwrap_or(&now)
        .to_string();
    let record = json!({ "$type": collections::PROFILE, "defaultHold": hold, "createdAt": created, "updatedAt": now });
    put_record(writer, collections::PROFILE, "self", record.clone()).await?;
    hold_chosen(writer.did(), &hold);
    index_written(env, user, writer, collections::PROFILE, "self", &record).await;
    Ok(Outcome::Saved("hold"))
}

async fn register_hold(
    env: &Env,
    config: &AppConfig,
    user: &User,
    writer: &mut PdsWriter<'_>,
    typed: &str,
    public: bool,
) -> std::result::Result<Outcome, Failure> {
    let hold = hold_did(typed)?;
    let facts = check_hold(&hold, config)
        .await
        .map_err(|e| refuse(400, format!("{hold} cannot be registered: {e}")))?;
    if facts.owner.as_ref() != Some(writer.did()) {
        let owner = facts
            .owner
            .map_or("nobody it names".to_string(), |d| d.to_string());
        return Err(refuse(
            403,
            format!("{hold} is run by {owner}, not by you: only a hold's owner registers it."),
        ));
    }
    let record = json!({ "$type": collections::HOLD, "endpoint": facts.endpoint, "owner": writer.did(), "public": public, "createdAt": now_rfc3339() });
    let rkey = record_key_for(hold.as_str());
    put_record(writer, collections::HOLD, &rkey, record.clone()).await?;
    index_written(env, user, writer, collections::HOLD, &rkey, &record).await;
    Ok(Outcome::Saved("holds"))
}

async fn add_crew(
    env: &Env,
    config: &AppConfig,
    user: &User,
    writer: &mut PdsWriter<'_>,
    typed: &str,
) -> std::result::Result<Outcome, Failure> {
    let member = resolve_user(typed, config)
        .await
        .map_err(|e| refuse(400, format!("Cannot add “{typed}”: {e}")))?
        .did;
    let record = json!({ "$type": collections::HOLD_CREW, "member": member, "role": "crew", "addedAt": now_rfc3339() });
    let rkey = record_key_for(member.as_str());
    put_record(writer, collections::HOLD_CREW, &rkey, record.clone()).await?;
    index_written(env, user, writer, collections::HOLD_CREW, &rkey, &record).await;
    Ok(Outcome::Saved("crew"))
}

/// Deletes every crew record naming `member`, whatever key its writer chose.
async fn remove_crew(
    env: &Env,
    writer: &mut PdsWriter<'_>,
    member: &str,
) -> std::result::Result<Outcome, Failure> {
    let pds = writer.pds.clone();
    let did = writer.did().clone();
    let records = all_records(&pds, &did, collections::HOLD_CREW)
        .await
        .map_err(|e| refuse(502, e))?;
    for record in records
        .iter()
        .filter(|r| r["value"]["member"].as_str() == Some(member))
    {
        let uri = record["uri"].as_str().unwrap_or_default();
        delete_record(writer, collections::HOLD_CREW, record_key(uri)).await?;
        if let Err(e) = index::crew_record_deleted(env, &did, uri).await {
            worker::console_error!("forgetting crew record {uri} failed: {e}");
        }
    }
    Ok(Outcome::Saved("crew"))
}

async fn description(
    env: &Env,
    user: &User,
    writer: &mut PdsWriter<'_>,
    repository: &str,
    text: &str,
    what: &str,
) -> std::result::Result<Outcome, Failure> {
    let Some(repo) = index::repository_of(env, user.did.as_str(), repository)
        .await
        .map_err(|e| refuse(500, e.to_string()))?
    else {
        return Err(refuse(
            404,
            format!("You have no repository called “{repository}”."),
        ));
    };
    if text.len() > MAX_DESCRIPTION {
        return Err(refuse(
            413,
            format!(
                "A description may be {MAX_DESCRIPTION} bytes; this one is {}.",
                text.len()
            ),
        ));
    }
    // Browsers send a textarea's lines ending in CRLF; Markdown wants LF.
    let text = text.replace("\r\n", "\n");
    let text = text.as_str();
    if what == "preview" {
        return Ok(Outcome::Preview {
            repository: repo.name,
            text: text.to_string(),
        });
    }
    let now = now_rfc3339();
    let record = json!({ "$type": collections::REPO_PAGE, "repository": repo.name, "description": text, "createdAt": now, "updatedAt": now });
    put_record(
        writer,
        collections::REPO_PAGE,
        &repo_page_record_key(&repo.name),
        record,
    )
    .await?;
    description_changed(&repo.owner_did, &repo.name);
    // The record is written; search catches up with it here.
    if let Err(e) = index::description_changed(env, &user.did, &repo.name, Some(text)).await {
        worker::console_error!(
            "indexing the description of {}/{} failed: {e}",
            user.did,
            repo.name
        );
    }
    Ok(Outcome::Saved("description"))
}

/// Every record of `collection` in `did`'s repository (a user's holds and
/// crew: a few, never many).
async fn all_records(
    pds: &str,
    did: &Did,
    collection: &str,
) -> std::result::Result<Vec<Value>, String> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let (records, next) = list_records_page(pds, did, collection, cursor.as_deref()).await?;
        all.extend(records);
        match next {
            Some(next) if all.len() < 1_000 => cursor = Some(next),
            _ => return Ok(all),
        }
    }
}

/// The page, read from the user's PDS and the index: `repository` picks
/// the description being edited (`draft` is its text being previewed).
async fn settings_page(
    env: &Env,
    config: &AppConfig,
    user: &User,
    repository: Option<String>,
    saved: Option<String>,
    error: Option<String>,
    draft: Option<String>,
) -> super::Page {
    let identity = resolve_user(user.did.as_str(), config)
        .await
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let pds = identity.pds.as_str();
    let (profile, holds, crew, repos, app_password) = futures_util::join!(
        get_record(pds, &user.did, collections::PROFILE, "self"),
        all_records(pds, &user.did, collections::HOLD),
        all_records(pds, &user.did, collections::HOLD_CREW),
        index::user_repositories(env, &user.handle),
        sessions::app_password_since(env, &user.did)
    );
    let failed = |e: String| worker::Error::RustError(e);
    let default_hold = profile
        .map_err(failed)?
        .and_then(|r| r["value"]["defaultHold"].as_str().map(str::to_string));
    let repos: Vec<String> = repos?.into_iter().map(|r| r.name).collect();
    let editing = repository
        .filter(|r| repos.contains(r))
        .or_else(|| repos.first().cloned());
    let editor = match editing {
        Some(name) => {
            let text = match draft.clone() {
                Some(text) => text,
                None => get_record(
                    pds,
                    &user.did,
                    collections::REPO_PAGE,
                    &repo_page_record_key(&name),
                )
                .await
                .map_err(failed)?
                .and_then(|r| r["value"]["description"].as_str().map(str::to_string))
                .unwrap_or_default(),
            };
            Some(DescriptionEditor {
                preview: draft.as_deref().map(to_safe_html),
                repository: name,
                text,
            })
        }
        None => None,
    };
    render(&SettingsPage {
        query: String::new(),
        csrf: user.csrf.clone(),
        handle: user.handle.clone(),
        appview_hold: config.default_hold.to_string(),
        default_hold,
        holds: holds
            .map_err(failed)?
            .iter()
            .map(|r| RegisteredHold {
                endpoint: r["value"]["endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                public: r["value"]["public"].as_bool().unwrap_or(false),
            })
            .collect(),
        crew: crew
            .map_err(failed)?
            .iter()
            .filter_map(|r| {
                Some(CrewMember {
                    member: r["value"]["member"].as_str()?.to_string(),
                    permissions: r["value"]["permissions"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default(),
                })
            })
            .collect(),
        repos,
        editor,
        app_password_since: app_password?.map(when),
        saved,
        error,
    })
}
