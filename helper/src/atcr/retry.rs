//! Failures, and retrying the ones that may pass: the network, 5xx, 429.
//! Refusals (4xx) are final.

use atcr_protocol::hold_api::XrpcError;
use std::time::Duration;

/// Attempts per request, the first included.
pub const ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub retryable: bool,
    /// The XRPC error name a hold answered with.
    pub hold_error: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    pub fn fatal(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: false,
            hold_error: None,
        }
    }

    pub fn transport(e: impl std::fmt::Display) -> Failure {
        Failure {
            message: e.to_string(),
            retryable: true,
            hold_error: None,
        }
    }

    pub fn status(status: u16, message: String) -> Failure {
        Failure {
            message,
            retryable: status >= 500 || status == 429 || status == 408,
            hold_error: None,
        }
    }

    pub fn hold(status: u16, error: XrpcError, hold: &str) -> Failure {
        let mut failure = Failure::status(
            status,
            format!(
                "hold {hold} refused ({status} {}): {}",
                error.error, error.message
            ),
        );
        failure.hold_error = Some(error.error);
        failure
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::fatal(e.to_string())
    }
}

/// The wait before attempt `attempt` (1-based, after the first): 0.5 s,
/// 1 s, 2 s, 4 s…, at most 16 s, plus up to a quarter more at random so
/// parallel parts do not retry in step.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = 0.5 * f64::from(1u32 << attempt.saturating_sub(1).min(5));
    Duration::from_secs_f64(base.min(16.0) * (1.0 + 0.25 * jitter.clamp(0.0, 1.0)))
}

fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos % 1000) / 1000.0
}

/// Runs `f` up to `ATTEMPTS` times while it fails in a way that may pass.
pub fn retry<T>(what: &str, mut f: impl FnMut() -> Result<T, Failure>) -> Result<T, Failure> {
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable && attempt < ATTEMPTS => {
                let wait = backoff(attempt, jitter());
                if std::env::var_os("ATCR_DEBUG").is_some() {
                    eprintln!("{what}: {e}; again in {wait:.1?}");
                }
                std::thread::sleep(wait);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(16));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(625));
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        let mut calls = 0;
        let r: Result<(), _> = retry("x", || {
            calls += 1;
            Err(Failure::status(403, "no".into()))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r = retry("x", || {
            calls += 1;
            if calls < 2 {
                Err(Failure::status(503, "busy".into()))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 2);
    }
}
