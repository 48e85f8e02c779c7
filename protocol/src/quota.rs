//! Per-user quotas of a shared hold.
//!
//! A hold that lets every signed-in user write (`HOLD_ALLOW_ALL_CREW`) can
//! cap what each of them stores: `HOLD_QUOTA_BYTES` (the sum of the sizes
//! of their distinct blobs) and `HOLD_QUOTA_BLOBS` (how many distinct
//! blobs). `0` or absent means unlimited. The owner and explicit crew members
//! are never limited. A user is charged once per distinct digest they upload,
//! however often they push it; the hold keeps the charges in D1.
//!
//! This module is the arithmetic and the words; the hold's D1 adapter takes
//! the charge atomically (`INSERT … SELECT … WHERE usage + size <= quota`).

use std::fmt;

/// The limits one user has on a hold. `0` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    pub max_bytes: u64,
    pub max_blobs: u64,
}

/// What one user stores on a hold: the sizes of their distinct blobs,
/// summed, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes: u64,
    pub blobs: u64,
}

/// Which limit a blob would cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes,
    Blobs,
}

/// A blob refused because storing it would cross a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub limit: Limit,
    pub quota: Quota,
    pub usage: Usage,
    /// The refused blob's size, when known.
    pub size: Option<u64>,
}

impl Quota {
    /// Parses the two settings (`HOLD_QUOTA_BYTES`, `HOLD_QUOTA_BLOBS`);
    /// absent or empty is unlimited. Sizes take an optional unit:
    /// `10GB`, `500 MiB`, `1.5TB`.
    pub fn from_settings(bytes: Option<&str>, blobs: Option<&str>) -> Result<Quota, String> {
        let max_bytes = match bytes.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => parse_size(s).map_err(|e| format!("HOLD_QUOTA_BYTES: {e}"))?,
            None => 0,
        };
        let max_blobs = match blobs.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => s
                .parse()
                .map_err(|_| format!("HOLD_QUOTA_BLOBS: '{s}' is not a whole number of blobs"))?,
            None => 0,
        };
        Ok(Quota {
            max_bytes,
            max_blobs,
        })
    }

    /// True when neither limit is set: the hold keeps no usage.
    pub fn is_unlimited(&self) -> bool {
        self.max_bytes == 0 && self.max_blobs == 0
    }

    /// Whether a user with `usage` may add one new blob of `size` (checked
    /// against the byte limit only when the size is known).
    pub fn admit(&self, usage: Usage, size: Option<u64>) -> Result<(), QuotaExceeded> {
        let refuse = |limit| {
            Err(QuotaExceeded {
                limit,
                quota: *self,
                usage,
                size,
            })
        };
        if self.max_blobs > 0 && usage.blobs.saturating_add(1) > self.max_blobs {
            return refuse(Limit::Blobs);
        }
        if let Some(size) = size {
            let over = usage
                .bytes
                .checked_add(size)
                .is_none_or(|total| total > self.max_bytes);
            if self.max_bytes > 0 && over {
                return refuse(Limit::Bytes);
            }
        }
        Ok(())
    }
}

impl QuotaExceeded {
    /// What the user is told, naming them (`who`: a handle, else a DID),
    /// the limit and their usage.
    pub fn message(&self, who: &str) -> String {
        match self.limit {
            Limit::Bytes => {
                let mut text = format!(
                    "storage quota exceeded: {who} has used {} of {} on this hold",
                    format_bytes(self.usage.bytes),
                    format_bytes(self.quota.max_bytes),
                );
                if let Some(size) = self.size {
                    text.push_str(&format!(
                        "; this blob is {} and {} are left",
                        format_bytes(size),
                        format_bytes(self.quota.max_bytes.saturating_sub(self.usage.bytes)),
                    ));
                }
                text
            }
            Limit::Blobs => format!(
                "blob quota exceeded: {who} has stored {} of the {} blobs allowed on this hold",
                self.usage.blobs, self.quota.max_blobs,
            ),
        }
    }
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message("this user"))
    }
}

impl std::error::Error for QuotaExceeded {}

/// A size for people, in SI units with at most one decimal, rounded down
/// (so a usage just under a limit never reads as the limit):
/// `999 bytes`, `9.5 MB`, `10 GB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1_000_000_000_000_000, "PB"),
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "kB"),
    ];
    for (scale, unit) in UNITS {
        if n >= scale {
            let tenths = (n as u128 * 10 / scale as u128) as u64;
            return match tenths % 10 {
                0 => format!("{} {unit}", tenths / 10),
                d => format!("{}.{d} {unit}", tenths / 10),
            };
        }
    }
    match n {
        1 => "1 byte".into(),
        n => format!("{n} bytes"),
    }
}

