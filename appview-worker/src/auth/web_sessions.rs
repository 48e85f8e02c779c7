//! Browsers signed in to the web pages (`web_sessions` in D1): a random
//! cookie value whose SHA-256 keys the row. A web session stands only while
//! its user's OAuth session does: signing out, or a PDS that ended the
//! OAuth session, signs every browser of the user out.

use crate::config::DB_BINDING;
use atcr_protocol::web_session::{
    id_hash, is_well_formed, new_cookie_value, SESSION_LIFETIME_SECS,
};
use atcr_protocol::Did;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Date, Env, Result};

/// Who a cookie signs in, as the page header shows them.
#[derive(Debug, Clone, Deserialize)]
pub struct WebSession {
    pub did: String,
    pub handle: String,
    pub avatar_url: Option<String>,
    /// 1 while the user's OAuth session exists.
    live: i64,
}

impl WebSession {
    /// Whether the appview still holds the user's OAuth session.
    pub fn is_live(&self) -> bool {
        self.live == 1
    }
}

fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

/// Starts a web session for `did`; returns the cookie value.
pub async fn create(
    env: &Env,
    did: &Did,
    handle: &str,
    avatar_url: Option<&str>,
) -> Result<String> {
    let mut random = [0u8; 32];
    getrandom::getrandom(&mut random)
        .map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))?;
    let value = new_cookie_value(random);
    let now = now_ms();
    let db = env.d1(DB_BINDING)?;
    // The user's expired sessions go as a new one comes.
    db.prepare("DELETE FROM web_sessions WHERE did = ?1 AND expires_at <= ?2")
        .bind(&[did.as_str().into(), now.into()])?
        .run()
        .await?;
    db.prepare(
        "INSERT INTO web_sessions (id_hash, did, handle, avatar_url, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(&[
        id_hash(&value).into(),
        did.as_str().into(),
        handle.into(),
        avatar_url.map(JsValue::from).unwrap_or(JsValue::NULL),
        now.into(),
        (now + (SESSION_LIFETIME_SECS * 1000) as f64).into(),
    ])?
    .run()
    .await?;
    Ok(value)
}

/// The unexpired session a cookie value names, if any.
pub async fn find(env: &Env, cookie_value: &str) -> Result<Option<WebSession>> {
    if !is_well_formed(cookie_value) {
        return Ok(None);
    }
    env.d1(DB_BINDING)?
        .prepare(
            "SELECT w.did, w.handle, w.avatar_url,
                    (SELECT COUNT(*) FROM oauth_sessions o WHERE o.did = w.did) AS live
             FROM web_sessions w WHERE w.id_hash = ?1 AND w.expires_at > ?2",
        )
        .bind(&[id_hash(cookie_value).into(), now_ms().into()])?
        .first(None)
        .await
}

/// Ends every web session of `did`.
pub async fn delete_all_of(env: &Env, did: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("DELETE FROM web_sessions WHERE did = ?1")
        .bind(&[did.into()])?
        .run()
        .await
        .map(|_| ())
}
