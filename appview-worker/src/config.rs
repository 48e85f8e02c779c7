//! The appview's configuration: `[vars]` in the top-level `wrangler.toml`,
//! plus two secrets set with `wrangler secret put`.

use atcr_protocol::oauth::client::ClientKey;
use atcr_protocol::secret_box::{key_from_hex, KEY_LEN};
use atcr_protocol::Did;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::cell::OnceCell;
use std::rc::Rc;
use worker::Env;

/// Name of the D1 binding in `wrangler.toml`.
pub const DB_BINDING: &str = "DB";
/// The rate limiter of sign-ins (`[[ratelimits]]` in wrangler.toml).
pub const SIGN_IN_LIMITER_BINDING: &str = "SIGN_IN_LIMITER";
/// Its period, in seconds: what a refused client is told to wait.
pub const SIGN_IN_LIMIT_PERIOD_SECS: u32 = 60;
/// The Durable Object namespace of the Jetstream consumer
/// (`[[durable_objects.bindings]]` in wrangler.toml).
pub const JETSTREAM_BINDING: &str = "JETSTREAM";
/// The Durable Object namespace of the backfill (`[[durable_objects.bindings]]`).
pub const BACKFILL_BINDING: &str = "BACKFILL";

pub struct AppConfig {
    /// Public base URL of the registry, e.g. `https://atcr.example`.
    pub public_url: String,
    /// The `service` clients name when asking for a token (the registry host).
    pub service: String,
    /// The appview's own identity: `did:web:<host>`.
    pub did: Did,
    /// PLC directory for resolving `did:plc` identities.
    pub plc_url: String,
    /// DNS-over-HTTPS endpoint (JSON API) asked for `_atproto.<handle>` TXT
    /// records; `None` (set empty) skips DNS.
    pub dns_resolver_url: Option<String>,
    /// An XRPC service answering `com.atproto.identity.resolveHandle`, asked
    /// when DNS has no answer (it also knows handles published over HTTPS
    /// and by PDS hosts); `None` (set empty) skips it.
    pub handle_resolver_url: Option<String>,
    /// Hold used for users whose profile names none.
    pub default_hold: Did,
    /// Signs registry tokens and service tokens (`APPVIEW_SIGNING_KEY`, 64 hex).
    pub signing_key: p256::ecdsa::SigningKey,
    /// Encrypts PDS sessions at rest (`APPVIEW_SECRET_KEY`, 64 hex).
    pub secret_key: [u8; KEY_LEN],
    /// Signs the appview's OAuth client assertions (`private_key_jwt`);
    /// derived from `APPVIEW_SECRET_KEY`, published at `/oauth/jwks.json`.
    pub oauth_client_key: ClientKey,
    /// The largest request body that reaches the Worker
    /// (`EDGE_BODY_LIMIT_BYTES`; Cloudflare's edge answers 413 to larger
    /// ones): the largest upload chunk announced stays under it. 0: no limit.
    pub edge_body_limit: u64,
    /// How long a device login waits for the user's approval
    /// (`DEVICE_CODE_SECONDS`, default 600).
    pub device_code_seconds: u64,
    /// The Jetstream the index follows (`JETSTREAM_URL`, `wss://host` or
    /// `wss://host/subscribe`); `None` (unset or empty): the index knows
    /// only what passes through this appview.
    pub jetstream_url: Option<String>,
    /// The secret that opens the admin endpoints (`ADMIN_TOKEN`, presented
    /// as a Bearer token); `None` (unset or empty): they are off.
    pub admin_token: Option<String>,
    /// Records per `listRecords` page a backfill asks for
    /// (`BACKFILL_PAGE_SIZE`, 1 to 100, default 100).
    pub backfill_page_size: u32,
    /// Pages one backfill run reads (`BACKFILL_PAGES_PER_RUN`, default 10):
    /// each is a subrequest of that run's invocation.
    pub backfill_pages_per_run: u32,
    /// The pause between backfill runs (`BACKFILL_PAUSE_MS`, default 200):
    /// the rate a backfill asks PDSs at.
    pub backfill_pause_ms: u32,
}