/// Parses a size setting: a whole number of bytes, or a number with a unit
/// (`kB`, `MB`, `GB`, `TB` are powers of 1000; `KiB`, `MiB`, `GiB`, `TiB`
/// of 1024; `B` is bytes), case-insensitive, spaces allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let invalid = || format!("'{text}' is not a size (e.g. 5368709120, 5GB or 5 GiB)");
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(invalid());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let mut bytes = whole
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))?;
    if !fraction.is_empty() {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
            return Err(invalid());
        }
        let digits: u64 = fraction.parse().map_err(|_| invalid())?;
        let denominator = 10u128.pow(fraction.len() as u32);
        let part = (digits as u128 * scale as u128 / denominator) as u64;
        bytes = bytes
            .checked_add(part)
            .ok_or_else(|| format!("'{text}' is too large"))?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn quota(max_bytes: u64, max_blobs: u64) -> Quota {
        Quota {
            max_bytes,
            max_blobs,
        }
    }

    fn usage(bytes: u64, blobs: u64) -> Usage {
        Usage { bytes, blobs }
    }

    #[test]
    fn settings_parse_with_or_without_units() {
        assert_eq!(Quota::from_settings(None, None).unwrap(), Quota::default());
        assert!(Quota::from_settings(Some(""), Some(" "))
            .unwrap()
            .is_unlimited());
        assert!(Quota::from_settings(Some("0"), Some("0"))
            .unwrap()
            .is_unlimited());
        assert_eq!(
            Quota::from_settings(Some("10MB"), Some("100")).unwrap(),
            quota(10 * MB, 100)
        );
        assert_eq!(
            Quota::from_settings(Some("5368709120"), None).unwrap(),
            quota(5 << 30, 0)
        );
        let bad = Quota::from_settings(Some("ten"), None).unwrap_err();
        assert!(bad.starts_with("HOLD_QUOTA_BYTES:"), "{bad}");
        let bad = Quota::from_settings(None, Some("1.5")).unwrap_err();
        assert!(bad.starts_with("HOLD_QUOTA_BLOBS:"), "{bad}");
    }

    #[test]
    fn sizes_parse() {
        for (text, bytes) in [
            ("0", 0),
            ("1234", 1234),
            ("10B", 10),
            ("1kB", 1_000),
            ("1 KiB", 1024),
            ("10MB", 10 * MB),
            ("10 mb", 10 * MB),
            ("1.5GB", 1_500_000_000),
            ("0.5 MiB", 512 * 1024),
            (".5kb", 500),
            ("2TiB", 2 << 40),
            ("5 GiB", 5 << 30),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "MB",
            "1.2.3MB",
            "-1",
            "12 parsecs",
            "1e9",
            ".",
            "99999999999999TB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes_format_rounded_down() {
        for (bytes, text) in [
            (0, "0 bytes"),
            (1, "1 byte"),
            (999, "999 bytes"),
            (1_000, "1 kB"),
            (1_550, "1.5 kB"),
            (9_500_000, "9.5 MB"),
            (9_999_999, "9.9 MB"),
            (10 * MB, "10 MB"),
            (5 << 30, "5.3 GB"),
            (2_000_000_000_000, "2 TB"),
            (u64::MAX, "18446.7 PB"),
        ] {
            assert_eq!(format_bytes(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn unlimited_admits_anything() {
        let q = Quota::default();
        assert!(q.is_unlimited());
        assert_eq!(q.admit(usage(u64::MAX, u64::MAX), Some(u64::MAX)), Ok(()));
    }

    #[test]
    fn bytes_limit_is_inclusive() {
        let q = quota(10 * MB, 0);
        assert_eq!(
            q.admit(usage(9 * MB, 7), Some(MB)),
            Ok(()),
            "exactly full is fine"
        );
        let refused = q.admit(usage(9 * MB, 7), Some(MB + 1)).unwrap_err();
        assert_eq!(refused.limit, Limit::Bytes);
        assert_eq!(refused.usage, usage(9 * MB, 7));
        // Without a size only the blob count can be judged.
        assert_eq!(q.admit(usage(10 * MB, 7), None), Ok(()));
        // No overflow near the top.
        assert!(quota(u64::MAX, 0)
            .admit(usage(u64::MAX, 0), Some(1))
            .is_err());
    }

    #[test]
    fn blobs_limit_counts_the_new_blob() {
        let q = quota(0, 3);
        assert_eq!(q.admit(usage(0, 2), Some(1)), Ok(()));
        let refused = q.admit(usage(0, 3), Some(1)).unwrap_err();
        assert_eq!(refused.limit, Limit::Blobs);
        assert_eq!(q.admit(usage(0, 3), None).unwrap_err().limit, Limit::Blobs);
    }

    #[test]
    fn messages_name_the_user_the_limit_and_the_usage() {
        let bytes = quota(10 * MB, 0)
            .admit(usage(9_500_000, 4), Some(1_200_000))
            .unwrap_err();
        assert_eq!(
            bytes.message("bob.test"),
            "storage quota exceeded: bob.test has used 9.5 MB of 10 MB on this hold; \
             this blob is 1.2 MB and 500 kB are left"
        );
        let blobs = quota(0, 3).admit(usage(2_000, 3), None).unwrap_err();
        assert_eq!(
            blobs.message("did:plc:bob"),
            "blob quota exceeded: did:plc:bob has stored 3 of the 3 blobs allowed on this hold"
        );
        let unknown_size = QuotaExceeded {
            size: None,
            ..bytes
        };
        assert_eq!(
            unknown_size.message("bob.test"),
            "storage quota exceeded: bob.test has used 9.5 MB of 10 MB on this hold"
        );
    }
}
