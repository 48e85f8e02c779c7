//! The hold's configuration: `[vars]` in `hold-worker/wrangler.toml` plus the
//! S3 key pair, which is set with `wrangler secret put`.

use atcr_protocol::s3::S3Config;
use atcr_protocol::Did;
use worker::Env;

pub struct HoldConfig {
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
    pub s3: S3Config,
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
}

/// S3's limit for one PUT (R2's too).
const S3_MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

impl HoldConfig {
    pub fn from_env(env: &Env) -> Result<Self, String> {
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
        let s3 = S3Config::new(
            &var("S3_ENDPOINT")?,
            &var("S3_BUCKET")?,
            &var("S3_REGION").unwrap_or_else(|_| "auto".into()),
            &var("S3_ACCESS_KEY_ID")?,
            &var("S3_SECRET_ACCESS_KEY")?,
            flag("S3_PATH_STYLE"),
        )
        .map_err(|e| e.to_string())?;
        let trusted_appviews = var("TRUSTED_APPVIEWS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("TRUSTED_APPVIEWS: {e}")))
            .collect::<Result<Vec<Did>, String>>()?;
        // Sealing upload sessions needs a secret: a dedicated one if given,
        // else one derived from the S3 secret key, which only the hold knows.
        let session_key = match var("HOLD_SESSION_SECRET") {
            Ok(secret) => secret.into_bytes(),
            Err(_) => format!("atcr-hold-upload-session:{}", s3.secret_access_key).into_bytes(),
        };
        Ok(HoldConfig {
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
            s3,
        })
    }
}
