//! The messages of the authorization code flow: the PAR request body, the
//! authorization URL, the callback, the token and refresh requests and the
//! checks a token response must pass before its `sub` is trusted.
//!
//! The caller does the HTTP (with a DPoP proof per request, retrying once on
//! `use_dpop_nonce`) and keeps the results; everything here is pure.

use super::client::ClientAuth;
use super::pkce;
use super::scope;
use super::state::AuthState;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("the authorization server refused: {0}")]
    Refused(String),
    #[error("the callback lacks {0}")]
    Missing(&'static str),
    #[error("the callback comes from issuer {found}, but sign-in started at {expected}")]
    Issuer { expected: String, found: String },
    #[error("the token is for {found}, but sign-in was for {expected}")]
    Subject { expected: String, found: String },
    #[error("the token is of type {0}, not DPoP")]
    TokenType(String),
    #[error("the granted scope {0:?} lacks atproto")]
    Scope(String),
}

fn form(fields: Vec<(&str, String)>) -> String {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        body.append_pair(name, &value);
    }
    body.finish()
}

/// A pushed authorization request (RFC 9126), atproto's only way in.
#[derive(Debug, Clone)]
pub struct ParRequest<'a> {
    pub client: &'a ClientAuth,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    /// The sealed [`AuthState`].
    pub state: &'a str,
    pub code_challenge: &'a str,
    /// The handle or DID the user typed, so the server can preselect the account.
    pub login_hint: Option<&'a str>,
}

impl ParRequest<'_> {
    /// The `application/x-www-form-urlencoded` body.
    pub fn body(&self) -> String {
        let mut fields = self.client.form_fields();
        fields.extend([
            ("response_type", "code".to_string()),
            ("redirect_uri", self.redirect_uri.into()),
            ("scope", self.scope.into()),
            ("state", self.state.into()),
            ("code_challenge", self.code_challenge.into()),
            ("code_challenge_method", pkce::METHOD.into()),
        ]);
        if let Some(hint) = self.login_hint {
            fields.push(("login_hint", hint.into()));
        }
        form(fields)
    }
}

/// The PAR response (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParResponse {
    pub request_uri: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Where to send the browser: the authorization endpoint with `client_id`
/// and the PAR `request_uri`.
pub fn authorization_url(
    authorization_endpoint: &str,
    client_id: &str,
    request_uri: &str,
) -> String {
    let query = form(vec![
        ("client_id", client_id.into()),
        ("request_uri", request_uri.into()),
    ]);
    format!("{authorization_endpoint}?{query}")
}

/// The query of the redirect back to the appview.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl CallbackParams {
    pub fn from_query(query: &str) -> Self {
        let mut params = CallbackParams::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        params
    }

    /// The authorization code, once the callback is an answer from the
    /// issuer the state names (RFC 9207: `iss` is required, atproto servers
    /// send it). The state itself was opened by the caller.
    pub fn code_for(&self, state: &AuthState) -> Result<String, FlowError> {
        if let Some(error) = &self.error {
            return Err(FlowError::Refused(match &self.error_description {
                Some(d) => format!("{error}: {d}"),
                None => error.clone(),
            }));
        }
        let iss = self.iss.as_deref().ok_or(FlowError::Missing("iss"))?;
        if iss != state.issuer {
            return Err(FlowError::Issuer {
                expected: state.issuer.clone(),
                found: iss.into(),
            });
        }
        self.code.clone().ok_or(FlowError::Missing("code"))
    }
}

