//! ATProto identifiers (DIDs, handles) and DID documents.
//!
//! Raw strings stop at the request edge: everything past it takes a `Did` or a
//! `Handle`, which can only be built from text that passed the syntax rules of
//! the ATProto identity specs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("'{0}' is not a valid DID")]
    InvalidDid(String),
    #[error("'{0}' is not a valid handle")]
    InvalidHandle(String),
    #[error("'{0}' is not an http(s) URL with a host")]
    InvalidUrl(String),
}

/// A decentralized identifier such as `did:plc:ewvi7nxzyoun6zhxrhs64oiz` or `did:web:hold.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct Did(String);

impl Did {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DID method: `plc`, `web`, ...
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }

    /// `did:web` for the host (and port) of an http(s) URL. Ports are
    /// percent-encoded as the did:web method requires (`did:web:localhost%3A8080`).
    pub fn web_for_url(url: &str) -> Result<Did, IdentityError> {
        let parsed = url::Url::parse(url).map_err(|_| IdentityError::InvalidUrl(url.into()))?;
        let host = match (parsed.scheme(), parsed.host_str()) {
            ("http" | "https", Some(host)) => host,
            _ => return Err(IdentityError::InvalidUrl(url.into())),
        };
        let id = match parsed.port() {
            // ATProto allows a port in did:web only for `localhost` (a PDS
            // mints no service-auth token for any other): a loopback
            // address with a port is named as localhost, the same machine.
            Some(port) if matches!(host, "127.0.0.1" | "[::1]") => {
                format!("did:web:localhost%3A{port}")
            }
            Some(port) => format!("did:web:{host}%3A{port}"),
            None => format!("did:web:{host}"),
        };
        id.parse()
    }

    /// Where this DID's document is published: the PLC directory for
    /// `did:plc`, the host's `/.well-known/did.json` for `did:web`. Loopback
    /// did:web hosts are fetched over plain http so a local stack works.
    pub fn document_url(&self, plc_url: &str) -> Option<String> {
        match self.method() {
            "plc" => Some(format!("{}/{}", plc_url.trim_end_matches('/'), self.0)),
            "web" => {
                let host = self.0.strip_prefix("did:web:")?;
                if host.contains(':') {
                    return None; // path-based did:web is not used by ATProto
                }
                let host = host.replace("%3A", ":");
                let name = host
                    .rsplit_once(':')
                    .map_or(host.as_str(), |(name, _port)| name);
                let scheme = if matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
                    "http"
                } else {
                    "https"
                };
                Some(format!("{scheme}://{host}/.well-known/did.json"))
            }
            _ => None,
        }
    }
}

impl FromStr for Did {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || IdentityError::InvalidDid(s.into());
        let rest = s.strip_prefix("did:").ok_or_else(invalid)?;
        let (method, id) = rest.split_once(':').ok_or_else(invalid)?;
        let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_lowercase());
        let id_ok = !id.is_empty()
            && !id.ends_with(':')
            && !id.ends_with('%')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:%-".contains(&b));
        if !method_ok || !id_ok || s.len() > 2048 {
            return Err(invalid());
        }
        Ok(Did(s.to_string()))
    }
}

