//! OAuth sessions in D1 (`oauth_sessions`, one per user): the tokens and
//! the DPoP key sealed with the appview's secret key (AES-256-GCM), next to
//! what is not secret (issuer, PDS, the PDS's last DPoP nonce, when the
//! access token expires) and the `generation` a refresh compares and swaps.

use crate::config::{AppConfig, DB_BINDING};
use atcr_protocol::oauth::flow::TokenSet;
use atcr_protocol::secret_box;
use atcr_protocol::Did;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Date, Env, Result};

/// What is sealed: the tokens and the key they are bound to.
#[derive(Serialize, Deserialize)]
pub struct Secrets {
    pub tokens: TokenSet,
    /// `DpopKey::to_secret`.
    pub dpop_key: String,
}

/// One row, opened.
pub struct StoredSession {
    pub did: Did,
    pub issuer: String,
    pub pds: String,
    pub generation: i64,
    pub dpop_nonce: Option<String>,
    /// When the access token expires (unix ms).
    pub expires_at: f64,
    pub secrets: Secrets,
}

#[derive(Deserialize)]
struct Row {
    issuer: String,
    pds_endpoint: String,
    session_ciphertext: String,
    generation: i64,
    dpop_nonce: Option<String>,
    expires_at: f64,
}

fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

fn internal(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// The access token's expiry as D1 keeps it (unix ms); far ahead when the
/// server did not say.
fn expires_ms(tokens: &TokenSet) -> f64 {
    tokens
        .expires_at
        .map(|s| (s * 1000) as f64)
        .unwrap_or(now_ms() + 3_600_000.0)
}

fn seal(config: &AppConfig, secrets: &Secrets) -> Result<String> {
    let mut nonce = [0u8; secret_box::NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|e| internal(format!("no randomness: {e}")))?;
    Ok(B64.encode(secret_box::seal(
        &config.secret_key,
        nonce,
        &serde_json::to_vec(secrets)?,
    )))
}

/// Stores a new sign-in's session, replacing any earlier one of the user.
pub async fn save_new(
    env: &Env,
    config: &AppConfig,
    pds: &str,
    secrets: &Secrets,
    nonce: Option<&str>,
) -> Result<()> {
    let sealed = seal(config, secrets)?;
    let t = &secrets.tokens;
    env.d1(DB_BINDING)?
        .prepare(
            "INSERT INTO oauth_sessions (did, issuer, pds_endpoint, session_ciphertext, generation,
               refreshing_until, dpop_nonce, expires_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 0, NULL, ?5, ?6, ?7)
             ON CONFLICT (did) DO UPDATE SET issuer = excluded.issuer,
               pds_endpoint = excluded.pds_endpoint, session_ciphertext = excluded.session_ciphertext,
               generation = oauth_sessions.generation + 1, refreshing_until = NULL,
               dpop_nonce = excluded.dpop_nonce, expires_at = excluded.expires_at,
               updated_at = excluded.updated_at",
        )
        .bind(&[
            t.did.as_str().into(),
            t.issuer.as_str().into(),
            pds.into(),
            sealed.into(),
            nonce.map(JsValue::from).unwrap_or(JsValue::NULL),
            expires_ms(t).into(),
            now_ms().into(),
        ])?
        .run()
        .await?;
    Ok(())
}

/// The session of `did`, opened; `None` when there is none.
pub async fn load(env: &Env, config: &AppConfig, did: &Did) -> Result<Option<StoredSession>> {
    let row: Option<Row> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT issuer, pds_endpoint, session_ciphertext, generation, dpop_nonce, expires_at
             FROM oauth_sessions WHERE did = ?1",
        )
        .bind(&[did.as_str().into()])?
        .first(None)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed = B64.decode(&row.session_ciphertext).map_err(internal)?;
    let plaintext = secret_box::open(&config.secret_key, &sealed).map_err(internal)?;
    Ok(Some(StoredSession {
        did: did.clone(),
        issuer: row.issuer,
        pds: row.pds_endpoint,
        generation: row.generation,
        dpop_nonce: row.dpop_nonce,
        expires_at: row.expires_at,
        secrets: serde_json::from_slice(&plaintext)?,
    }))
}

async fn changed(statement: worker::D1PreparedStatement) -> Result<bool> {
    let result = statement.run().await?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0) > 0)
}

/// Claims the refresh of `generation` for `lease_ms`: true for exactly one
/// of several concurrent callers (and for none while another's lease runs).
pub async fn claim_refresh(env: &Env, did: &Did, generation: i64, lease_ms: f64) -> Result<bool> {
    let now = now_ms();
    changed(
        env.d1(DB_BINDING)?
            .prepare(
                "UPDATE oauth_sessions SET refreshing_until = ?3
                 WHERE did = ?1 AND generation = ?2
                   AND (refreshing_until IS NULL OR refreshing_until < ?4)",
            )
            .bind(&[
                did.as_str().into(),
                (generation as f64).into(),
                (now + lease_ms).into(),
                now.into(),
            ])?,
    )
    .await
}

/// Stores refreshed tokens over `generation` (the claimed one) and
/// releases the claim; false if the row moved on meanwhile.
pub async fn commit_refresh(
    env: &Env,
    config: &AppConfig,
    did: &Did,
    generation: i64,
    secrets: &Secrets,
) -> Result<bool> {
    let sealed = seal(config, secrets)?;
    changed(
        env.d1(DB_BINDING)?
            .prepare(
                "UPDATE oauth_sessions SET session_ciphertext = ?3, generation = generation + 1,
                   refreshing_until = NULL, expires_at = ?4, updated_at = ?5
                 WHERE did = ?1 AND generation = ?2",
            )
            .bind(&[
                did.as_str().into(),
                (generation as f64).into(),
                sealed.into(),
                expires_ms(&secrets.tokens).into(),
                now_ms().into(),
            ])?,
    )
    .await
}

/// Gives up a claim without new tokens (the server could not be reached).
pub async fn release_refresh(env: &Env, did: &Did, generation: i64) -> Result<()> {
    changed(
        env.d1(DB_BINDING)?
            .prepare(
                "UPDATE oauth_sessions SET refreshing_until = NULL
                 WHERE did = ?1 AND generation = ?2",
            )
            .bind(&[did.as_str().into(), (generation as f64).into()])?,
    )
    .await
    .map(|_| ())
}

/// Remembers the PDS's newest DPoP nonce for the next isolate.
pub async fn save_nonce(env: &Env, did: &Did, nonce: &str) -> Result<()> {
    env.d1(DB_BINDING)?
        .prepare("UPDATE oauth_sessions SET dpop_nonce = ?2 WHERE did = ?1")
        .bind(&[did.as_str().into(), nonce.into()])?
        .run()
        .await
        .map(|_| ())
}

/// Deletes the session of `did`: only `generation` when given (a session
/// found dead must not take a newer sign-in with it).
pub async fn delete(env: &Env, did: &Did, generation: Option<i64>) -> Result<()> {
    let db = env.d1(DB_BINDING)?;
    let statement = match generation {
        Some(g) => db
            .prepare("DELETE FROM oauth_sessions WHERE did = ?1 AND generation = ?2")
            .bind(&[did.as_str().into(), (g as f64).into()])?,
        None => db
            .prepare("DELETE FROM oauth_sessions WHERE did = ?1")
            .bind(&[did.as_str().into()])?,
    };
    statement.run().await.map(|_| ())
}