/// The token request that redeems the code (with the PKCE verifier).
pub fn code_request_body(
    client: &ClientAuth,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> String {
    let mut fields = client.form_fields();
    fields.extend([
        ("grant_type", "authorization_code".to_string()),
        ("code", code.into()),
        ("redirect_uri", redirect_uri.into()),
        ("code_verifier", verifier.into()),
    ]);
    form(fields)
}

/// The token request that spends a refresh token (single use: store what it
/// returns before anything else).
pub fn refresh_request_body(client: &ClientAuth, refresh_token: &str) -> String {
    let mut fields = client.form_fields();
    fields.extend([
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", refresh_token.into()),
    ]);
    form(fields)
}

/// The revocation request (RFC 7009) for sign-out.
pub fn revocation_body(client: &ClientAuth, token: &str) -> String {
    let mut fields = client.form_fields();
    fields.push(("token", token.into()));
    form(fields)
}

/// A token endpoint's answer (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    pub sub: String,
}

/// What a token response must match: the account sign-in was for, and the
/// issuer that account's PDS names (re-resolved from the DID for a refresh).
#[derive(Debug, Clone, Copy)]
pub struct TokenExpectations<'a> {
    pub did: &'a str,
    pub issuer: &'a str,
}

/// A session's tokens, as the appview keeps them (encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    pub did: String,
    pub issuer: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub scope: String,
    /// Seconds since the Unix epoch; `None` if the server did not say.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl TokenResponse {
    /// Checks the response of `answered_by`'s token endpoint received at
    /// `now`: `sub` is the DID sign-in was for, the issuer is the one that
    /// DID's PDS names, the token is DPoP-bound and grants `atproto`.
    pub fn check(
        self,
        answered_by: &str,
        expect: &TokenExpectations<'_>,
        now: u64,
    ) -> Result<TokenSet, FlowError> {
        if answered_by != expect.issuer {
            return Err(FlowError::Issuer {
                expected: expect.issuer.into(),
                found: answered_by.into(),
            });
        }
        if self.sub != expect.did {
            return Err(FlowError::Subject {
                expected: expect.did.into(),
                found: self.sub,
            });
        }
        if !self.token_type.eq_ignore_ascii_case("DPoP") {
            return Err(FlowError::TokenType(self.token_type));
        }
        let granted = self.scope.unwrap_or_default();
        if !scope::contains(&granted, scope::ATPROTO) {
            return Err(FlowError::Scope(granted));
        }
        Ok(TokenSet {
            did: self.sub,
            issuer: answered_by.into(),
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            scope: granted,
            expires_at: self.expires_in.map(|s| now + s),
        })
    }
}

/// Whether a token endpoint's refusal means the grant is gone for good
/// (RFC 6749 §5.2 `invalid_grant`: the refresh token was revoked, expired or
/// already spent), so the user must sign in again; any other failure may
/// pass.
pub fn grant_ended(status: u16, body: &[u8]) -> bool {
    (400..500).contains(&status)
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .is_some_and(|e| e == "invalid_grant")
}

