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
}

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
        let owner = var("HOLD_OWNER")?.parse().map_err(|e| format!("HOLD_OWNER: {e}"))?;
        let s3 = S3Config::new(
            &var("S3_ENDPOINT")?,
            &var("S3_BUCKET")?,
            &var("S3_REGION").unwrap_or_else(|_| "auto".into()),
            &var("S3_ACCESS_KEY_ID")?,
            &var("S3_SECRET_ACCESS_KEY")?,
            flag("S3_PATH_STYLE"),
        )
        .map_err(|e| e.to_string())?;
        Ok(HoldConfig {
            public_url,
            did,
            owner,
            public: flag("HOLD_PUBLIC"),
            allow_all_crew: flag("HOLD_ALLOW_ALL_CREW"),
            plc_url: var("PLC_URL").unwrap_or_else(|_| "https://plc.directory".into()).trim_end_matches('/').to_string(),
            s3,
        })
    }
}
