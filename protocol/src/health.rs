//! The health report both workers serve at `/health`.
//!
//! Each dependency is probed and reported by name; the report is healthy only
//! when every probe passed, and the HTTP status says so (200 or 503), so a
//! load balancer needs no JSON parsing.

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub service: String,
    pub version: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl HealthReport {
    pub fn new(service: &str, version: &str, checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.ok);
        HealthReport {
            service: service.into(),
            version: version.into(),
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

    #[test]
    fn healthy_only_when_every_check_passes() {
        let good = HealthReport::new("hold", "0.1.0", vec![check("s3", true), check("plc", true)]);
        assert!(good.ok);
        assert_eq!(good.status(), 200);
        let bad = HealthReport::new(
            "hold",
            "0.1.0",
            vec![check("s3", false), check("plc", true)],
        );
        assert!(!bad.ok);
        assert_eq!(bad.status(), 503);
    }
}
