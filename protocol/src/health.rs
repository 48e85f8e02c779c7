//! The health report both workers serve at `/health`, and the build it names.
//!
//! Each dependency is probed and reported by name; the report is healthy only
//! when every probe passed, and the HTTP status says so (200 or 503), so a
//! load balancer needs no JSON parsing. The report also says which build
//! answers (version and commit), so an operator knows what runs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was probed: `d1`, `s3`, `plc`, `pds_resolver`, ...
    pub name: String,
    pub ok: bool,
    /// The address probed or the failure, in words a person can act on.
    pub detail: String,
    pub elapsed_ms: u64,
}

/// What a build reports when it was built without `ATCR_COMMIT`.
pub const UNKNOWN_COMMIT: &str = "unknown";

/// Which build is running: the crate version and the commit it was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    /// `CARGO_PKG_VERSION` of the binary (one version for the workspace).
    pub version: &'static str,
    /// The commit `scripts/build-worker` (or whoever built) put in
    /// `ATCR_COMMIT`, e.g. `1a2b3c4d5e6f` or `1a2b3c4d5e6f-dirty`; else `unknown`.
    pub commit: &'static str,
}

impl BuildInfo {
    pub const fn new(version: &'static str, commit: Option<&'static str>) -> Self {
        let commit = match commit {
            Some(c) if !c.is_empty() => c,
            _ => UNKNOWN_COMMIT,
        };
        BuildInfo { version, commit }
    }
}

impl std::fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (commit {})", self.version, self.commit)
    }
}

/// The [`BuildInfo`](crate::health::BuildInfo) of the crate that expands it:
/// its `CARGO_PKG_VERSION` and the `ATCR_COMMIT` it was compiled with. A macro,
/// so the values are the calling binary's, and only that crate rebuilds when
/// the commit changes.
#[macro_export]
macro_rules! build_info {
    () => {
        $crate::health::BuildInfo::new(env!("CARGO_PKG_VERSION"), option_env!("ATCR_COMMIT"))
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub service: String,
    pub version: String,
    pub commit: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl HealthReport {
    /// The report of `service`, built as `build`
    /// (`HealthReport::for_build("atcr-hold", atcr_protocol::build_info!(), checks)`).
    pub fn for_build(service: &str, build: BuildInfo, checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.ok);
        HealthReport {
            service: service.into(),
            version: build.version.into(),
            commit: build.commit.into(),
            ok,
            checks,
        }
    }

    pub fn status(&self) -> u16 {
        if self.ok {
            200
        } else {
            503
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) -> Check {
        Check {
            name: name.into(),
            ok,
            detail: String::new(),
            elapsed_ms: 1,
        }
    }

    const BUILD: BuildInfo = BuildInfo::new("0.1.0", Some("1a2b3c4d5e6f"));

    #[test]
    fn healthy_only_when_every_check_passes() {
        let good =
            HealthReport::for_build("hold", BUILD, vec![check("s3", true), check("plc", true)]);
        assert!(good.ok);
        assert_eq!(good.status(), 200);
        let bad =
            HealthReport::for_build("hold", BUILD, vec![check("s3", false), check("plc", true)]);
        assert!(!bad.ok);
        assert_eq!(bad.status(), 503);
    }

    #[test]
    fn the_report_names_version_and_commit() {
        let report = serde_json::to_value(HealthReport::for_build("hold", BUILD, vec![])).unwrap();
        assert_eq!(report["version"], "0.1.0");
        assert_eq!(report["commit"], "1a2b3c4d5e6f");
    }

    #[test]
    fn a_build_without_a_commit_says_unknown() {
        assert_eq!(BuildInfo::new("0.1.0", None).commit, UNKNOWN_COMMIT);
        assert_eq!(BuildInfo::new("0.1.0", Some("")).commit, UNKNOWN_COMMIT);
        assert_eq!(BUILD.to_string(), "0.1.0 (commit 1a2b3c4d5e6f)");
    }

    #[test]
    fn the_macro_names_the_calling_crate() {
        let build = crate::build_info!();
        assert_eq!(build.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            build.commit,
            option_env!("ATCR_COMMIT")
                .filter(|c| !c.is_empty())
                .unwrap_or(UNKNOWN_COMMIT)
        );
    }
}
