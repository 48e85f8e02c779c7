//! Device login (RFC 8628, the OAuth 2.0 Device Authorization Grant, in
//! shape): the credential helper asks for a device code, the user approves
//! its short user code in a browser, and the helper's polling ends with a
//! long-lived device secret that `/auth/token` accepts as a password.
//!
//! Pure logic: the codes and the secret are made from random bytes the
//! caller passes in, D1 keeps only their SHA-256 ([`hash`]), and what a
//! poll answers follows from the stored state and the time ([`poll`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The grant type a device token request names (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Every device secret starts so: `/auth/token` tells it from an app password.
pub const SECRET_PREFIX: &str = "atcr_dev_";
/// How long a user has to approve a code, unless configured otherwise.
pub const DEFAULT_CODE_SECONDS: u64 = 600;
/// How often the helper may poll (RFC 8628 §3.2 `interval`).
pub const POLL_INTERVAL_SECS: u64 = 5;
/// What a `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_SECS: u64 = 5;

/// Twenty consonants, as RFC 8628 §6.1 suggests: no vowels (no words), no
/// digits, nothing that reads like another character (no 0/O, 1/I/L).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKMNPQRSTVWXYZ";
const USER_CODE_LEN: usize = 8;

/// A user code (`WDJB-MJHT`) from 8 random bytes: 20^8 ≈ 2.6·10^10 codes,
/// 34 bits against guessing within a code's few minutes.
pub fn user_code(random: [u8; 8]) -> String {
    let mut n = u64::from_le_bytes(random);
    let mut chars = Vec::with_capacity(USER_CODE_LEN + 1);
    for i in 0..USER_CODE_LEN {
        if i == USER_CODE_LEN / 2 {
            chars.push(b'-');
        }
        chars.push(USER_CODE_ALPHABET[(n % 20) as usize]);
        n /= 20;
    }
    String::from_utf8(chars).expect("ASCII")
}

/// A user code as typed (any case, with or without the dash or spaces) in
/// its canonical form, or `None` if it cannot be one.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let chars: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b'-' | b' ' | b'\t'))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if chars.len() != USER_CODE_LEN || !chars.iter().all(|c| USER_CODE_ALPHABET.contains(c)) {
        return None;
    }
    let (a, b) = chars.split_at(USER_CODE_LEN / 2);
    Some(format!(
        "{}-{}",
        std::str::from_utf8(a).ok()?,
        std::str::from_utf8(b).ok()?
    ))
}

/// The device code the helper polls with: 32 random bytes, base64url.
pub fn device_code(random: [u8; 32]) -> String {
    B64URL.encode(random)
}

/// A device secret: `atcr_dev_` and 32 random bytes, base64url.
pub fn device_secret(random: [u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", B64URL.encode(random))
}

/// Whether a password is a device secret (not an app password).
pub fn is_device_secret(password: &str) -> bool {
    password.starts_with(SECRET_PREFIX)
}

/// What D1 keeps of a device code or secret: its SHA-256, hex. Both are
/// 256 random bits, so no salt or slow hash is needed.
pub fn hash(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Longest device name kept; longer ones are cut.
const MAX_NAME_CHARS: usize = 80;

/// A device name as given, trimmed, without control characters and cut
/// to 80 characters, or `fallback` when nothing is left.
pub fn device_name(given: Option<&str>, fallback: &str) -> String {
    let name: String = given
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        fallback.into()
    } else {
        name
    }
}

/// Where a device code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeState {
    /// Waiting for the user.
    Pending,
    /// The user approved it; the next poll gets the secret.
    Approved,
    /// The user refused it.
    Denied,
    /// Its secret was handed out: it answers nothing more.
    Spent,
}

impl CodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeState::Pending => "pending",
            CodeState::Approved => "approved",
            CodeState::Denied => "denied",
            CodeState::Spent => "spent",
        }
    }

    pub fn parse(s: &str) -> Option<CodeState> {
        Some(match s {
            "pending" => CodeState::Pending,
            "approved" => CodeState::Approved,
            "denied" => CodeState::Denied,
            "spent" => CodeState::Spent,
            _ => return None,
        })
    }
}

/// A stored device code, as a poll sees it. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub state: CodeState,
    pub expires_at: u64,
    pub last_polled_at: Option<u64>,
}

/// What a poll of the token endpoint answers (RFC 8628 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// Approved: hand out a secret (once: the caller moves the row to
    /// `spent` only if it is still `approved`).
    Issue,
    Pending,
    SlowDown,
    Expired,
    Denied,
    /// Unknown, or spent already.
    InvalidGrant,
}

impl PollOutcome {
    /// The `error` of a refusal (`None` for [`PollOutcome::Issue`]).
    pub fn error(self) -> Option<&'static str> {
        Some(match self {
            PollOutcome::Issue => return None,
            PollOutcome::Pending => "authorization_pending",
            PollOutcome::SlowDown => "slow_down",
            PollOutcome::Expired => "expired_token",
            PollOutcome::Denied => "access_denied",
            PollOutcome::InvalidGrant => "invalid_grant",
        })
    }

    /// Its `error_description`: what the helper shows the user.
    pub fn description(self) -> &'static str {
        match self {
            PollOutcome::Issue => "",
            PollOutcome::Pending => "the user has not approved this device yet",
            PollOutcome::SlowDown => "polling too often: wait longer between requests",
            PollOutcome::Expired => "the device code has expired: start the login again",
            PollOutcome::Denied => "the user denied this device",
            PollOutcome::InvalidGrant => {
                "this device code is unknown or was used already: start the login again"
            }
        }
    }
}

