//! The hold's configuration: `[vars]` in `hold-worker/wrangler.toml`, the
//! secrets set with `wrangler secret put`, (for `HOLD_STORAGE=r2`) the R2
//! bucket binding, and (for per-user quotas) the D1 binding.

use atcr_protocol::hold_storage;
use atcr_protocol::paths::KeyLayout;
use atcr_protocol::quota::Quota;
use atcr_protocol::s3::S3Config;
use atcr_protocol::Did;
use std::cell::OnceCell;
use std::rc::Rc;
use worker::{Bucket, D1Database, Env};

/// The R2 bucket binding `HOLD_STORAGE=r2` uses (`[[r2_buckets]]` in wrangler.toml).
pub const BLOBS_BINDING: &str = "BLOBS";
/// The D1 database per-user quotas keep usage in (`[[d1_databases]]` in
/// wrangler.toml; schema in `hold-worker/migrations/`).
pub const USAGE_BINDING: &str = "USAGE";

/// Where blobs live (`HOLD_STORAGE`), with the binding looked up for this request.
pub enum StorageConfig {
    /// `s3` (the default): any S3-compatible endpoint. The hold presigns;
    /// bytes go between clients and storage.
    S3(Rc<S3Config>),
    /// `r2`: the R2 bucket bound as `BLOBS`, no S3 keys. A binding cannot
    /// presign, so the hold serves the bytes through URLs it signs itself
    /// with `url_key`.
    R2 { bucket: Bucket, url_key: Rc<[u8]> },
}

/// `HOLD_STORAGE` as parsed once per isolate (bindings aside).
enum StorageSettings {
    S3(Rc<S3Config>),
    R2 { url_key: Rc<[u8]> },
}

/// One request's view of the configuration: the settings parsed once per
/// isolate (`HoldSettings`, reached through `Deref`) and the bindings
/// (the R2 bucket, the usage D1), looked up from this request's `Env`.
pub struct HoldConfig {
    settings: Rc<HoldSettings>,
    pub storage: StorageConfig,
    /// Where usage is kept: required when `quota` sets a limit.
    pub usage_db: Option<D1Database>,
}

impl std::ops::Deref for HoldConfig {
    type Target = HoldSettings;
    fn deref(&self) -> &HoldSettings {
        &self.settings
    }
}

/// Everything in the configuration that is not a binding: parsed from the
/// environment once per isolate (an isolate's environment never changes; a
/// new deployment or secret starts new isolates).
pub struct HoldSettings {
    /// Public base URL, e.g. `https://hold.example.com`; the DID derives from it.
    pub public_url: String,
    pub did: Did,
    /// The DID whose PDS holds this hold's `io.atcr.hold` and crew records.
    pub owner: Did,
    /// Anyone may read blobs (otherwise only the owner and crew).
    pub public: bool,
    /// Any authenticated ATProto user may write.
    pub allow_all_crew: bool,
    /// PLC directory used to resolve `did:plc` identities.
    pub plc_url: String,
    storage: StorageSettings,
    /// Appview DIDs whose tokens may act for their users (`sub`).
    pub trusted_appviews: Vec<Did>,
    /// How long crew and hold records are reused before re-reading the PDS.
    pub crew_cache_seconds: u64,
    /// Key that seals upload sessions.
    pub session_key: Vec<u8>,
    /// Lifetime of presigned read URLs: clients use them at once.
    pub read_url_seconds: u64,
    /// Uploads of known sha256 digest up to this size go in one PUT that
    /// storage checksums; larger ones in parts, verified by a read-back.
    /// 0 turns single PUTs off (for stores that ignore checksum headers).
    pub single_put_max_bytes: u64,
    /// What each user who may write only because of `allow_all_crew` may
    /// store (`HOLD_QUOTA_BYTES`, `HOLD_QUOTA_BLOBS`; 0 = unlimited).
    pub quota: Quota,
    /// The bucket's keys, under `HOLD_KEY_PREFIX` (default distribution's root).
    pub keys: KeyLayout,
}

thread_local! {
    /// This isolate's settings, once parsed. Each Worker has its own wasm
    /// instance, so this is never shared between Workers.
    static SETTINGS: OnceCell<Rc<HoldSettings>> = const { OnceCell::new() };
}

/// S3's limit for one PUT (R2's too).
const S3_MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

