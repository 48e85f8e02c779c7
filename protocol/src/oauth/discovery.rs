//! Finding and vetting a user's authorization server: the PDS's
//! `/.well-known/oauth-protected-resource` names exactly one authorization
//! server, whose `/.well-known/oauth-authorization-server` metadata must meet
//! what atproto OAuth requires before the appview talks to it.

use serde::{Deserialize, Serialize};

pub const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";
pub const AUTHORIZATION_SERVER_PATH: &str = "/.well-known/oauth-authorization-server";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{0} is not an https origin (or a loopback http one)")]
    NotAnOrigin(String),
    #[error("the PDS's resource metadata names resource {0}, not the PDS")]
    Resource(String),
    #[error("the PDS must name exactly one authorization server, it names {0}")]
    AuthorizationServers(usize),
    #[error("authorization server metadata says issuer {found}, fetched from {expected}")]
    Issuer { expected: String, found: String },
    #[error("authorization server does not meet atproto OAuth: {0}")]
    Unsupported(&'static str),
}

/// The URL of a well-known document at the origin of `base`.
pub fn well_known(base: &str, path: &str) -> Result<String, DiscoveryError> {
    Ok(format!("{}{path}", origin(base)?))
}

/// `scheme://host[:port]` of a URL that may serve OAuth documents: https, or
/// http on a loopback host (the local stack).
pub fn origin(url: &str) -> Result<String, DiscoveryError> {
    let parsed = url::Url::parse(url).map_err(|_| DiscoveryError::NotAnOrigin(url.into()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(DiscoveryError::NotAnOrigin(url.into())),
    }
    Ok(parsed.origin().ascii_serialization())
}

/// `/.well-known/oauth-protected-resource` (RFC 9728), the fields atproto uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
}

impl ProtectedResourceMetadata {
    /// The issuer of the PDS at `pds_url`: the one and only authorization server.
    pub fn authorization_server(&self, pds_url: &str) -> Result<String, DiscoveryError> {
        if origin(&self.resource)? != origin(pds_url)? {
            return Err(DiscoveryError::Resource(self.resource.clone()));
        }
        match self.authorization_servers.as_slice() {
            [issuer] => Ok(origin(issuer)?),
            other => Err(DiscoveryError::AuthorizationServers(other.len())),
        }
    }
}

/// `/.well-known/oauth-authorization-server` (RFC 8414), the fields atproto uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == value)
}

