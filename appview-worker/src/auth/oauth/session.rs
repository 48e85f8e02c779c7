//! A user's OAuth session at work: XRPC calls to their PDS with
//! `Authorization: DPoP <access token>` and a proof (with `ath`) per
//! request, and the refresh of its tokens.
//!
//! A refresh token is single use, and several requests of one user may find
//! the access token expired at once. Only the one that claims the row in D1
//! for the generation it read spends the refresh token; the others wait for
//! the next generation and use its tokens (`store::claim_refresh`).

use super::client::OAuthClient;
use super::http::{self, DpopRequest};
use super::server;
use super::store::{self, Secrets, StoredSession};
use crate::atproto::resolve::resolve_user;
use crate::config::AppConfig;
use atcr_protocol::oauth::dpop::DpopKey;
use atcr_protocol::oauth::flow::{
    grant_ended, refresh_request_body, revocation_body, TokenExpectations, TokenResponse,
};
use atcr_protocol::Did;
use worker::{Env, Method};

/// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS: f64 = 60_000.0;
/// How long a claimed refresh holds the row; longer than any token request.
const REFRESH_LEASE_MS: f64 = 20_000.0;
/// How long a request waits for another's refresh: 40 × 250 ms.
const REFRESH_WAITS: u32 = 40;

#[derive(Debug)]
pub enum SessionError {
    /// The session is gone for good (revoked, expired, the user moved):
    /// they must sign in again.
    Ended(String),
    /// Anything else (the PDS or D1 unreachable); trying later may work.
    Failed(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Ended(m) | SessionError::Failed(m) => f.write_str(m),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> SessionError {
    SessionError::Failed(e.to_string())
}

pub struct OAuthSession {
    stored: StoredSession,
    key: DpopKey,
}

impl OAuthSession {
    /// The OAuth session the appview holds for `did`, if any.
    pub async fn load(
        env: &Env,
        config: &AppConfig,
        did: &Did,
    ) -> Result<Option<OAuthSession>, SessionError> {
        let Some(stored) = store::load(env, config, did).await.map_err(failed)? else {
            return Ok(None);
        };
        Self::from_stored(stored).map(Some)
    }

    fn from_stored(stored: StoredSession) -> Result<OAuthSession, SessionError> {
        let key = DpopKey::from_secret(&stored.secrets.dpop_key).map_err(failed)?;
        if let Some(nonce) = &stored.dpop_nonce {
            http::seed_nonce(&stored.pds, nonce);
        }
        Ok(OAuthSession { stored, key })
    }

    pub fn pds(&self) -> &str {
        &self.stored.pds
    }

    /// POSTs to an XRPC procedure of the user's PDS; returns the status and
    /// the JSON answer. Refreshes the tokens first when they are about to
    /// expire, and once more when the PDS calls them invalid.
    pub async fn post(
        &mut self,
        env: &Env,
        config: &AppConfig,
        nsid: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, serde_json::Value), SessionError> {
        let now = worker::Date::now().as_millis() as f64;
        if self.stored.expires_at - REFRESH_MARGIN_MS <= now {
            self.refresh(env, config).await?;
        }
        let url = format!("{}/xrpc/{nsid}", self.stored.pds);
        let mut refreshed = false;
        loop {
            let answer = http::send(
                &self.key,
                &DpopRequest {
                    method: Method::Post,
                    url: &url,
                    body: Some((content_type, body)),
                    access_token: Some(&self.stored.secrets.tokens.access_token),
                },
            )
            .await
            .map_err(SessionError::Failed)?;
            self.keep_nonce(env, answer.nonce.as_deref()).await;
            if answer.status == 401 && !refreshed {
                self.refresh(env, config).await?;
                refreshed = true;
                continue;
            }
            return Ok((answer.status, answer.json()));
        }
    }

    /// Saves a new PDS nonce for the isolates to come.
    async fn keep_nonce(&mut self, env: &Env, nonce: Option<&str>) {
        if let Some(nonce) = nonce {
            if self.stored.dpop_nonce.as_deref() != Some(nonce) {
                self.stored.dpop_nonce = Some(nonce.to_string());
                if let Err(e) = store::save_nonce(env, &self.stored.did, nonce).await {
                    worker::console_warn!("could not keep a DPoP nonce: {e}");
                }
            }
        }
    }

    /// New tokens, spent once however many requests want them.
    async fn refresh(&mut self, env: &Env, config: &AppConfig) -> Result<(), SessionError> {
        let did = self.stored.did.clone();
        let read = self.stored.generation;
        for _ in 0..REFRESH_WAITS {
            if store::claim_refresh(env, &did, read, REFRESH_LEASE_MS)
                .await
                .map_err(failed)?
            {
                return self.refresh_claimed(env, config).await;
            }
            // Another request is refreshing (or did): use what it stores.
            match store::load(env, config, &did).await.map_err(failed)? {
                None => return Err(ended(config, &did, "it was signed out")),
                Some(newer) if newer.generation != read => {
                    *self = Self::from_stored(newer)?;
                    return Ok(());
                }
                Some(_) => worker::Delay::from(std::time::Duration::from_millis(250)).await,
            }
        }
        Err(SessionError::Failed(format!(
            "the OAuth session of {did} is being refreshed elsewhere; try again"
        )))
    }

    async fn refresh_claimed(&mut self, env: &Env, config: &AppConfig) -> Result<(), SessionError> {
        let did = self.stored.did.clone();
        let generation = self.stored.generation;
        match self.token_refresh(config).await {
            Ok(secrets) => {
                if !store::commit_refresh(env, config, &did, generation, &secrets)
                    .await
                    .map_err(failed)?
                {
                    // A new sign-in replaced the session meanwhile: use that.
                    return match store::load(env, config, &did).await.map_err(failed)? {
                        Some(newer) => {
                            *self = Self::from_stored(newer)?;
                            Ok(())
                        }
                        None => Err(ended(config, &did, "it was signed out")),
                    };
                }
                self.stored.secrets = secrets;
                self.stored.generation = generation + 1;
                self.stored.expires_at = self
                    .stored
                    .secrets
                    .tokens
                    .expires_at
                    .map(|s| (s * 1000) as f64)
                    .unwrap_or(f64::MAX);
                Ok(())
            }
            Err(SessionError::Ended(reason)) => {
                store::delete(env, &did, Some(generation))
                    .await
                    .map_err(failed)?;
                Err(SessionError::Ended(reason))
            }
            Err(e) => {
                store::release_refresh(env, &did, generation)
                    .await
                    .map_err(failed)?;
                Err(e)
            }
        }
    }

    /// Spends the refresh token at the issuer, which must still be the one
    /// the user's PDS names.
    async fn token_refresh(&self, config: &AppConfig) -> Result<Secrets, SessionError> {
        let did = &self.stored.did;
        let tokens = &self.stored.secrets.tokens;
        let Some(refresh_token) = &tokens.refresh_token else {
            return Err(ended(config, did, "it cannot be refreshed"));
        };
        let identity = resolve_user(did.as_str(), config)
            .await
            .map_err(|e| SessionError::Failed(e.to_string()))?;
        let issuer = server::issuer_of(&identity.pds)
            .await
            .map_err(SessionError::Failed)?;
        if issuer != self.stored.issuer {
            return Err(ended(config, did, "the account moved to another server"));
        }
        let client = OAuthClient::for_config(config).map_err(SessionError::Failed)?;
        let metadata = server::metadata(&issuer, client.is_confidential())
            .await
            .map_err(SessionError::Failed)?;
        let body = refresh_request_body(&client.auth_for(&issuer).map_err(failed)?, refresh_token);
        let answer = http::post_form(&self.key, &metadata.token_endpoint, &body)
            .await
            .map_err(SessionError::Failed)?;
        if grant_ended(answer.status, &answer.body) {
            return Err(ended(config, did, "the server no longer honours it"));
        }
        if answer.status != 200 {
            return Err(SessionError::Failed(format!(
                "{issuer} answered {} to a token refresh",
                answer.status
            )));
        }
        let response: TokenResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| failed(format!("{issuer} answered a refresh with nonsense: {e}")))?;
        let now = worker::Date::now().as_millis() / 1000;
        let mut fresh = response
            .check(
                &issuer,
                &TokenExpectations {
                    did: did.as_str(),
                    issuer: &issuer,
                },
                now,
            )
            .map_err(|e| ended(config, did, &e.to_string()))?;
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = tokens.refresh_token.clone();
        }
        Ok(Secrets {
            tokens: fresh,
            dpop_key: self.stored.secrets.dpop_key.clone(),
        })
    }

