//! The appview as an OAuth client: its two identities and how it proves them.
//!
//! - **Confidential** (production): `client_id = <PUBLIC_URL>/oauth-client-metadata.json`,
//!   a document served at that URL naming `jwks_uri = <PUBLIC_URL>/oauth/jwks.json`;
//!   the token endpoint is authenticated with `private_key_jwt` (RFC 7523):
//!   an ES256 assertion with `iss = sub = client_id`, `aud` = the issuer.
//! - **Loopback** (local development): `client_id = http://localhost?redirect_uri=…&scope=…`,
//!   a public client (`token_endpoint_auth_method = none`) whose metadata the
//!   authorization server derives from the `client_id` itself.

use super::jws::{self, PublicJwk};
use super::scope;
use p256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of a client assertion.
pub const ASSERTION_LIFETIME: u64 = 60;

pub const METADATA_PATH: &str = "/oauth-client-metadata.json";
pub const JWKS_PATH: &str = "/oauth/jwks.json";
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// A client metadata document (RFC 7591 names, atproto's required set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    pub application_type: String,
    pub redirect_uris: Vec<String>,
    pub scope: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub dpop_bound_access_tokens: bool,
}

impl ClientMetadata {
    /// The production client, served at `<public_url>/oauth-client-metadata.json`.
    pub fn confidential(public_url: &str, client_name: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        ClientMetadata {
            client_id: format!("{base}{METADATA_PATH}"),
            client_name: Some(client_name.to_string()),
            client_uri: Some(base.to_string()),
            application_type: "web".into(),
            redirect_uris: vec![format!("{base}{CALLBACK_PATH}")],
            scope: scope::APPVIEW.into(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "private_key_jwt".into(),
            token_endpoint_auth_signing_alg: Some("ES256".into()),
            jwks_uri: Some(format!("{base}{JWKS_PATH}")),
            dpop_bound_access_tokens: true,
        }
    }

    /// The loopback development client. `redirect_uri` must be
    /// `http://127.0.0.1[:port]/…` or `http://[::1][:port]/…` (atproto
    /// refuses `localhost` there); the `client_id` carries it and the scope.
    pub fn loopback(redirect_uri: &str) -> Result<Self, String> {
        let url = url::Url::parse(redirect_uri).map_err(|e| format!("bad redirect_uri: {e}"))?;
        let loopback_host = matches!(
            url.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
        if url.scheme() != "http" || !loopback_host {
            return Err(format!(
                "a loopback client's redirect_uri must be http://127.0.0.1 or http://[::1], not {redirect_uri}"
            ));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope::APPVIEW)
            .finish();
        Ok(ClientMetadata {
            client_id: format!("http://localhost?{query}"),
            client_name: None,
            client_uri: None,
            application_type: "native".into(),
            redirect_uris: vec![redirect_uri.to_string()],
            scope: scope::APPVIEW.into(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "none".into(),
            token_endpoint_auth_signing_alg: None,
            jwks_uri: None,
            dpop_bound_access_tokens: true,
        })
    }

    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method == "private_key_jwt"
    }
}

/// The confidential client's signing key, published in its JWKS under `kid`.
#[derive(Clone)]
pub struct ClientKey {
    pub kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({})", self.kid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AssertionHeader {
    alg: String,
    kid: String,
    typ: String,
}

/// RFC 7523 §3 claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

impl ClientKey {
    pub fn new(kid: impl Into<String>, key: SigningKey) -> Self {
        ClientKey {
            kid: kid.into(),
            key,
        }
    }

    /// The public half, as `/oauth/jwks.json` serves it.
    pub fn jwks(&self) -> Jwks {
        let mut jwk = PublicJwk::from_key(self.key.verifying_key());
        jwk.kid = Some(self.kid.clone());
        jwk.alg = Some("ES256".into());
        jwk.use_ = Some("sig".into());
        Jwks { keys: vec![jwk] }
    }

    /// A `private_key_jwt` assertion for one request to `issuer`'s endpoints.
    pub fn assertion(&self, client_id: &str, issuer: &str, now: u64, jti: &str) -> String {
        jws::sign(
            &self.key,
            &AssertionHeader {
                alg: "ES256".into(),
                kid: self.kid.clone(),
                typ: "JWT".into(),
            },
            &AssertionClaims {
                iss: client_id.into(),
                sub: client_id.into(),
                aud: issuer.into(),
                jti: jti.into(),
                iat: now,
                exp: now + ASSERTION_LIFETIME,
            },
        )
    }
}

/// How a request to the token, PAR or revocation endpoint names the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public (loopback) client: `client_id` only.
    None { client_id: String },
    /// A confidential client: `client_id` plus a fresh assertion.
    PrivateKeyJwt {
        client_id: String,
        assertion: String,
    },
}

impl ClientAuth {
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        match self {
            ClientAuth::None { client_id } => vec![("client_id", client_id.clone())],
            ClientAuth::PrivateKeyJwt {
                client_id,
                assertion,
            } => vec![
                ("client_id", client_id.clone()),
                ("client_assertion_type", CLIENT_ASSERTION_TYPE.into()),
                ("client_assertion", assertion.clone()),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidential_metadata_names_its_documents() {
        let m = ClientMetadata::confidential("https://atcr.example/", "ATCR");
        assert_eq!(
            m.client_id,
            "https://atcr.example/oauth-client-metadata.json"
        );
        assert_eq!(
            m.jwks_uri.as_deref(),
            Some("https://atcr.example/oauth/jwks.json")
        );
        assert_eq!(m.redirect_uris, ["https://atcr.example/oauth/callback"]);
        assert_eq!(m.token_endpoint_auth_method, "private_key_jwt");
        assert_eq!(m.token_endpoint_auth_signing_alg.as_deref(), Some("ES256"));
        assert!(m.dpop_bound_access_tokens);
        assert!(m.is_confidential());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(json["scope"], scope::APPVIEW);
    }

    #[test]
    fn loopback_client_id_carries_redirect_and_scope() {
        let m = ClientMetadata::loopback("http://127.0.0.1:8787/oauth/callback").unwrap();
        let url = url::Url::parse(&m.client_id).unwrap();
        assert_eq!(url.origin().ascii_serialization(), "http://localhost");
        assert_eq!(url.path(), "/");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                (
                    "redirect_uri".into(),
                    "http://127.0.0.1:8787/oauth/callback".into()
                ),
                ("scope".into(), scope::APPVIEW.to_string()),
            ]
        );
        assert!(m
            .client_id
            .starts_with("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8787"));
        assert_eq!(m.token_endpoint_auth_method, "none");
        assert!(!m.is_confidential());
        assert!(ClientMetadata::loopback("http://[::1]/cb").is_ok());
        assert!(ClientMetadata::loopback("http://localhost:8787/cb").is_err());
        assert!(ClientMetadata::loopback("https://127.0.0.1/cb").is_err());
        assert!(ClientMetadata::loopback("http://192.168.1.2/cb").is_err());
    }

