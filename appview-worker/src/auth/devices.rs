//! Devices signed in with the credential helper, and the device logins in
//! progress, in D1 (`devices`, `device_codes`). Codes and secrets are kept
//! only as their SHA-256; what a poll answers is `atcr_protocol::device`'s
//! decision, and each state change is one conditional `UPDATE`, so a code
//! is decided once and gives one secret however many requests race.

use crate::config::DB_BINDING;
use atcr_protocol::device::{self, CodeState, PollOutcome, StoredCode};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{D1PreparedStatement, Date, Env, Result};

/// Expired codes are kept this long, so a late poll hears `expired_token`.
const KEEP_EXPIRED_MS: f64 = 3_600_000.0;

fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))?;
    Ok(bytes)
}

async fn changed(statement: D1PreparedStatement) -> Result<bool> {
    let result = statement.run().await?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0) > 0)
}

fn text(value: Option<&str>) -> JsValue {
    value.map(JsValue::from).unwrap_or(JsValue::NULL)
}

/// A login the helper started: what it shows and polls with.
pub struct Started {
    pub device_code: String,
    pub user_code: String,
}

/// Starts a device login that the user may approve for `lifetime_secs`.
pub async fn start(env: &Env, client_name: &str, lifetime_secs: u64) -> Result<Started> {
    let db = env.d1(DB_BINDING)?;
    let now = now_ms();
    db.prepare("DELETE FROM device_codes WHERE expires_at < ?1")
        .bind(&[(now - KEEP_EXPIRED_MS).into()])?
        .run()
        .await?;
    let device_code = device::device_code(random()?);
    let user_code = device::user_code(random()?);
    db.prepare(
        "INSERT INTO device_codes (code_hash, user_code, client_name, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&[
        device::hash(&device_code).into(),
        user_code.as_str().into(),
        client_name.into(),
        now.into(),
        (now + (lifetime_secs * 1000) as f64).into(),
    ])?
    .run()
    .await?;
    Ok(Started {
        device_code,
        user_code,
    })
}

#[derive(Deserialize)]
struct CodeRow {
    state: String,
    expires_at: f64,
    last_polled_at: Option<f64>,
    did: Option<String>,
    handle: Option<String>,
    device_name: Option<String>,
    client_name: String,
}

impl CodeRow {
    fn stored(&self) -> StoredCode {
        StoredCode {
            state: CodeState::parse(&self.state).unwrap_or(CodeState::Spent),
            expires_at: self.expires_at as u64,
            last_polled_at: self.last_polled_at.map(|t| t as u64),
        }
    }
}

/// A device secret just handed out, with whom and what it names.
#[derive(Serialize)]
pub struct Issued {
    pub device_secret: String,
    pub did: String,
    pub handle: String,
    pub device_id: String,
    pub device_name: String,
}

/// What the helper's poll with `device_code` gets: a secret once the user
/// approved, else the refusal RFC 8628 names.
pub async fn poll(
    env: &Env,
    device_code: &str,
) -> Result<std::result::Result<Issued, PollOutcome>> {
    let db = env.d1(DB_BINDING)?;
    let hash = device::hash(device_code);
    let row: Option<CodeRow> = db
        .prepare(
            "SELECT state, expires_at, last_polled_at, did, handle, device_name, client_name
             FROM device_codes WHERE code_hash = ?1",
        )
        .bind(&[hash.as_str().into()])?
        .first(None)
        .await?;
    let now = now_ms();
    let outcome = device::poll(
        row.as_ref().map(CodeRow::stored).as_ref(),
        now as u64,
        device::POLL_INTERVAL_SECS,
    );
    let Some(row) = row else {
        return Ok(Err(outcome));
    };
    match outcome {
        PollOutcome::Pending | PollOutcome::SlowDown => {
            db.prepare("UPDATE device_codes SET last_polled_at = ?2 WHERE code_hash = ?1")
                .bind(&[hash.as_str().into(), now.into()])?
                .run()
                .await?;
            Ok(Err(outcome))
        }
        PollOutcome::Issue => {
            // Only the request that moves the row from approved to spent
            // hands out a secret.
            let spent = changed(
                db.prepare(
                    "UPDATE device_codes SET state = 'spent', last_polled_at = ?2
                     WHERE code_hash = ?1 AND state = 'approved'",
                )
                .bind(&[hash.as_str().into(), now.into()])?,
            )
            .await?;
            if !spent {
                return Ok(Err(PollOutcome::InvalidGrant));
            }
            let did = row.did.unwrap_or_default();
            let device_name = row.device_name.unwrap_or(row.client_name);
            let device_secret = device::device_secret(random()?);
            let device_id = hex(&random::<12>()?);
            db.prepare(
                "INSERT INTO devices (id, did, name, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&[
                device_id.as_str().into(),
                did.as_str().into(),
                device_name.as_str().into(),
                device::hash(&device_secret).into(),
                now.into(),
            ])?
            .run()
            .await?;
            Ok(Ok(Issued {
                device_secret,
                did,
                handle: row.handle.unwrap_or_default(),
                device_id,
                device_name,
            }))
        }
        refusal => Ok(Err(refusal)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pending, unexpired login by its user code: the name its helper proposed.
pub async fn pending_name(env: &Env, user_code: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Name {
        client_name: String,
    }
    let row: Option<Name> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT client_name FROM device_codes
             WHERE user_code = ?1 AND state = 'pending' AND expires_at > ?2",
        )
        .bind(&[user_code.into(), now_ms().into()])?
        .first(None)
        .await?;
    Ok(row.map(|r| r.client_name))
}

/// Why a user code could not be approved or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecideError {
    Unknown,
    Expired,
    Decided,
}

