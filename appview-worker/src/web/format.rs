//! How pages write sizes, times, kinds and platforms.

use atcr_protocol::manifest::{DOCKER_LIST, OCI_INDEX};

/// Whether a manifest media type is an index (a multi-platform image).
pub fn is_index(media_type: Option<&str>) -> bool {
    matches!(media_type, Some(OCI_INDEX | DOCKER_LIST))
}

/// What a manifest is, in words: an artifact (of its type), a
/// multi-platform index or an image.
pub fn kind(media_type: Option<&str>, artifact_type: Option<&str>) -> String {
    match (artifact_type, is_index(media_type)) {
        (Some(artifact), _) => format!("artifact ({artifact})"),
        (None, true) => "multi-platform index".into(),
        (None, false) => "image".into(),
    }
}

/// A digest cut to its algorithm and the first 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

pub fn platform_name(p: &serde_json::Value) -> String {
    let part = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    match part("variant") {
        v if v.is_empty() => format!("{}/{}", part("os"), part("architecture")),
        v => format!("{}/{}/{v}", part("os"), part("architecture")),
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Unix milliseconds as a UTC date and time.
pub fn when(ms: f64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// How long ago `ms` was, at `now_ms` (both Unix milliseconds), in the
/// largest whole unit: "just now", "1 minute ago", "3 days ago".
pub fn age(ms: f64, now_ms: f64) -> String {
    let seconds = ((now_ms - ms) / 1000.0).max(0.0) as u64;
    const UNITS: [(u64, &str); 6] = [
        (365 * 86_400, "year"),
        (30 * 86_400, "month"),
        (7 * 86_400, "week"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
    ];
    match UNITS.iter().find(|(size, _)| seconds >= *size) {
        Some((size, unit)) => {
            let n = seconds / size;
            format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
        }
        None => "just now".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    const MINUTE: f64 = 60_000.0;

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        let now = 1_800_000_000_000.0;
        assert_eq!(age(now - 10_000.0, now), "just now");
        assert_eq!(age(now - MINUTE, now), "1 minute ago");
        assert_eq!(age(now - 59.0 * MINUTE, now), "59 minutes ago");
        assert_eq!(age(now - 90.0 * MINUTE, now), "1 hour ago");
        assert_eq!(age(now - 3.0 * 1440.0 * MINUTE, now), "3 days ago");
        assert_eq!(age(now - 15.0 * 1440.0 * MINUTE, now), "2 weeks ago");
        assert_eq!(age(now - 400.0 * 1440.0 * MINUTE, now), "1 year ago");
    }

    #[test]
    fn a_time_ahead_of_the_clock_is_just_now() {
        assert_eq!(age(2_000.0, 1_000.0), "just now");
    }
}