/// What a poll at `now` of `code` (`None`: no such code) answers. A
/// decision (approved, denied) made in time stands after expiry; a
/// pending code polled within the interval of its last poll is told to
/// slow down.
pub fn poll(code: Option<&StoredCode>, now: u64, interval_secs: u64) -> PollOutcome {
    let Some(code) = code else {
        return PollOutcome::InvalidGrant;
    };
    match code.state {
        CodeState::Spent => PollOutcome::InvalidGrant,
        CodeState::Denied => PollOutcome::Denied,
        CodeState::Approved if now < code.expires_at => PollOutcome::Issue,
        _ if now >= code.expires_at => PollOutcome::Expired,
        CodeState::Approved => PollOutcome::Issue,
        CodeState::Pending => match code.last_polled_at {
            Some(last) if now < last + interval_secs * 1000 => PollOutcome::SlowDown,
            _ => PollOutcome::Pending,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_unambiguous_letters_with_a_dash() {
        for seed in [[0u8; 8], [0xff; 8], [1, 2, 3, 4, 5, 6, 7, 8]] {
            let code = user_code(seed);
            assert_eq!(code.len(), 9, "{code}");
            assert_eq!(&code[4..5], "-");
            assert!(code
                .bytes()
                .filter(|&b| b != b'-')
                .all(|b| USER_CODE_ALPHABET.contains(&b)));
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
        }
        assert_ne!(user_code([1; 8]), user_code([2; 8]));
        for c in b"AEIOU01L" {
            assert!(!USER_CODE_ALPHABET.contains(c), "{}", *c as char);
        }
    }

    #[test]
    fn user_codes_are_read_as_people_type_them() {
        assert_eq!(
            normalize_user_code("wdjb-mjht").as_deref(),
            Some("WDJB-MJHT")
        );
        assert_eq!(
            normalize_user_code("WDJBMJHT").as_deref(),
            Some("WDJB-MJHT")
        );
        assert_eq!(
            normalize_user_code(" wdjb mjht ").as_deref(),
            Some("WDJB-MJHT")
        );
        assert_eq!(normalize_user_code("WDJB-MJH"), None);
        assert_eq!(normalize_user_code("WDJB-MJHTX"), None);
        assert_eq!(normalize_user_code("WDJB-MJH0"), None);
        assert_eq!(normalize_user_code("AEIO-UAEI"), None);
        assert_eq!(normalize_user_code(""), None);
    }

    #[test]
    fn secrets_and_codes_and_their_hashes() {
        let secret = device_secret([7; 32]);
        assert!(secret.starts_with("atcr_dev_"));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 43);
        assert!(is_device_secret(&secret));
        assert!(!is_device_secret("abcd-efgh-ijkl-mnop"));
        assert_eq!(device_code([7; 32]).len(), 43);
        assert_ne!(device_code([7; 32]), device_code([8; 32]));
        // RFC 6234's test vector for "abc".
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash(&secret), secret);
    }

    fn code(state: CodeState, last_polled_at: Option<u64>) -> StoredCode {
        StoredCode {
            state,
            expires_at: 600_000,
            last_polled_at,
        }
    }

    #[test]
    fn polls_follow_the_state_and_the_clock() {
        use CodeState::{Approved, Spent};
        use PollOutcome::{Expired, InvalidGrant, Issue, SlowDown};
        let table: &[(Option<StoredCode>, u64, PollOutcome)] = &[
            (None, 1, InvalidGrant),
            (
                Some(code(CodeState::Pending, None)),
                1_000,
                PollOutcome::Pending,
            ),
            (Some(code(CodeState::Pending, Some(1_000))), 5_999, SlowDown),
            (
                Some(code(CodeState::Pending, Some(1_000))),
                6_000,
                PollOutcome::Pending,
            ),
            (Some(code(CodeState::Pending, None)), 600_000, Expired),
            (Some(code(Approved, Some(1_000))), 2_000, Issue),
            (Some(code(Approved, None)), 600_000, Expired),
            (
                Some(code(CodeState::Denied, None)),
                2_000,
                PollOutcome::Denied,
            ),
            (
                Some(code(CodeState::Denied, None)),
                700_000,
                PollOutcome::Denied,
            ),
            (Some(code(Spent, None)), 2_000, InvalidGrant),
            (Some(code(Spent, None)), 700_000, InvalidGrant),
        ];
        for (stored, now, want) in table {
            assert_eq!(poll(stored.as_ref(), *now, 5), *want, "{stored:?} at {now}");
        }
    }

    #[test]
    fn device_names_are_trimmed_cut_and_defaulted() {
        assert_eq!(device_name(Some("  laptop "), "x"), "laptop");
        assert_eq!(device_name(Some(""), "x"), "x");
        assert_eq!(device_name(None, "x"), "x");
        assert_eq!(device_name(Some("a\nb"), "x"), "ab");
        assert_eq!(device_name(Some(&"n".repeat(200)), "x").len(), 80);
    }

    #[test]
    fn refusals_carry_rfc_8628_error_codes() {
        assert_eq!(PollOutcome::Issue.error(), None);
        assert_eq!(PollOutcome::Pending.error(), Some("authorization_pending"));
        assert_eq!(PollOutcome::SlowDown.error(), Some("slow_down"));
        assert_eq!(PollOutcome::Expired.error(), Some("expired_token"));
        assert_eq!(PollOutcome::Denied.error(), Some("access_denied"));
        assert_eq!(PollOutcome::InvalidGrant.error(), Some("invalid_grant"));
        for s in ["pending", "approved", "denied", "spent"] {
            assert_eq!(CodeState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(CodeState::parse("other"), None);
    }
}
