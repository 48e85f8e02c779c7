//! The registry as `atcr` speaks to it: registry tokens from `/auth/token`
//! with the stored login (renewed before they expire), the OCI API for
//! what goes through the appview (blob checks, small blobs, manifests,
//! pulls), and `getHoldAccess` for the owner's hold and tokens to call it
//! directly.

use crate::retry::{retry, Failure};
use atcr_helper::http::{base_url, basic};
use atcr_helper::Credentials;
use atcr_protocol::hold_api::{HoldAccess, XrpcError, GET_HOLD_ACCESS};
use serde::de::DeserializeOwned;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Registry tokens live 5 minutes; one is renewed after this long.
const TOKEN_REUSE: Duration = Duration::from_secs(200);
/// Hold tokens are renewed when fewer seconds than this are left.
const HOLD_TOKEN_MARGIN_SECS: u64 = 30;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `REGISTRY/NAME[:TAG|@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub name: String,
    /// A tag or a digest; `latest` when none is given.
    pub reference: String,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim_start_matches("docker://");
        let (registry, rest) = s.split_once('/').ok_or_else(|| {
            format!("{s}: name the registry, e.g. atcr.io/you.bsky.social/app:v1")
        })?;
        let (name, reference) = if let Some((name, digest)) = rest.split_once('@') {
            (name, digest.to_string())
        } else {
            match rest.rsplit_once(':') {
                // A colon after the last `/` starts the tag.
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
                _ => (rest, "latest".to_string()),
            }
        };
        if name.is_empty() || reference.is_empty() {
            return Err(format!("{s}: expected REGISTRY/NAME:TAG"));
        }
        Ok(Target {
            registry: registry.to_string(),
            name: name.to_string(),
            reference,
        })
    }
}

pub struct Registry {
    pub target: Target,
    base: String,
    creds: Option<Credentials>,
    scope: String,
    agent: ureq::Agent,
    token: Mutex<Option<(String, Instant)>>,
    access: Mutex<Option<HoldAccess>>,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .user_agent(concat!("atcr/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

type Resp = ureq::http::Response<ureq::Body>;

/// The words of an error answer: an OCI envelope's or an XRPC error's message.
fn refusal(mut resp: Resp, what: &str) -> Failure {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let message = json["errors"][0]["message"]
        .as_str()
        .or(json["message"].as_str())
        .or(json["error"].as_str())
        .map(str::to_string)
        .unwrap_or(body);
    Failure::status(status, format!("{what}: {status} {message}"))
}

impl Registry {
    /// The registry of `target`, as the stored login (if any) for it.
    pub fn new(target: Target, creds: Option<Credentials>, push: bool) -> Registry {
        let actions = if push { "pull,push" } else { "pull" };
        Registry {
            base: base_url(&target.registry),
            scope: format!("repository:{}:{actions}", target.name),
            target,
            creds,
            agent: agent(),
            token: Mutex::new(None),
            access: Mutex::new(None),
        }
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// A registry token for the repository, renewed when old.
    fn token(&self) -> Result<String, Failure> {
        let mut cached = self.token.lock().unwrap();
        if let Some((token, at)) = cached.as_ref() {
            if at.elapsed() < TOKEN_REUSE {
                return Ok(token.clone());
            }
        }
        let host = self.target.registry.split('/').next().unwrap_or_default();
        let url = format!("{}/auth/token", self.base);
        let token = retry("registry token", || {
            let mut req = self
                .agent
                .get(&url)
                .query("service", host)
                .query("scope", &self.scope);
            if let Some(c) = &self.creds {
                req = req.header("Authorization", basic(&c.username, &c.secret));
            }
            let resp = req.call().map_err(Failure::transport)?;
            if resp.status() != 200 {
                return Err(refusal(resp, "the token service refused"));
            }
            let json: serde_json::Value = read_json(resp)?;
            json["token"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Failure::fatal("the token service answered no token"))
        })?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    fn bearer(&self) -> Result<String, Failure> {
        Ok(format!("Bearer {}", self.token()?))
    }

    fn v2(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.target.name)
    }

    /// Whether the repository has the blob (HEAD).
    pub fn has_blob(&self, digest: &str) -> Result<bool, Failure> {
        retry("blob check", || {
            let resp = self
                .agent
                .head(self.v2(&format!("blobs/{digest}")))
                .header("Authorization", self.bearer()?)
                .call()
                .map_err(Failure::transport)?;
            match resp.status().as_u16() {
                200 => Ok(true),
                404 => Ok(false),
                _ => Err(refusal(resp, &format!("checking {digest}"))),
            }
        })
    }

    /// A small blob in one monolithic `POST …/blobs/uploads/?digest=`.
    pub fn upload_small(&self, digest: &str, bytes: &[u8]) -> Result<(), Failure> {
        retry("blob upload", || {
            let resp = self
                .agent
                .post(self.v2("blobs/uploads/"))
                .query("digest", digest)
                .header("Authorization", self.bearer()?)
                .header("Content-Type", "application/octet-stream")
                .send(bytes)
                .map_err(Failure::transport)?;
            match resp.status().as_u16() {
                201 => Ok(()),
                _ => Err(refusal(resp, &format!("uploading {digest}"))),
            }
        })
    }

    /// Links a blob the owner's hold has into the repository (a mount from
    /// the repository itself: the appview asks the hold and, when it has
    /// the blob, forgets any earlier delete of it there). `false` when the
    /// hold lacks it (the upload the appview then opened is cancelled).
    pub fn link(&self, digest: &str) -> Result<bool, Failure> {
        retry("blob link", || {
            let resp = self
                .agent
                .post(self.v2("blobs/uploads/"))
                .query("mount", digest)
                .query("from", &self.target.name)
                .header("Authorization", self.bearer()?)
                .send_empty()
                .map_err(Failure::transport)?;
            match resp.status().as_u16() {
                201 => Ok(true),
                202 => {
                    if let Some(location) =
                        resp.headers().get("location").and_then(|l| l.to_str().ok())
                    {
                        let url = if location.starts_with('/') {
                            format!("{}{location}", self.base)
                        } else {
                            location.to_string()
                        };
                        let _ = self
                            .agent
                            .delete(&url)
                            .header("Authorization", self.bearer()?)
                            .call();
                    }
                    Ok(false)
                }
                _ => Err(refusal(resp, &format!("linking {digest}"))),
            }
        })
    }

    /// `PUT /v2/<name>/manifests/<reference>`: the appview writes the records.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), Failure> {
        retry("manifest upload", || {
            let resp = self
                .agent
                .put(self.v2(&format!("manifests/{reference}")))
                .header("Authorization", self.bearer()?)
                .header("Content-Type", media_type)
                .send(bytes)
                .map_err(Failure::transport)?;
            match resp.status().as_u16() {
                200..=299 => Ok(()),
                _ => Err(refusal(resp, &format!("pushing manifest {reference}"))),
            }
        })
    }

    /// A manifest by tag or digest: its media type and exact bytes.
    pub fn get_manifest(&self, reference: &str) -> Result<(String, Vec<u8>), Failure> {
        retry("manifest", || {
            let mut resp = self
                .agent
                .get(self.v2(&format!("manifests/{reference}")))
                .header("Authorization", self.bearer()?)
                .header("Accept", MANIFEST_ACCEPT)
                .call()
                .map_err(Failure::transport)?;
            if resp.status() != 200 {
                return Err(refusal(resp, &format!("manifest {reference}")));
            }
            let media_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = resp
                .body_mut()
                .with_config()
                .limit(8 * 1024 * 1024)
                .read_to_vec()
                .map_err(Failure::transport)?;
            Ok((media_type, bytes))
        })
    }

    /// A blob's bytes as a reader (the appview's `307` to storage followed).
    pub fn get_blob(&self, digest: &str) -> Result<impl Read, Failure> {
        let resp = self
            .agent
            .get(self.v2(&format!("blobs/{digest}")))
            .header("Authorization", self.bearer()?)
            .call()
            .map_err(Failure::transport)?;
        if resp.status() != 200 {
            return Err(refusal(resp, &format!("blob {digest}")));
        }
        Ok(resp.into_body().into_reader())
    }

    /// Where the owner's blobs go and tokens for its upload methods,
    /// asked again when they are about to expire.
    pub fn hold_access(&self) -> Result<HoldAccess, Failure> {
        let mut cached = self.access.lock().unwrap();
        if let Some(access) = cached.as_ref() {
            if access.expires_at > now_secs() + HOLD_TOKEN_MARGIN_SECS {
                return Ok(access.clone());
            }
        }
        let url = format!("{}/xrpc/{GET_HOLD_ACCESS}", self.base);
        let access: HoldAccess = retry("hold access", || {
            let resp = self
                .agent
                .get(&url)
                .query("repository", &self.target.name)
                .header("Authorization", self.bearer()?)
                .call()
                .map_err(Failure::transport)?;
            if resp.status() != 200 {
                return Err(refusal(resp, "the registry refused access to the hold"));
            }
            read_json(resp)
        })?;
        *cached = Some(access.clone());
        Ok(access)
    }

    /// Calls one of the hold's upload methods with the token for it.
    pub fn hold_call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<T, Failure> {
        retry(method, || {
            let access = self.hold_access()?;
            let token = access
                .tokens
                .get(method)
                .ok_or_else(|| Failure::fatal(format!("no token for {method}")))?;
            let resp = self
                .agent
                .post(format!("{}/xrpc/{method}", access.endpoint))
                .header("Authorization", format!("Bearer {token}"))
                .send_json(body)
                .map_err(Failure::transport)?;
            if resp.status() == 200 {
                return read_json(resp);
            }
            let status = resp.status().as_u16();
            let mut resp = resp;
            let error: XrpcError = resp.body_mut().read_json().unwrap_or(XrpcError {
                error: "Unknown".into(),
                message: format!("status {status}"),
            });
            Err(Failure::hold(status, error, &access.hold.to_string()))
        })
    }
}

pub fn read_json<T: DeserializeOwned>(mut resp: Resp) -> Result<T, Failure> {
    resp.body_mut()
        .with_config()
        .limit(8 * 1024 * 1024)
        .read_json()
        .map_err(|e| Failure::fatal(format!("an answer was not the JSON expected: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_registry_repository_and_reference() {
        let t = Target::parse("127.0.0.1:8787/alice.test/app:v1").unwrap();
        assert_eq!(t.registry, "127.0.0.1:8787");
        assert_eq!(t.name, "alice.test/app");
        assert_eq!(t.reference, "v1");
        let t = Target::parse("atcr.io/alice.bsky.social/team/app").unwrap();
        assert_eq!(t.name, "alice.bsky.social/team/app");
        assert_eq!(t.reference, "latest");
        let t = Target::parse("docker://atcr.io/a.test/app@sha256:abcd").unwrap();
        assert_eq!(t.name, "a.test/app");
        assert_eq!(t.reference, "sha256:abcd");
        assert!(Target::parse("app:v1").is_err());
    }
}