    /// Sign-out: revokes the tokens at the issuer (refresh token first: it
    /// ends the whole grant) and forgets the session, even when the issuer
    /// cannot be reached.
    pub async fn revoke(self, env: &Env, config: &AppConfig) -> Result<(), SessionError> {
        let result = self.revoke_at_issuer(config).await;
        store::delete(env, &self.stored.did, None)
            .await
            .map_err(failed)?;
        result
    }

    async fn revoke_at_issuer(&self, config: &AppConfig) -> Result<(), SessionError> {
        let issuer = &self.stored.issuer;
        let client = OAuthClient::for_config(config).map_err(SessionError::Failed)?;
        let metadata = server::metadata(issuer, client.is_confidential())
            .await
            .map_err(SessionError::Failed)?;
        let Some(endpoint) = &metadata.revocation_endpoint else {
            return Ok(());
        };
        let tokens = &self.stored.secrets.tokens;
        for token in tokens.refresh_token.iter().chain([&tokens.access_token]) {
            let body = revocation_body(&client.auth_for(issuer).map_err(failed)?, token);
            let answer = http::post_form(&self.key, endpoint, &body)
                .await
                .map_err(SessionError::Failed)?;
            if answer.status != 200 {
                return Err(SessionError::Failed(format!(
                    "{issuer} answered {} to the revocation",
                    answer.status
                )));
            }
        }
        Ok(())
    }
}

fn ended(config: &AppConfig, did: &Did, reason: &str) -> SessionError {
    SessionError::Ended(format!(
        "the sign-in of {did} has ended ({reason}): sign in again at {}/login",
        config.public_url
    ))
}