impl TryFrom<String> for Did {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Did> for String {
    fn from(d: Did) -> String {
        d.0
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ATProto handle such as `alice.bsky.social` (kept lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Handle(String);

impl Handle {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DNS name whose TXT record (`did=<did>`) names this handle's DID.
    pub fn dns_txt_name(&self) -> String {
        format!("_atproto.{}", self.0)
    }
}

/// The DID in a DNS-over-HTTPS JSON answer for `_atproto.<handle>` TXT:
/// exactly one `did=` record counts (the ATProto handle spec ignores the
/// name when there are several). TXT data arrives quoted, possibly split
/// into several quoted strings.
pub fn did_from_dns_answer(answer: &serde_json::Value) -> Option<Did> {
    let records: Vec<String> = answer["Answer"]
        .as_array()?
        .iter()
        .filter(|r| r["type"].as_u64() == Some(16))
        .filter_map(|r| r["data"].as_str())
        .map(|data| data.split('"').skip(1).step_by(2).collect::<String>())
        .filter(|txt| txt.starts_with("did="))
        .collect();
    match records.as_slice() {
        [one] => one["did=".len()..].parse().ok(),
        _ => None,
    }
}

impl FromStr for Handle {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || IdentityError::InvalidHandle(s.into());
        if s.len() > 253 {
            return Err(invalid());
        }
        let labels: Vec<&str> = s.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid());
        }
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(invalid());
            }
        }
        // The top-level domain may not start with a digit.
        if labels
            .last()
            .is_some_and(|tld| tld.as_bytes()[0].is_ascii_digit())
        {
            return Err(invalid());
        }
        Ok(Handle(s.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for Handle {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Handle> for String {
    fn from(h: Handle) -> String {
        h.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parts of a DID document ATCR reads and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    #[serde(rename = "@context", default)]
    pub context: Vec<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_known_as: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_method: Vec<VerificationMethod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub controller: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_multibase: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub service_endpoint: String,
}

/// Service id and type under which a hold announces itself.
pub const HOLD_SERVICE_ID: &str = "#atcr_hold";
pub const HOLD_SERVICE_TYPE: &str = "AtcrHoldService";
/// Service id under which a DID document names its PDS.
pub const PDS_SERVICE_ID: &str = "#atproto_pds";

impl DidDocument {
    /// The document a hold serves at `/.well-known/did.json`.
    pub fn for_hold(did: &Did, endpoint: &str, signing_key_multibase: Option<&str>) -> Self {
        let mut context = vec!["https://www.w3.org/ns/did/v1".to_string()];
        let verification_method = match signing_key_multibase {
            Some(key) => {
                context.push("https://w3id.org/security/multikey/v1".to_string());
                vec![VerificationMethod {
                    id: format!("{did}#atproto"),
                    kind: "Multikey".into(),
                    controller: did.to_string(),
                    public_key_multibase: Some(key.to_string()),
                }]
            }
            None => vec![],
        };
        DidDocument {
            context,
            id: did.to_string(),
            also_known_as: vec![],
            verification_method,
            service: vec![Service {
                id: HOLD_SERVICE_ID.into(),
                kind: HOLD_SERVICE_TYPE.into(),
                service_endpoint: endpoint.trim_end_matches('/').to_string(),
            }],
        }
    }

    /// The endpoint of the service with the given fragment id (`#atproto_pds`).
    /// Ids may be written relative (`#x`) or absolute (`did:...#x`).
    pub fn service_endpoint(&self, fragment: &str) -> Option<&str> {
        self.service
            .iter()
            .find(|s| s.id == fragment || s.id.strip_prefix(self.id.as_str()) == Some(fragment))
            .map(|s| s.service_endpoint.as_str())
    }

    pub fn pds_endpoint(&self) -> Option<&str> {
        self.service_endpoint(PDS_SERVICE_ID)
    }

    /// The handle claimed in `alsoKnownAs` (`at://alice.test`).
    pub fn handle(&self) -> Option<Handle> {
        self.also_known_as
            .iter()
            .find_map(|aka| aka.strip_prefix("at://"))
            .and_then(|h| h.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_name_one_did() {
        let answer = |datas: &[&str]| {
            serde_json::json!({ "Status": 0, "Answer": datas.iter().map(|d| serde_json::json!({
                "name": "_atproto.alice.test.", "type": 16, "TTL": 300, "data": d,
            })).collect::<Vec<_>>() })
        };
        let handle: Handle = "alice.test".parse().unwrap();
        assert_eq!(handle.dns_txt_name(), "_atproto.alice.test");
        assert_eq!(
            did_from_dns_answer(&answer(&["\"did=did:plc:abc123\""])).map(String::from),
            Some("did:plc:abc123".to_string())
        );
        // A record split into several strings is joined first.
        assert_eq!(
            did_from_dns_answer(&answer(&["\"did=did:plc:\" \"abc123\""])).map(String::from),
            Some("did:plc:abc123".to_string())
        );
        assert_eq!(did_from_dns_answer(&answer(&["\"v=spf1 -all\""])), None);
        assert_eq!(
            did_from_dns_answer(&answer(&["\"did=did:plc:a\"", "\"did=did:plc:b\""])),
            None
        );
        assert_eq!(
            did_from_dns_answer(&serde_json::json!({ "Status": 3 })),
            None
        );
    }

    #[test]
    fn valid_dids() {
        for s in [
            "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            "did:web:hold.example.com",
            "did:web:localhost%3A8080",
            "did:method:val:two",
            "did:m:v",
            "did:method:%3A",
        ] {
            assert!(s.parse::<Did>().is_ok(), "{s}");
        }
    }

    #[test]
    fn invalid_dids() {
        for s in [
            "",
            "did",
            "did:",
            "did:plc",
            "did:plc:",
            "DID:plc:abc",
            "did:PLC:abc",
            "did:plc:abc:",
            "did:plc:abc%",
            "did:plc:a b",
            "did:plc:abc/def",
            "did:plc:abc#frag",
        ] {
            assert!(s.parse::<Did>().is_err(), "{s}");
        }
    }

    #[test]
    fn valid_and_invalid_handles() {
        for s in [
            "alice.test",
            "jay.bsky.social",
            "8.cn",
            "a-b.c-d.example",
            "XN--LADA.test",
        ] {
            assert!(s.parse::<Handle>().is_ok(), "{s}");
        }
        for s in [
            "", "alice", "alice.", ".alice", "-a.test", "a-.test", "a..test", "a.1test",
            "a_b.test", "a b.test",
        ] {
            assert!(s.parse::<Handle>().is_err(), "{s}");
        }
        assert_eq!(
            "Alice.Test".parse::<Handle>().unwrap().as_str(),
            "alice.test"
        );
    }

    #[test]
    fn did_web_from_urls() {
        assert_eq!(
            Did::web_for_url("https://hold.example.com")
                .unwrap()
                .as_str(),
            "did:web:hold.example.com"
        );
        assert_eq!(
            Did::web_for_url("http://127.0.0.1:8787/").unwrap().as_str(),
            "did:web:localhost%3A8787"
        );
        assert_eq!(
            Did::web_for_url("http://localhost:8787").unwrap().as_str(),
            "did:web:localhost%3A8787"
        );
        assert_eq!(
            Did::web_for_url("http://[::1]:8787").unwrap().as_str(),
            "did:web:localhost%3A8787"
        );
        assert_eq!(
            Did::web_for_url("http://10.0.0.2:8787").unwrap().as_str(),
            "did:web:10.0.0.2%3A8787"
        );
        assert!(Did::web_for_url("ftp://x.example").is_err());
        let did: Did = "did:web:127.0.0.1%3A8787".parse().unwrap();
        assert_eq!(did.method(), "web");
        assert_eq!(
            did.document_url("").unwrap(),
            "http://127.0.0.1:8787/.well-known/did.json"
        );
        let did: Did = "did:web:hold.example.com".parse().unwrap();
        assert_eq!(
            did.document_url("").unwrap(),
            "https://hold.example.com/.well-known/did.json"
        );
        let did: Did = "did:plc:abc".parse().unwrap();
        assert_eq!(
            did.document_url("http://localhost:2582/").unwrap(),
            "http://localhost:2582/did:plc:abc"
        );
        assert_eq!(
            "did:key:zabc".parse::<Did>().unwrap().document_url("x"),
            None
        );
    }

    #[test]
    fn hold_document_round_trips_and_names_its_endpoint() {
        let did = Did::web_for_url("https://hold.example.com").unwrap();
        let doc = DidDocument::for_hold(&did, "https://hold.example.com/", Some("zDnaeExample"));
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["id"], "did:web:hold.example.com");
        assert_eq!(json["service"][0]["type"], "AtcrHoldService");
        assert_eq!(
            json["service"][0]["serviceEndpoint"],
            "https://hold.example.com"
        );
        assert_eq!(
            json["verificationMethod"][0]["publicKeyMultibase"],
            "zDnaeExample"
        );
        let back: DidDocument = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.service_endpoint(HOLD_SERVICE_ID),
            Some("https://hold.example.com")
        );
    }

    #[test]
    fn pds_endpoint_from_a_plc_document() {
        let doc: DidDocument = serde_json::from_str(
            r##"{"@context":["https://www.w3.org/ns/did/v1"],"id":"did:plc:abc","alsoKnownAs":["at://alice.test"],
            "service":[{"id":"did:plc:abc#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":"http://localhost:2583"}]}"##,
        )
        .unwrap();
        assert_eq!(doc.pds_endpoint(), Some("http://localhost:2583"));
        assert_eq!(doc.handle().unwrap().as_str(), "alice.test");
    }
}