impl AuthorizationServerMetadata {
    /// Checks the document fetched from `issuer`'s well-known URL: `issuer`
    /// names that very origin, PAR is required and offered, PKCE S256, DPoP
    /// with ES256, the `atproto` scope, the code flow with refresh, and the
    /// client authentication this client uses (`private_key_jwt` with ES256
    /// when `confidential`, else `none`).
    pub fn validate(&self, issuer: &str, confidential: bool) -> Result<(), DiscoveryError> {
        let expected = origin(issuer)?;
        if self.issuer != expected {
            return Err(DiscoveryError::Issuer {
                expected,
                found: self.issuer.clone(),
            });
        }
        let require = |ok: bool, what: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(DiscoveryError::Unsupported(what))
            }
        };
        require(
            self.require_pushed_authorization_requests
                && self.pushed_authorization_request_endpoint.is_some(),
            "PAR must be required and offered",
        )?;
        require(
            self.authorization_response_iss_parameter_supported,
            "the iss parameter in authorization responses",
        )?;
        require(
            self.client_id_metadata_document_supported,
            "client metadata documents as client_id",
        )?;
        require(has(&self.scopes_supported, "atproto"), "the atproto scope")?;
        require(
            has(&self.response_types_supported, "code"),
            "response_type code",
        )?;
        require(
            has(&self.grant_types_supported, "authorization_code")
                && has(&self.grant_types_supported, "refresh_token"),
            "authorization_code and refresh_token grants",
        )?;
        require(
            has(&self.code_challenge_methods_supported, "S256"),
            "PKCE S256",
        )?;
        require(
            has(&self.dpop_signing_alg_values_supported, "ES256"),
            "DPoP with ES256",
        )?;
        if confidential {
            require(
                has(
                    &self.token_endpoint_auth_methods_supported,
                    "private_key_jwt",
                ) && has(
                    &self.token_endpoint_auth_signing_alg_values_supported,
                    "ES256",
                ),
                "private_key_jwt with ES256",
            )?;
        } else {
            require(
                has(&self.token_endpoint_auth_methods_supported, "none"),
                "public clients (auth method none)",
            )?;
        }
        for endpoint in [
            Some(&self.authorization_endpoint),
            Some(&self.token_endpoint),
            self.pushed_authorization_request_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            origin(endpoint).map_err(|_| DiscoveryError::Unsupported("https endpoints"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The shape @atproto/oauth-provider serves (fields it does not matter
    /// to us left out).
    pub(crate) fn server_metadata() -> AuthorizationServerMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://pds.example.com",
            "scopes_supported": ["atproto", "transition:email", "transition:generic", "transition:chat.bsky"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "require_pushed_authorization_requests": true,
            "pushed_authorization_request_endpoint": "https://pds.example.com/oauth/par",
            "token_endpoint": "https://pds.example.com/oauth/token",
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "ES256K"],
            "revocation_endpoint": "https://pds.example.com/oauth/revoke",
            "authorization_endpoint": "https://pds.example.com/oauth/authorize",
            "dpop_signing_alg_values_supported": ["RS256", "ES256", "ES256K"],
            "client_id_metadata_document_supported": true,
            "protected_resources": ["https://pds.example.com"]
        }))
        .unwrap()
    }

    #[test]
    fn the_pds_names_one_authorization_server() {
        let doc: ProtectedResourceMetadata = serde_json::from_str(
            r#"{"resource":"https://pds.example.com","authorization_servers":["https://entryway.example.com"],
                "scopes_supported":[],"bearer_methods_supported":["header"]}"#,
        )
        .unwrap();
        assert_eq!(
            doc.authorization_server("https://pds.example.com/")
                .unwrap(),
            "https://entryway.example.com"
        );
        assert!(matches!(
            doc.authorization_server("https://other.example.com"),
            Err(DiscoveryError::Resource(_))
        ));
        let two = ProtectedResourceMetadata {
            authorization_servers: vec!["https://a.example".into(), "https://b.example".into()],
            ..doc.clone()
        };
        assert_eq!(
            two.authorization_server("https://pds.example.com"),
            Err(DiscoveryError::AuthorizationServers(2))
        );
        assert_eq!(
            well_known("http://127.0.0.1:2583/xrpc", PROTECTED_RESOURCE_PATH).unwrap(),
            "http://127.0.0.1:2583/.well-known/oauth-protected-resource"
        );
        assert!(well_known("http://pds.example.com", PROTECTED_RESOURCE_PATH).is_err());
    }

    #[test]
    fn authorization_server_metadata_is_vetted() {
        let good = server_metadata();
        good.validate("https://pds.example.com", true).unwrap();
        good.validate("https://pds.example.com/", false).unwrap();
        assert!(matches!(
            good.validate("https://evil.example.com", true),
            Err(DiscoveryError::Issuer { .. })
        ));
        type Breakage = (&'static str, fn(&mut AuthorizationServerMetadata));
        let broken: [Breakage; 7] = [
            ("no PAR", |m| {
                m.require_pushed_authorization_requests = false
            }),
            ("no PAR endpoint", |m| {
                m.pushed_authorization_request_endpoint = None
            }),
            ("no ES256 DPoP", |m| {
                m.dpop_signing_alg_values_supported = vec!["RS256".into()]
            }),
            ("no atproto scope", |m| {
                m.scopes_supported = vec!["openid".into()]
            }),
            ("no S256", |m| {
                m.code_challenge_methods_supported = vec!["plain".into()]
            }),
            ("no iss parameter", |m| {
                m.authorization_response_iss_parameter_supported = false
            }),
            ("no private_key_jwt", |m| {
                m.token_endpoint_auth_methods_supported = vec!["none".into()]
            }),
        ];
        for (what, break_it) in broken {
            let mut m = good.clone();
            break_it(&mut m);
            assert!(
                matches!(
                    m.validate("https://pds.example.com", true),
                    Err(DiscoveryError::Unsupported(_))
                ),
                "{what} was accepted"
            );
        }
    }
}
