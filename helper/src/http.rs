//! The little HTTP the helper speaks with an appview: form POSTs and GETs
//! answered with JSON, Basic auth for a device secret.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::time::Duration;

/// The appview's base URL for a registry as Docker names it (`host[:port]`,
/// or a URL): plain http for loopback hosts (the local stack), https
/// otherwise; a URL with a scheme is taken as it is.
pub fn base_url(registry: &str) -> String {
    let r = registry.trim().trim_end_matches('/');
    if r.starts_with("http://") || r.starts_with("https://") {
        return r.split("/v2").next().unwrap_or(r).to_string();
    }
    let host = r.split('/').next().unwrap_or(r);
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map(|(name, _)| name)
        .unwrap_or(host);
    let loopback = name == "localhost" || name == "[::1]" || name.starts_with("127.");
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

/// An answer: its status and its body as JSON (`null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub json: serde_json::Value,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<Answer, String> {
    let mut resp = result.map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Ok(Answer {
        status,
        json: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    })
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

/// POSTs a form, with Basic auth when `auth` is given.
pub fn post_form(
    url: &str,
    form: &[(&str, &str)],
    auth: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let mut req = agent().post(url);
    if let Some((user, password)) = auth {
        req = req.header("Authorization", basic(user, password));
    }
    answer(req.send_form(form.iter().copied()), url)
}

/// GETs `url` with Basic auth.
pub fn get_basic(url: &str, user: &str, password: &str) -> Result<Answer, String> {
    answer(
        agent()
            .get(url)
            .header("Authorization", basic(user, password))
            .call(),
        url,
    )
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert_eq!(base_url("127.0.0.1:8787"), "http://127.0.0.1:8787");
        assert_eq!(base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(base_url("localhost"), "http://localhost");
        assert_eq!(base_url("atcr.io"), "https://atcr.io");
        assert_eq!(
            base_url("registry.example:443"),
            "https://registry.example:443"
        );
        assert_eq!(base_url("https://atcr.io/v2/"), "https://atcr.io");
        assert_eq!(base_url("http://10.0.0.1:80"), "http://10.0.0.1:80");
        assert_eq!(
            base_url("localhost.evil.example"),
            "https://localhost.evil.example"
        );
    }
}