impl DecideError {
    pub fn message(self) -> &'static str {
        match self {
            DecideError::Unknown => {
                "No device login has this code. Check the code your terminal shows."
            }
            DecideError::Expired => {
                "This code has expired. Run docker-credential-atcr login again for a new one."
            }
            DecideError::Decided => "This code was approved or denied already.",
        }
    }
}

/// The signed-in user approves (`Some(device name)`) or denies (`None`)
/// the pending login of `user_code`.
pub async fn decide(
    env: &Env,
    user_code: &str,
    did: &str,
    handle: &str,
    approve: Option<&str>,
) -> Result<std::result::Result<(), DecideError>> {
    let db = env.d1(DB_BINDING)?;
    let now = now_ms();
    let state = if approve.is_some() {
        "approved"
    } else {
        "denied"
    };
    let done = changed(
        db.prepare(
            "UPDATE device_codes SET state = ?2, did = ?3, handle = ?4, device_name = ?5
             WHERE user_code = ?1 AND state = 'pending' AND expires_at > ?6",
        )
        .bind(&[
            user_code.into(),
            state.into(),
            did.into(),
            handle.into(),
            text(approve),
            now.into(),
        ])?,
    )
    .await?;
    if done {
        return Ok(Ok(()));
    }
    let row: Option<CodeRow> = db
        .prepare(
            "SELECT state, expires_at, last_polled_at, did, handle, device_name, client_name
             FROM device_codes WHERE user_code = ?1",
        )
        .bind(&[user_code.into()])?
        .first(None)
        .await?;
    Ok(Err(match row {
        None => DecideError::Unknown,
        Some(row) if row.state != "pending" => DecideError::Decided,
        Some(_) => DecideError::Expired,
    }))
}

/// One device, as the devices page lists it (times in unix ms).
#[derive(Deserialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub created_at: f64,
    pub last_used_at: Option<f64>,
}

/// The devices of `did`, newest first.
pub async fn list(env: &Env, did: &str) -> Result<Vec<Device>> {
    env.d1(DB_BINDING)?
        .prepare(
            "SELECT id, name, created_at, last_used_at FROM devices
             WHERE did = ?1 ORDER BY created_at DESC",
        )
        .bind(&[did.into()])?
        .all()
        .await?
        .results()
}

/// Forgets a device of `did`: its secret and every refresh token made
/// from it stop working at once (nothing caches them).
pub async fn revoke(env: &Env, did: &str, id: &str) -> Result<bool> {
    changed(
        env.d1(DB_BINDING)?
            .prepare("DELETE FROM devices WHERE id = ?1 AND did = ?2")
            .bind(&[id.into(), did.into()])?,
    )
    .await
}

/// Forgets the device a secret names (the helper's `logout`).
pub async fn revoke_secret(env: &Env, secret: &str) -> Result<bool> {
    changed(
        env.d1(DB_BINDING)?
            .prepare("DELETE FROM devices WHERE secret_hash = ?1")
            .bind(&[device::hash(secret).into()])?,
    )
    .await
}

/// The device a secret names, as `(device id, DID)`, marked as used now:
/// one round trip.
pub async fn use_secret(env: &Env, secret: &str) -> Result<Option<(String, String)>> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        did: String,
    }
    let row: Option<Row> = env
        .d1(DB_BINDING)?
        .prepare("UPDATE devices SET last_used_at = ?2 WHERE secret_hash = ?1 RETURNING id, did")
        .bind(&[device::hash(secret).into(), now_ms().into()])?
        .first(None)
        .await?;
    Ok(row.map(|r| (r.id, r.did)))
}

/// Whether device `id` of `did` still exists (a refresh token made from
/// its secret is good only while it does).
pub async fn exists(env: &Env, did: &str, id: &str) -> Result<bool> {
    let row: Option<serde_json::Value> = env
        .d1(DB_BINDING)?
        .prepare("SELECT 1 AS ok FROM devices WHERE id = ?1 AND did = ?2")
        .bind(&[id.into(), did.into()])?
        .first(None)
        .await?;
    Ok(row.is_some())
}