impl HoldConfig {
    /// The configuration for a request: the isolate's settings (parsed on
    /// its first request; a configuration that does not parse is parsed
    /// again next time, so the error is reported every time) and `env`'s
    /// bindings.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let settings = match SETTINGS.with(|s| s.get().cloned()) {
            Some(settings) => settings,
            None => {
                let parsed = Rc::new(HoldSettings::from_env(env)?);
                SETTINGS.with(|s| s.get_or_init(|| parsed).clone())
            }
        };
        let storage = match &settings.storage {
            StorageSettings::S3(s3) => StorageConfig::S3(s3.clone()),
            StorageSettings::R2 { url_key } => StorageConfig::R2 {
                bucket: env.bucket(BLOBS_BINDING).map_err(|_| {
                    format!("HOLD_STORAGE=r2 needs an R2 bucket bound as {BLOBS_BINDING}")
                })?,
                url_key: url_key.clone(),
            },
        };
        let usage_db = env.d1(USAGE_BINDING).ok();
        if !settings.quota.is_unlimited() && usage_db.is_none() {
            return Err(format!(
                "HOLD_QUOTA_BYTES and HOLD_QUOTA_BLOBS need a D1 database bound as \
                 {USAGE_BINDING} (hold-worker/wrangler.toml) to keep usage in"
            ));
        }
        Ok(HoldConfig {
            settings,
            storage,
            usage_db,
        })
    }
}

impl HoldSettings {
    fn from_env(env: &Env) -> Result<Self, String> {
        let var = |name: &str| -> Result<String, String> {
            env.var(name)
                .map(|v| v.to_string())
                .or_else(|_| env.secret(name).map(|v| v.to_string()))
                .map_err(|_| format!("{name} is not set"))
        };
        let flag = |name: &str| var(name).map(|v| v == "true").unwrap_or(false);
        let public_url = var("HOLD_PUBLIC_URL")?.trim_end_matches('/').to_string();
        let did = Did::web_for_url(&public_url).map_err(|e| format!("HOLD_PUBLIC_URL: {e}"))?;
        let owner = var("HOLD_OWNER")?
            .parse()
            .map_err(|e| format!("HOLD_OWNER: {e}"))?;
        let trusted_appviews = var("TRUSTED_APPVIEWS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("TRUSTED_APPVIEWS: {e}")))
            .collect::<Result<Vec<Did>, String>>()?;
        let session_secret = var("HOLD_SESSION_SECRET").ok();
        let (storage, session_key) = match var("HOLD_STORAGE").as_deref().unwrap_or("s3") {
            "s3" => {
                let s3 = S3Config::new(
                    &var("S3_ENDPOINT")?,
                    &var("S3_BUCKET")?,
                    &var("S3_REGION").unwrap_or_else(|_| "auto".into()),
                    &var("S3_ACCESS_KEY_ID")?,
                    &var("S3_SECRET_ACCESS_KEY")?,
                    flag("S3_PATH_STYLE"),
                )
                .map_err(|e| e.to_string())?;
                // Sealing upload sessions needs a secret: a dedicated one if
                // given, else one derived from the S3 secret key, which only
                // the hold knows.
                let session_key = match session_secret {
                    Some(secret) => secret.into_bytes(),
                    None => {
                        format!("atcr-hold-upload-session:{}", s3.secret_access_key).into_bytes()
                    }
                };
                (StorageSettings::S3(Rc::new(s3)), session_key)
            }
            "r2" => {
                env.bucket(BLOBS_BINDING).map_err(|_| {
                    format!("HOLD_STORAGE=r2 needs an R2 bucket bound as {BLOBS_BINDING}")
                })?;
                // No S3 secret to derive from: one secret seals sessions and signs storage URLs.
                let secret = session_secret.ok_or(
                    "HOLD_SESSION_SECRET is not set (HOLD_STORAGE=r2 needs it to seal \
                     upload sessions and sign storage URLs)",
                )?;
                let url_key = hold_storage::url_key(secret.as_bytes()).into();
                (StorageSettings::R2 { url_key }, secret.into_bytes())
            }
            other => return Err(format!("HOLD_STORAGE must be s3 or r2, not '{other}'")),
        };
        let quota = Quota::from_settings(
            var("HOLD_QUOTA_BYTES").ok().as_deref(),
            var("HOLD_QUOTA_BLOBS").ok().as_deref(),
        )?;
        Ok(HoldSettings {
            quota,
            keys: var("HOLD_KEY_PREFIX")
                .map(|prefix| KeyLayout::new(&prefix))
                .unwrap_or_default(),
            trusted_appviews,
            crew_cache_seconds: var("HOLD_CREW_CACHE_SECONDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30),
            session_key,
            read_url_seconds: var("HOLD_READ_URL_SECONDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
            single_put_max_bytes: var("HOLD_SINGLE_PUT_MAX_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(S3_MAX_SINGLE_PUT)
                .min(S3_MAX_SINGLE_PUT),
            public_url,
            did,
            owner,
            public: flag("HOLD_PUBLIC"),
            allow_all_crew: flag("HOLD_ALLOW_ALL_CREW"),
            plc_url: var("PLC_URL")
                .unwrap_or_else(|_| "https://plc.directory".into())
                .trim_end_matches('/')
                .to_string(),
            storage,
        })
    }
}