impl TokenSet {
    /// Whether to refresh before using the access token (`margin` seconds early).
    pub fn needs_refresh(&self, now: u64, margin: u64) -> bool {
        self.expires_at.is_some_and(|at| now + margin >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::state::tests::state;

    fn public() -> ClientAuth {
        ClientAuth::None {
            client_id: "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=atproto"
                .into(),
        }
    }

    fn pairs(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn par_body_has_every_parameter() {
        let body = ParRequest {
            client: &public(),
            redirect_uri: "http://127.0.0.1/cb",
            scope: scope::APPVIEW,
            state: "sealed",
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            login_hint: Some("alice.test"),
        }
        .body();
        let got = pairs(&body);
        let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("client_id"),
            Some("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=atproto")
        );
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1/cb"));
        assert_eq!(get("scope"), Some(scope::APPVIEW));
        assert_eq!(get("state"), Some("sealed"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("login_hint"), Some("alice.test"));
        assert_eq!(get("client_assertion"), None);
        assert_eq!(
            authorization_url("https://pds.example.com/oauth/authorize", "https://a.example/m.json", "urn:ietf:params:oauth:request_uri:req-1"),
            "https://pds.example.com/oauth/authorize?client_id=https%3A%2F%2Fa.example%2Fm.json&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Areq-1"
        );
    }

    #[test]
    fn token_request_bodies() {
        let confidential = ClientAuth::PrivateKeyJwt {
            client_id: "https://a.example/m.json".into(),
            assertion: "jwt".into(),
        };
        let got = pairs(&code_request_body(
            &confidential,
            "c1",
            "https://a.example/cb",
            "v1",
        ));
        assert!(got.contains(&("grant_type".into(), "authorization_code".into())));
        assert!(got.contains(&("code_verifier".into(), "v1".into())));
        assert!(got.contains(&("client_assertion".into(), "jwt".into())));
        let got = pairs(&refresh_request_body(&public(), "r1"));
        assert!(got.contains(&("grant_type".into(), "refresh_token".into())));
        assert!(got.contains(&("refresh_token".into(), "r1".into())));
        assert!(pairs(&revocation_body(&public(), "t1")).contains(&("token".into(), "t1".into())));
    }

    #[test]
    fn callback_must_come_from_the_expected_issuer() {
        let s = state();
        let ok = CallbackParams::from_query("code=c1&state=x&iss=https%3A%2F%2Fpds.example.com");
        assert_eq!(ok.code_for(&s).unwrap(), "c1");
        let other = CallbackParams::from_query("code=c1&state=x&iss=https%3A%2F%2Fevil.example");
        assert!(matches!(other.code_for(&s), Err(FlowError::Issuer { .. })));
        let no_iss = CallbackParams::from_query("code=c1&state=x");
        assert_eq!(no_iss.code_for(&s), Err(FlowError::Missing("iss")));
        let denied = CallbackParams::from_query("error=access_denied&error_description=User+denied&state=x&iss=https%3A%2F%2Fpds.example.com");
        assert_eq!(
            denied.code_for(&s),
            Err(FlowError::Refused("access_denied: User denied".into()))
        );
    }

    #[test]
    fn only_invalid_grant_ends_a_session() {
        assert!(grant_ended(
            400,
            br#"{"error":"invalid_grant","error_description":"revoked"}"#
        ));
        assert!(!grant_ended(400, br#"{"error":"use_dpop_nonce"}"#));
        assert!(!grant_ended(500, br#"{"error":"invalid_grant"}"#));
        assert!(!grant_ended(400, b"not json"));
    }

    fn response() -> TokenResponse {
        serde_json::from_str(
            r#"{"access_token":"at","token_type":"DPoP","expires_in":3600,"refresh_token":"rt",
                "scope":"atproto repo:io.atcr.manifest","sub":"did:plc:alice"}"#,
        )
        .unwrap()
    }

    #[test]
    fn token_response_is_checked_before_sub_is_trusted() {
        let expect = TokenExpectations {
            did: "did:plc:alice",
            issuer: "https://pds.example.com",
        };
        let set = response()
            .check("https://pds.example.com", &expect, 1_000)
            .unwrap();
        assert_eq!(set.did, "did:plc:alice");
        assert_eq!(set.expires_at, Some(4_600));
        assert!(!set.needs_refresh(1_000, 60));
        assert!(set.needs_refresh(4_550, 60));
        assert!(matches!(
            response().check("https://evil.example", &expect, 0),
            Err(FlowError::Issuer { .. })
        ));
        let bob = TokenResponse {
            sub: "did:plc:bob".into(),
            ..response()
        };
        assert!(matches!(
            bob.check("https://pds.example.com", &expect, 0),
            Err(FlowError::Subject { .. })
        ));
        let bearer = TokenResponse {
            token_type: "Bearer".into(),
            ..response()
        };
        assert_eq!(
            bearer.check("https://pds.example.com", &expect, 0),
            Err(FlowError::TokenType("Bearer".into()))
        );
        let narrow = TokenResponse {
            scope: Some("transition:generic".into()),
            ..response()
        };
        assert!(matches!(
            narrow.check("https://pds.example.com", &expect, 0),
            Err(FlowError::Scope(_))
        ));
    }
}
