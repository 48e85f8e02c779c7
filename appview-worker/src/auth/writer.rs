//! Writing to a user's PDS as them, with the session the appview holds for
//! them (today the app-password session in `sessions`), refreshed once when
//! the PDS says it expired.

use crate::atproto::pds::{call, finish, refresh_session, Body, PdsTokens};
use crate::auth::sessions;
use crate::config::AppConfig;
use atcr_protocol::Did;
use worker::Env;

/// How often a PDS fault (5xx) is retried, waiting a little longer each time.
const FAULT_RETRIES: u32 = 4;

/// 50, 100, 200, 400 ms, plus up to half again at random so colliding
/// writers spread out.
fn retry_delay(attempt: u32) -> std::time::Duration {
    let base = 50u64 << (attempt - 1);
    let mut noise = [0u8; 1];
    getrandom::getrandom(&mut noise).unwrap_or_default();
    std::time::Duration::from_millis(base + base * u64::from(noise[0]) / 512)
}

pub struct PdsWriter<'a> {
    env: &'a Env,
    config: &'a AppConfig,
    did: Did,
    pub pds: String,
    tokens: PdsTokens,
}

impl<'a> PdsWriter<'a> {
    /// `None` when the appview holds no session for `did` (they must log in).
    pub async fn for_user(
        env: &'a Env,
        config: &'a AppConfig,
        did: &Did,
    ) -> worker::Result<Option<PdsWriter<'a>>> {
        Ok(sessions::load(env, config, did)
            .await?
            .map(|(pds, tokens)| PdsWriter {
                env,
                config,
                did: did.clone(),
                pds,
                tokens,
            }))
    }

    /// The user written as.
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// POSTs to an XRPC procedure; returns the JSON answer or the PDS's words.
    /// Every procedure the appview calls is idempotent (`putRecord` with a
    /// key, `deleteRecord`, `uploadBlob`), so a PDS fault is retried: the
    /// reference PDS answers 500 when writes to one repository collide.
    pub async fn post(&mut self, nsid: &str, body: Body<'_>) -> Result<serde_json::Value, String> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let (status, answer) = call(&self.pds, &self.tokens.access_jwt, nsid, &body).await?;
            let expired = status == 401 || (status == 400 && answer["error"] == "ExpiredToken");
            if expired && !refreshed {
                self.refresh().await?;
                refreshed = true;
                continue;
            }
            if status >= 500 && attempt < FAULT_RETRIES {
                attempt += 1;
                worker::Delay::from(retry_delay(attempt)).await;
                continue;
            }
            return finish(nsid, status, answer);
        }
    }

    async fn refresh(&mut self) -> Result<(), String> {
        self.tokens = refresh_session(&self.pds, &self.tokens.refresh_jwt)
            .await?
            .ok_or_else(|| format!("the PDS session of {} has ended: log in again", self.did))?;
        sessions::replace_tokens(self.env, self.config, &self.did, &self.tokens)
            .await
            .map_err(|e| e.to_string())
    }
}
