//! The appview as a client of holds: finding a user's hold and calling its
//! XRPC API with short-lived service tokens signed by the appview.

use crate::atproto::resolve::Identity;
use crate::config::AppConfig;
use atcr_protocol::hold_api::{
    url_reuse_window_ms, BlobStat, BlobStats, CompletedPart, PresignedUrl, UploadCompleted,
    UploadStarted, XrpcError, ABORT_UPLOAD, COMPLETE_UPLOAD, GET_BLOB, GET_UPLOAD_PART_URL,
    MAX_STAT_BATCH, START_UPLOAD, STAT_BLOB, STAT_BLOBS,
};
use atcr_protocol::identity::HOLD_SERVICE_ID;
use atcr_protocol::service_auth::{sign_es256, ServiceClaims};
use atcr_protocol::{collections, Did, Digest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use worker::{Fetch, Headers, Method, Request, RequestInit};
use worker_support::{now, resolve_did_cached, IsolateCache};

/// Service tokens live just long enough for the one call they authorize.
const SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum HoldCallError {
    /// The hold answered with an XRPC error.
    Refused { status: u16, error: XrpcError },
    /// The hold could not be found or reached.
    Unavailable(String),
}

impl HoldCallError {
    /// The hold does not know the method: 501, or the 400 holds answered
    /// before they said 501.
    fn is_unknown_method(&self) -> bool {
        match self {
            HoldCallError::Refused { status: 501, .. } => true,
            HoldCallError::Refused { status: 400, error } => {
                error.message.starts_with("this hold has no method")
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for HoldCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldCallError::Refused { status, error } => write!(
                f,
                "hold refused ({status} {}): {}",
                error.error, error.message
            ),
            HoldCallError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// A hold, resolved from its DID to the endpoint its document names.
pub struct Hold {
    pub did: Did,
    pub endpoint: String,
}

impl Hold {
    pub async fn resolve(did: &Did, config: &AppConfig) -> Result<Hold, HoldCallError> {
        let doc = resolve_did_cached(did, &config.plc_url)
            .await
            .map_err(HoldCallError::Unavailable)?;
        let endpoint = doc.service_endpoint(HOLD_SERVICE_ID).ok_or_else(|| {
            HoldCallError::Unavailable(format!(
                "{did} is not a hold (no {HOLD_SERVICE_ID} service)"
            ))
        })?;
        Ok(Hold {
            did: did.clone(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
        })
    }

    /// `statBlob`: `Ok(None)` when the hold has no such blob.
    pub async fn stat(
        &self,
        config: &AppConfig,
        user: Option<&Did>,
        digest: &Digest,
    ) -> Result<Option<u64>, HoldCallError> {
        let query = format!("digest={digest}");
        match self
            .call::<BlobStat>(config, user, STAT_BLOB, &query, None)
            .await
        {
            Ok(stat) => Ok(Some(stat.size)),
            Err(HoldCallError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `statBlobs`: which of `digests` the hold has (and their sizes), in
    /// one call per `MAX_STAT_BATCH` digests, the calls made at once. A
    /// hold from before `statBlobs` is asked blob by blob.
    pub async fn stat_many(
        &self,
        config: &AppConfig,
        user: Option<&Did>,
        digests: &[&Digest],
    ) -> Result<Vec<BlobStat>, HoldCallError> {
        let batches = digests.chunks(MAX_STAT_BATCH).map(|batch| {
            let body = json!({ "digests": batch });
            self.call::<BlobStats>(config, user, STAT_BLOBS, "", Some(body))
        });
        match futures_util::future::try_join_all(batches).await {
            Ok(answers) => Ok(answers.into_iter().flat_map(|a| a.blobs).collect()),
            Err(e) if e.is_unknown_method() => {
                let one_by_one = digests.iter().map(|digest| async move {
                    let size = self.stat(config, user, digest).await?;
                    Ok::<_, HoldCallError>(size.map(|size| BlobStat {
                        digest: (*digest).clone(),
                        size,
                    }))
                });
                let found = futures_util::future::try_join_all(one_by_one).await?;
                Ok(found.into_iter().flatten().collect())
            }
            Err(e) => Err(e),
        }
    }

    /// `getBlob`: a presigned URL for GET or HEAD; `Ok(None)` when absent.
    async fn presign_read(
        &self,
        config: &AppConfig,
        user: Option<&Did>,
        digest: &Digest,
        method: &str,
    ) -> Result<Option<PresignedUrl>, HoldCallError> {
        let query = format!("digest={digest}&method={method}");
        match self
            .call::<PresignedUrl>(config, user, GET_BLOB, &query, None)
            .await
        {
            Ok(url) => Ok(Some(url)),
            Err(HoldCallError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `startUpload`. Most OCI clients name the digest only at the end;
    /// when digest and size are known up front, the hold may offer one
    /// checksummed PUT instead of parts.
    pub async fn start_upload(
        &self,
        config: &AppConfig,
        user: &Did,
        whole: Option<(&Digest, u64)>,
    ) -> Result<UploadStarted, HoldCallError> {
        let body = match whole {
            Some((digest, size)) => json!({ "digest": digest, "size": size }),
            None => json!({}),
        };
        self.call(config, Some(user), START_UPLOAD, "", Some(body))
            .await
    }

    /// `getUploadPartUrl`: where part `part` of the upload goes.
    pub async fn part_url(
        &self,
        config: &AppConfig,
        user: &Did,
        session: &str,
        part: u32,
    ) -> Result<String, HoldCallError> {
        let body = json!({ "session": session, "partNumber": part });
        let url: PresignedUrl = self
            .call(config, Some(user), GET_UPLOAD_PART_URL, "", Some(body))
            .await?;
        Ok(url.url)
    }

    /// `completeUpload`: the hold verifies `digest` and publishes the blob.
    pub async fn complete_upload(
        &self,
        config: &AppConfig,
        user: &Did,
        session: &str,
        parts: &[CompletedPart],
        digest: &Digest,
        size: u64,
    ) -> Result<UploadCompleted, HoldCallError> {
        let body = json!({ "session": session, "parts": parts, "digest": digest });
        // The hold reads the whole blob back to verify it (an R2 binding
        // even copies it): allow for that at 10 MB/s on top of the usual wait.
        let timeout = worker_support::CALL_TIMEOUT + Duration::from_secs(size / 10_000_000);
        self.call_within(config, Some(user), COMPLETE_UPLOAD, "", Some(body), timeout)
            .await
    }

    pub async fn abort_upload(
        &self,
        config: &AppConfig,
        user: &Did,
        session: &str,
    ) -> Result<(), HoldCallError> {
        let body = json!({ "session": session });
        self.call::<serde_json::Value>(config, Some(user), ABORT_UPLOAD, "", Some(body))
            .await
            .map(|_| ())
    }

    /// A service token for calling `nsid` on this hold for `user`, signed
    /// by the appview, living `lifetime`.
    pub fn token_for(
        &self,
        config: &AppConfig,
        user: &Did,
        nsid: &str,
        lifetime: Duration,
    ) -> Result<String, HoldCallError> {
        let claims = ServiceClaims {
            iss: config.did.clone(),
            aud: self.did.to_string(),
            sub: Some(user.to_string()),
            lxm: Some(nsid.to_string()),
            jti: None,
        };
        sign_es256(&config.signing_key, claims, now(), lifetime).map_err(HoldCallError::Unavailable)
    }

    /// Calls one XRPC method, acting for `user` (or anonymously): a GET with
    /// `query`, or a POST of `body`.
    async fn call<T: DeserializeOwned>(
        &self,
        config: &AppConfig,
        user: Option<&Did>,
        nsid: &str,
        query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, HoldCallError> {
        self.call_within(
            config,
            user,
            nsid,
            query,
            body,
            worker_support::CALL_TIMEOUT,
        )
        .await
    }

    /// `call`, waiting up to `timeout` for the answer.
    async fn call_within<T: DeserializeOwned>(
        &self,
        config: &AppConfig,
        user: Option<&Did>,
        nsid: &str,
        query: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, HoldCallError> {
        let headers = Headers::new();
        if let Some(user) = user {
            let token = self.token_for(config, user, nsid, SERVICE_TOKEN_LIFETIME)?;
            headers
                .set("Authorization", &format!("Bearer {token}"))
                .map_err(|e| HoldCallError::Unavailable(e.to_string()))?;
        }
        let url = format!("{}/xrpc/{nsid}?{query}", self.endpoint);
        let mut init = RequestInit::new();
        match body {
            Some(body) => {
                headers
                    .set("Content-Type", "application/json")
                    .map_err(|e| HoldCallError::Unavailable(e.to_string()))?;
                init.with_method(Method::Post)
                    .with_body(Some(body.to_string().into()));
            }
            None => {
                init.with_method(Method::Get);
            }
        }
        init.with_headers(headers);
        let req = Request::new_with_init(&url, &init)
            .map_err(|e| HoldCallError::Unavailable(e.to_string()))?;
        let mut resp = worker_support::send_within(Fetch::Request(req), timeout)
            .await
            .map_err(|e| {
                HoldCallError::Unavailable(format!("hold {} unreachable: {e}", self.did))
            })?;
        let status = resp.status_code();
        if status == 200 {
            return resp
                .json()
                .await
                .map_err(|e| HoldCallError::Unavailable(format!("hold answered nonsense: {e}")));
        }
        let error = resp.json::<XrpcError>().await.unwrap_or(XrpcError {
            error: "Unknown".into(),
            message: format!("status {status}"),
        });
        Err(HoldCallError::Refused { status, error })
    }
}

thread_local! {
    /// Presigned read URLs this isolate may hand out again, by
    /// `blob_url_key`, each until half its lifetime has passed.
    static BLOB_URLS: IsolateCache<String> = IsolateCache::new(4096);
}

/// Who a cached URL is for: `*` when the hold said anyone may read (a
/// public hold), else the caller it was asked for (`-`: anonymous).
fn blob_url_key(hold: &Did, digest: &Digest, method: &str, reader: &str) -> String {
    format!("{hold} {digest} {method} {reader}")
}

/// `getBlob` of the hold `hold`: a presigned URL for GET or HEAD, `Ok(None)`
/// when the hold has no such blob. A URL this isolate was given before is
/// handed out again, without asking the hold, while more than half its
/// lifetime remains and for no longer than the hold allowed (its policy
/// cache; `url_reuse_window_ms`): to anyone when the hold said
/// anyone may read, else only to the same caller, so a private hold's URL
/// never reaches someone the hold would refuse. Whether the repository
/// still links the blob is the caller's to check on every request.
pub async fn blob_url(
    hold: &Did,
    config: &AppConfig,
    user: Option<&Did>,
    digest: &Digest,
    method: &str,
) -> Result<Option<String>, HoldCallError> {
    let shared = blob_url_key(hold, digest, method, "*");
    let own = blob_url_key(hold, digest, method, user.map_or("-", Did::as_str));
    if let Some(url) = BLOB_URLS.with(|c| c.get(&shared).or_else(|| c.get(&own))) {
        return Ok(Some(url));
    }
    let Some(answer) = Hold::resolve(hold, config)
        .await?
        .presign_read(config, user, digest, method)
        .await?
    else {
        return Ok(None);
    };
    let now_secs = now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if let Some(window_ms) = url_reuse_window_ms(now_secs, &answer) {
        let key = if answer.public { shared } else { own };
        BLOB_URLS.with(|c| c.put(&key, answer.url.clone(), window_ms));
    }
    Ok(Some(answer.url))
}

#[derive(Deserialize)]
struct ProfileRecord {
    value: Profile,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_hold: Option<Did>,
}

/// How long a user's choice of hold is reused within one isolate: every
/// blob request needs it, and it changes rarely.
const HOLD_OF_CACHE_MS: u64 = 60_000;

thread_local! {
    static HOLD_OF: IsolateCache<Did> = IsolateCache::new(4096);
}

/// The hold a user's blobs go to: their `io.atcr.sailor.profile`
/// `defaultHold`, else the appview's default hold.
pub async fn hold_of(owner: &Identity, config: &AppConfig) -> Did {
    if let Some(hold) = HOLD_OF.with(|c| c.get(owner.did.as_str())) {
        return hold;
    }
    let hold = profile_hold(owner).await;
    if let Some(hold) = &hold {
        HOLD_OF.with(|c| c.put(owner.did.as_str(), hold.clone(), HOLD_OF_CACHE_MS));
    }
    hold.unwrap_or_else(|| config.default_hold.clone())
}

/// The owner just named `hold` in their profile: this isolate uses it at
/// once (others within `HOLD_OF_CACHE_MS`).
pub fn hold_chosen(owner: &Did, hold: &Did) {
    HOLD_OF.with(|c| c.put(owner.as_str(), hold.clone(), HOLD_OF_CACHE_MS));
}

/// What a hold says about itself (`GET /` and `/health`), checked before a
/// user names it in a record: it must answer healthy, under the DID asked.
pub struct HoldFacts {
    pub endpoint: String,
    pub owner: Option<Did>,
}

pub async fn check_hold(did: &Did, config: &AppConfig) -> Result<HoldFacts, String> {
    let hold = Hold::resolve(did, config)
        .await
        .map_err(|e| e.to_string())?;
    let get = |path: &str| {
        let url = format!("{}{path}", hold.endpoint);
        async move {
            let req = Fetch::Url(url.parse().map_err(|e| format!("{url}: {e}"))?);
            worker_support::call(req)
                .await
                .map_err(|e| format!("{url} is unreachable: {e}"))
        }
    };
    let (health, describe) = futures_util::join!(get("/health"), get("/"));
    let health = health?;
    if health.status_code() != 200 {
        return Err(format!(
            "the hold at {} is not healthy: /health answered {}",
            hold.endpoint,
            health.status_code()
        ));
    }
    #[derive(Deserialize)]
    struct Describe {
        did: Did,
        owner: Option<Did>,
    }
    let described: Describe = describe?.json().await.map_err(|e| {
        format!(
            "the hold at {} does not describe itself: {e}",
            hold.endpoint
        )
    })?;
    if &described.did != did {
        return Err(format!(
            "the service at {} is {}, not {did}",
            hold.endpoint, described.did
        ));
    }
    Ok(HoldFacts {
        endpoint: hold.endpoint,
        owner: described.owner,
    })
}

async fn profile_hold(owner: &Identity) -> Option<Did> {
    let url = format!(
        "{}/xrpc/com.atproto.repo.getRecord?repo={}&collection={}&rkey=self",
        owner.pds,
        owner.did,
        collections::PROFILE
    );
    let profile = async {
        let mut resp = worker_support::call(Fetch::Url(url.parse().ok()?))
            .await
            .ok()?;
        if resp.status_code() != 200 {
            return None;
        }
        resp.json::<ProfileRecord>().await.ok()?.value.default_hold
    };
    profile.await
}
