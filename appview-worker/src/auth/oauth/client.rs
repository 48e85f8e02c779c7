//! The appview as an OAuth client, chosen by its `PUBLIC_URL`: served over
//! https it is the confidential client whose `client_id` is
//! `<PUBLIC_URL>/oauth-client-metadata.json` and who proves itself with
//! `private_key_jwt`; served over plain http on 127.0.0.1 or [::1] (the
//! local stack) it is the loopback client `http://localhost?redirect_uri=…`,
//! since authorization servers fetch no http client metadata.

use crate::config::AppConfig;
use atcr_protocol::oauth::client::{ClientAuth, ClientMetadata, CALLBACK_PATH};
use worker::{Response, Result};

/// The client's name on the authorization server's consent page.
const CLIENT_NAME: &str = "ATCR";

pub struct OAuthClient<'a> {
    pub metadata: ClientMetadata,
    config: &'a AppConfig,
}

impl<'a> OAuthClient<'a> {
    pub fn for_config(config: &'a AppConfig) -> std::result::Result<Self, String> {
        let url = url::Url::parse(&config.public_url).map_err(|e| e.to_string())?;
        let metadata = if url.scheme() == "http" {
            ClientMetadata::loopback(&format!("{}{CALLBACK_PATH}", config.public_url)).map_err(
                |e| format!("PUBLIC_URL {} cannot sign users in: {e}", config.public_url),
            )?
        } else {
            ClientMetadata::confidential(&config.public_url, CLIENT_NAME)
        };
        Ok(OAuthClient { metadata, config })
    }

    pub fn client_id(&self) -> &str {
        &self.metadata.client_id
    }

    pub fn redirect_uri(&self) -> &str {
        &self.metadata.redirect_uris[0]
    }

    pub fn is_confidential(&self) -> bool {
        self.metadata.is_confidential()
    }

    /// How the next request to `issuer`'s endpoints names the client: a
    /// fresh assertion each time (its `jti` is single use).
    pub fn auth_for(&self, issuer: &str) -> Result<ClientAuth> {
        let client_id = self.client_id().to_string();
        if !self.is_confidential() {
            return Ok(ClientAuth::None { client_id });
        }
        let jti = worker_support::random_id()?;
        let now = worker::Date::now().as_millis() / 1000;
        let assertion = self
            .config
            .oauth_client_key
            .assertion(&client_id, issuer, now, &jti);
        Ok(ClientAuth::PrivateKeyJwt {
            client_id,
            assertion,
        })
    }
}

/// `GET /oauth-client-metadata.json`: the confidential client's document.
pub fn metadata_document(config: &AppConfig) -> Result<Response> {
    cacheable(Response::from_json(&ClientMetadata::confidential(
        &config.public_url,
        CLIENT_NAME,
    ))?)
}

/// `GET /oauth/jwks.json`: the public key client assertions are signed with.
pub fn jwks(config: &AppConfig) -> Result<Response> {
    cacheable(Response::from_json(&config.oauth_client_key.jwks())?)
}

fn cacheable(mut resp: Response) -> Result<Response> {
    resp.headers_mut()
        .set("Cache-Control", "public, max-age=300")?;
    Ok(resp)
}
