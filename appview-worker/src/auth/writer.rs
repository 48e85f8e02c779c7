//! Writing to a user's PDS as them, with the session the appview holds for
//! them: their OAuth session (DPoP-bound tokens) when they signed in with
//! ATProto OAuth, else the app-password session of `sessions` (CI's `docker
//! login`), refreshed once when the PDS says it expired.

use crate::atproto::pds::{call, finish, refresh_session, Body, PdsTokens};
use crate::auth::oauth::session::{OAuthSession, SessionError};
use crate::auth::sessions;
use crate::config::AppConfig;
use atcr_protocol::{Did, OciCode, Refusal};
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

/// The session a writer writes with.
enum Session {
    OAuth(Box<OAuthSession>),
    AppPassword(PdsTokens),
}

pub struct PdsWriter<'a> {
    env: &'a Env,
    config: &'a AppConfig,
    did: Did,
    pub pds: String,
    session: Session,
}

fn internal(message: String) -> Refusal {
    (OciCode::Internal, message)
}

impl<'a> PdsWriter<'a> {
    /// `None` when the appview holds no session for `did` (they must sign in).
    pub async fn for_user(
        env: &'a Env,
        config: &'a AppConfig,
        did: &Did,
    ) -> worker::Result<Option<PdsWriter<'a>>> {
        let writer = |pds: String, session| PdsWriter {
            env,
            config,
            did: did.clone(),
            pds,
            session,
        };
        // Both kinds are read at once: one D1 round trip, not two, before a write.
        let (oauth, app_password) = futures_util::join!(
            OAuthSession::load(env, config, did),
            sessions::load(env, config, did)
        );
        match oauth {
            Ok(Some(oauth)) => {
                let pds = oauth.pds().to_string();
                return Ok(Some(writer(pds, Session::OAuth(Box::new(oauth)))));
            }
            Ok(None) => {}
            Err(e) => return Err(worker::Error::RustError(e.to_string())),
        }
        Ok(app_password?.map(|(pds, tokens)| writer(pds, Session::AppPassword(tokens))))
    }

    /// The user written as.
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// POSTs to an XRPC procedure; returns the JSON answer, or a refusal
    /// with the PDS's words (`DENIED` when the user must sign in again).
    /// Every procedure the appview calls is idempotent (`putRecord` with a
    /// key, `deleteRecord`, `uploadBlob`), so a PDS fault is retried: the
    /// reference PDS answers 500 when writes to one repository collide.
    pub async fn post(&mut self, nsid: &str, body: Body<'_>) -> Result<serde_json::Value, Refusal> {
        let mut attempt = 0;
        loop {
            let (status, answer) = self.send(nsid, &body).await?;
            if status >= 500 && attempt < FAULT_RETRIES {
                attempt += 1;
                worker::Delay::from(retry_delay(attempt)).await;
                continue;
            }
            return finish(nsid, status, answer).map_err(internal);
        }
    }

    async fn send(
        &mut self,
        nsid: &str,
        body: &Body<'_>,
    ) -> Result<(u16, serde_json::Value), Refusal> {
        match &mut self.session {
            Session::OAuth(oauth) => {
                let (content_type, bytes) = match body {
                    Body::Json(v) => ("application/json", v.to_string().into_bytes()),
                    Body::Bytes(bytes, mime) => (*mime, bytes.to_vec()),
                };
                oauth
                    .post(self.env, self.config, nsid, content_type, &bytes)
                    .await
                    .map_err(|e| match e {
                        SessionError::Ended(m) => (OciCode::Denied, m),
                        SessionError::Failed(m) => internal(m),
                    })
            }
            Session::AppPassword(tokens) => {
                let (status, answer) = call(&self.pds, &tokens.access_jwt, nsid, body)
                    .await
                    .map_err(internal)?;
                let expired = status == 401 || (status == 400 && answer["error"] == "ExpiredToken");
                if !expired {
                    return Ok((status, answer));
                }
                *tokens = refresh_session(&self.pds, &tokens.refresh_jwt)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| {
                        (
                            OciCode::Denied,
                            format!("the PDS session of {} has ended: log in again", self.did),
                        )
                    })?;
                sessions::replace_tokens(self.env, self.config, &self.did, tokens)
                    .await
                    .map_err(|e| internal(e.to_string()))?;
                call(&self.pds, &tokens.access_jwt, nsid, body)
                    .await
                    .map_err(internal)
            }
        }
    }
}