    #[test]
    fn client_assertion_follows_rfc7523() {
        let key = ClientKey::new("k1", SigningKey::from_slice(&[4u8; 32]).unwrap());
        let client_id = "https://atcr.example/oauth-client-metadata.json";
        let token = key.assertion(client_id, "https://pds.example", 1_700_000_000, "j1");
        let parsed = jws::parse::<serde_json::Value, AssertionClaims>(&token).unwrap();
        let jwks = key.jwks();
        parsed.verify(&jwks.keys[0].to_key().unwrap()).unwrap();
        assert_eq!(parsed.header["alg"], "ES256");
        assert_eq!(parsed.header["kid"], "k1");
        assert_eq!(
            parsed.payload,
            AssertionClaims {
                iss: client_id.into(),
                sub: client_id.into(),
                aud: "https://pds.example".into(),
                jti: "j1".into(),
                iat: 1_700_000_000,
                exp: 1_700_000_060,
            }
        );
        let published = serde_json::to_value(&jwks).unwrap();
        assert_eq!(published["keys"][0]["kid"], "k1");
        assert_eq!(published["keys"][0]["use"], "sig");
        assert!(published["keys"][0].get("d").is_none());
        let auth = ClientAuth::PrivateKeyJwt {
            client_id: client_id.into(),
            assertion: token,
        };
        let fields = auth.form_fields();
        assert_eq!(
            fields[1],
            ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string())
        );
    }
}
