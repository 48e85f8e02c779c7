//! The `WWW-Authenticate: Bearer` challenge of the Docker token auth spec.
//!
//! A client that gets a 401 reads `realm` (where to ask for a token),
//! `service` (the audience to name) and `scope` (what the request needed).

/// A Bearer challenge; `to_header` renders the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: String,
    /// e.g. `repository:alice.test/app:pull,push`
    pub scope: Option<String>,
    /// `insufficient_scope` or `invalid_token`, when a token was presented.
    pub error: Option<String>,
}

impl BearerChallenge {
    pub fn new(realm: impl Into<String>, service: impl Into<String>) -> Self {
        BearerChallenge {
            realm: realm.into(),
            service: service.into(),
            scope: None,
            error: None,
        }
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    pub fn to_header(&self) -> String {
        let mut out = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            quote(&self.realm),
            quote(&self.service)
        );
        if let Some(scope) = &self.scope {
            out.push_str(&format!(",scope=\"{}\"", quote(scope)));
        }
        if let Some(error) = &self.error {
            out.push_str(&format!(",error=\"{}\"", quote(error)));
        }
        out
    }
}

/// Escapes the two characters a quoted-string may not hold bare.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_realm_and_service() {
        let c = BearerChallenge::new("https://atcr.example/auth/token", "atcr.example");
        assert_eq!(
            c.to_header(),
            r#"Bearer realm="https://atcr.example/auth/token",service="atcr.example""#
        );
    }

    #[test]
    fn renders_scope_and_error_in_order() {
        let c = BearerChallenge::new("http://127.0.0.1:8787/auth/token", "127.0.0.1:8787")
            .with_scope("repository:alice.test/app:pull,push")
            .with_error("insufficient_scope");
        assert_eq!(
            c.to_header(),
            r#"Bearer realm="http://127.0.0.1:8787/auth/token",service="127.0.0.1:8787",scope="repository:alice.test/app:pull,push",error="insufficient_scope""#
        );
    }

    #[test]
    fn quotes_are_escaped() {
        let c = BearerChallenge::new("r\"x", "s\\y");
        assert_eq!(c.to_header(), r#"Bearer realm="r\"x",service="s\\y""#);
    }
}
