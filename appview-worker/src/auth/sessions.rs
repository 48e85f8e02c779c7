//! PDS sessions the appview holds for users, encrypted at rest in D1.
//!
//! An app-password login creates a session on the user's PDS; its tokens are
//! sealed with the appview's secret key before they touch D1. The login's
//! password is kept only as an HMAC, to recognise the same login again.

use crate::atproto::pds::PdsTokens;
use crate::config::{AppConfig, DB_BINDING};
use atcr_protocol::secret_box;
use atcr_protocol::Did;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use worker::{Date, Env};

/// App-password sessions are refreshed long before their refresh token ends.
const SESSION_LIFETIME_MS: u64 = 60 * 24 * 3600 * 1000;

/// HMAC of a user's credential under the appview's key.
pub fn credential_mac(config: &AppConfig, did: &Did, password: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&config.secret_key).expect("any key length");
    mac.update(did.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(password.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a live session exists that this exact credential created.
pub async fn has_session_for(env: &Env, did: &Did, mac: &str) -> worker::Result<bool> {
    let db = env.d1(DB_BINDING)?;
    let row: Option<serde_json::Value> = db
        .prepare("SELECT 1 AS ok FROM pds_sessions WHERE did = ?1 AND credential_mac = ?2 AND expires_at > ?3")
        .bind(&[did.as_str().into(), mac.into(), (Date::now().as_millis() as f64).into()])?
        .first(None)
        .await?;
    Ok(row.is_some())
}

pub async fn store(
    env: &Env,
    config: &AppConfig,
    did: &Did,
    pds: &str,
    tokens: &PdsTokens,
    mac: &str,
) -> worker::Result<()> {
    let sealed = seal_tokens(config, tokens)?;
    let now = Date::now().as_millis();
    env.d1(DB_BINDING)?
        .prepare(
            "INSERT INTO pds_sessions (did, kind, pds_endpoint, tokens_ciphertext, credential_mac, expires_at, updated_at)
             VALUES (?1, 'app_password', ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (did) DO UPDATE SET kind = excluded.kind, pds_endpoint = excluded.pds_endpoint,
               tokens_ciphertext = excluded.tokens_ciphertext, credential_mac = excluded.credential_mac,
               expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(&[
            did.as_str().into(),
            pds.into(),
            sealed.into(),
            mac.into(),
            ((now + SESSION_LIFETIME_MS) as f64).into(),
            (now as f64).into(),
        ])?
        .run()
        .await?;
    Ok(())
}

/// The stored session of `did`, decrypted: (PDS endpoint, tokens).
pub async fn load(
    env: &Env,
    config: &AppConfig,
    did: &Did,
) -> worker::Result<Option<(String, PdsTokens)>> {
    let row: Option<serde_json::Value> = env
        .d1(DB_BINDING)?
        .prepare("SELECT pds_endpoint, tokens_ciphertext FROM pds_sessions WHERE did = ?1 AND expires_at > ?2")
        .bind(&[did.as_str().into(), (Date::now().as_millis() as f64).into()])?
        .first(None)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed = B64
        .decode(row["tokens_ciphertext"].as_str().unwrap_or_default())
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let plaintext = secret_box::open(&config.secret_key, &sealed)
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let tokens: PdsTokens = serde_json::from_slice(&plaintext)?;
    Ok(Some((
        row["pds_endpoint"].as_str().unwrap_or_default().to_string(),
        tokens,
    )))
}

/// Replaces the tokens of an existing session (after a refresh).
pub async fn replace_tokens(
    env: &Env,
    config: &AppConfig,
    did: &Did,
    tokens: &PdsTokens,
) -> worker::Result<()> {
    let sealed = seal_tokens(config, tokens)?;
    env.d1(DB_BINDING)?
        .prepare("UPDATE pds_sessions SET tokens_ciphertext = ?2, updated_at = ?3 WHERE did = ?1")
        .bind(&[
            did.as_str().into(),
            sealed.into(),
            (Date::now().as_millis() as f64).into(),
        ])?
        .run()
        .await?;
    Ok(())
}

/// Tokens encrypted under the appview's secret key, base64 for D1.
fn seal_tokens(config: &AppConfig, tokens: &PdsTokens) -> worker::Result<String> {
    let mut nonce = [0u8; secret_box::NONCE_LEN];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))?;
    Ok(B64.encode(secret_box::seal(
        &config.secret_key,
        nonce,
        &serde_json::to_vec(tokens)?,
    )))
}

/// When the app-password session the appview holds for `did` was opened
/// or last refreshed (unix ms), if it holds one.
pub async fn app_password_since(env: &Env, did: &Did) -> worker::Result<Option<f64>> {
    env.d1(DB_BINDING)?
        .prepare("SELECT updated_at FROM pds_sessions WHERE did = ?1 AND kind = 'app_password'")
        .bind(&[did.as_str().into()])?
        .first(Some("updated_at"))
        .await
}

/// Forgets the app-password session of `did`: `docker login` must sign in
/// to the PDS again, and refresh tokens issued on it stop working.
pub async fn forget_app_password(env: &Env, did: &Did) -> worker::Result<()> {
    env.d1(DB_BINDING)?
        .prepare("DELETE FROM pds_sessions WHERE did = ?1 AND kind = 'app_password'")
        .bind(&[did.as_str().into()])?
        .run()
        .await?;
    Ok(())
}