/// An endpoint setting: empty means "do not use".
fn optional_url(value: String) -> Option<String> {
    let trimmed = value.trim().trim_end_matches('/');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

thread_local! {
    /// This isolate's configuration, once parsed. Each Worker has its own
    /// wasm instance, so this is never shared between Workers.
    static CONFIG: OnceCell<Rc<AppConfig>> = const { OnceCell::new() };
}

impl AppConfig {
    /// The configuration, parsed from `env` on the isolate's first request
    /// and reused after: an isolate's environment never changes (a new
    /// deployment or secret starts new isolates), and parsing it rebuilds
    /// the signing key (a scalar multiplication). A configuration that does
    /// not parse is parsed again next time, so every request reports it.
    pub fn cached(env: &Env) -> Result<Rc<Self>, String> {
        if let Some(config) = CONFIG.with(|c| c.get().cloned()) {
            return Ok(config);
        }
        let parsed = Rc::new(Self::from_env(env)?);
        Ok(CONFIG.with(|c| c.get_or_init(|| parsed).clone()))
    }

    pub fn from_env(env: &Env) -> Result<Self, String> {
        let var = |name: &str| -> Result<String, String> {
            env.var(name)
                .map(|v| v.to_string())
                .or_else(|_| env.secret(name).map(|v| v.to_string()))
                .map_err(|_| format!("{name} is not set"))
        };
        let public_url = var("PUBLIC_URL")?.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&public_url).map_err(|e| format!("PUBLIC_URL: {e}"))?;
        let host = parsed.host_str().ok_or("PUBLIC_URL has no host")?;
        let default_service = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let signing_key = key_from_hex(&var("APPVIEW_SIGNING_KEY")?)
            .and_then(|bytes| {
                p256::ecdsa::SigningKey::from_bytes(&bytes.into()).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("APPVIEW_SIGNING_KEY: {e}"))?;
        let secret_key = key_from_hex(&var("APPVIEW_SECRET_KEY")?)
            .map_err(|e| format!("APPVIEW_SECRET_KEY: {e}"))?;
        let oauth_client_key = oauth_client_key(&secret_key)?;
        Ok(AppConfig {
            oauth_client_key,
            service: var("REGISTRY_SERVICE").unwrap_or(default_service),
            did: Did::web_for_url(&public_url).map_err(|e| format!("PUBLIC_URL: {e}"))?,
            plc_url: var("PLC_URL")
                .unwrap_or_else(|_| "https://plc.directory".into())
                .trim_end_matches('/')
                .into(),
            dns_resolver_url: optional_url(
                var("DNS_RESOLVER_URL")
                    .unwrap_or_else(|_| "https://cloudflare-dns.com/dns-query".into()),
            ),
            handle_resolver_url: optional_url(
                var("HANDLE_RESOLVER_URL").unwrap_or_else(|_| "https://public.api.bsky.app".into()),
            ),
            default_hold: var("DEFAULT_HOLD")?
                .parse()
                .map_err(|e| format!("DEFAULT_HOLD: {e}"))?,
            edge_body_limit: match var("EDGE_BODY_LIMIT_BYTES") {
                Ok(value) => value.trim().parse().map_err(|_| {
                    format!("EDGE_BODY_LIMIT_BYTES: {value:?} is not a number of bytes")
                })?,
                Err(_) => atcr_protocol::chunking::DEFAULT_BODY_LIMIT,
            },
            device_code_seconds: match var("DEVICE_CODE_SECONDS") {
                Ok(value) => value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        format!("DEVICE_CODE_SECONDS: {value:?} is not a number of seconds")
                    })?,
                Err(_) => atcr_protocol::device::DEFAULT_CODE_SECONDS,
            },
            jetstream_url: optional_url(var("JETSTREAM_URL").unwrap_or_default()),
            admin_token: var("ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()),
            backfill_page_size: number(
                &var,
                "BACKFILL_PAGE_SIZE",
                atcr_protocol::backfill::RECORDS_PAGE,
            )?
            .clamp(1, atcr_protocol::backfill::RECORDS_PAGE),
            backfill_pages_per_run: number(
                &var,
                "BACKFILL_PAGES_PER_RUN",
                atcr_protocol::backfill::PAGES_PER_RUN,
            )?
            .max(1),
            backfill_pause_ms: number(&var, "BACKFILL_PAUSE_MS", 200)?,
            public_url,
            signing_key,
            secret_key,
        })
    }

    /// Where clients ask for registry tokens.
    pub fn token_realm(&self) -> String {
        format!("{}/auth/token", self.public_url)
    }
}

/// A whole-number setting, `default` when unset.
fn number(
    var: &dyn Fn(&str) -> Result<String, String>,
    name: &str,
    default: u32,
) -> Result<u32, String> {
    match var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {value:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// The OAuth client key: a P-256 key derived from the secret key (HMAC
/// under its own label), so it needs no secret of its own and every
/// isolate derives the same one; `kid` is a prefix of its JWK thumbprint,
/// so a new secret publishes a new `kid`.
fn oauth_client_key(secret_key: &[u8; KEY_LEN]) -> Result<ClientKey, String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key).expect("any key length");
    mac.update(b"atcr-oauth-client-key");
    let scalar = mac.finalize().into_bytes();
    let key = p256::ecdsa::SigningKey::from_slice(&scalar)
        .map_err(|_| "APPVIEW_SECRET_KEY derives no P-256 key: choose another".to_string())?;
    let thumbprint =
        atcr_protocol::oauth::jws::PublicJwk::from_key(key.verifying_key()).thumbprint();
    Ok(ClientKey::new(&thumbprint[..16], key))
}
