//! Property tests over every parser that takes input from outside: request
//! paths, names, references and digests, chunk and byte ranges, manifests,
//! tokens and sealed state, identities, scopes, Markdown and Jetstream events. Each runs
//! `CASES` cases of arbitrary input and of near-valid input (valid shapes
//! with hostile parts): nothing may panic, and every refusal must say why.

use atcr_protocol::chunk_range::ChunkRange;
use atcr_protocol::hold_storage::{resolve_range, RangeRequest, StorageUrl};
use atcr_protocol::jetstream::{self, Skip};
use atcr_protocol::manifest;
use atcr_protocol::markdown::to_safe_html;
use atcr_protocol::reference::{Reference, RepoName};
use atcr_protocol::registry_token::{self, Access};
use atcr_protocol::route::Route;
use atcr_protocol::sealed;
use atcr_protocol::service_auth::{peek_claims, PublicKey};
use atcr_protocol::upload_session::UploadSession;
use atcr_protocol::{Did, DidDocument, Digest, Handle};
use proptest::prelude::*;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "(sha256|sha512):[0-9a-f]{0,70}".prop_map(Value::String),
        "application/vnd\\.(oci|docker)\\.[a-z.]{0,40}(\\+json)?".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                "(schemaVersion|mediaType|config|layers|manifests|subject|digest|size|urls|annotations|platform|artifactType|id|service|serviceEndpoint|alsoKnownAs|verificationMethod|publicKeyMultibase|type|[a-zA-Z]{1,10})",
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn digests(text in ".{0,140}", near in "(sha256|sha512|md5|SHA256|sha256\\+b64)?:?[0-9a-fA-FxX=]{0,130}") {
        for s in [&text, &near] {
            match s.parse::<Digest>() {
                Ok(d) => prop_assert_eq!(d.to_string(), s.to_string()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn names_and_references(text in ".{0,300}", near in "[a-zA-Z0-9._:-]{1,30}(/[a-zA-Z0-9._~-]{0,30}){0,5}") {
        for s in [&text, &near] {
            match s.parse::<RepoName>() {
                Ok(name) => {
                    prop_assert_eq!(name.as_str(), s.as_str());
                    prop_assert!(!name.repository().is_empty());
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            if let Err(e) = s.parse::<Reference>() {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn routes(text in ".{0,200}", near in "/v2/[a-zA-Z0-9./_:~-]{0,60}/(manifests|blobs|blobs/uploads|tags|referrers)/[a-zA-Z0-9:._/-]{0,90}") {
        for path in [&text, &near] {
            if let Ok(route) = Route::parse(path) {
                if let Some(name) = route.name() {
                    prop_assert!(path.contains(name.as_str()));
                }
            }
        }
    }

    #[test]
    fn chunk_ranges(text in ".{0,60}", a in any::<u64>(), b in any::<u64>()) {
        if let Some(r) = ChunkRange::parse(&text) {
            prop_assert!(r.start <= r.end);
        }
        let parsed = ChunkRange::parse(&format!("{a}-{b}"));
        prop_assert_eq!(parsed.is_some(), a <= b);
    }

    #[test]
    fn byte_ranges(text in ".{0,60}", near in "bytes=[0-9]{0,12}-[0-9]{0,12}(,[0-9]{0,4}-[0-9]{0,4})?", size in 0u64..10_000_000_000) {
        for header in [&text, &near] {
            match resolve_range(Some(header), size) {
                RangeRequest::Partial(r) => {
                    prop_assert!(r.first <= r.last && r.last < size);
                    prop_assert_eq!(r.content_range(size), format!("bytes {}-{}/{size}", r.first, r.last));
                }
                RangeRequest::Whole | RangeRequest::Unsatisfiable => {}
            }
        }
    }

    #[test]
    fn manifests_from_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000), content_type in prop::option::of(".{0,60}")) {
        if let Err(e) = manifest::parse(&bytes, content_type.as_deref()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn manifests_from_any_json(value in json(), content_type in prop::option::of("application/vnd\\.(oci\\.image\\.(manifest|index)|docker\\.distribution\\.manifest\\.(v2|list\\.v2))\\+json")) {
        let bytes = value.to_string();
        match manifest::parse(bytes.as_bytes(), content_type.as_deref()) {
            Ok(parsed) => {
                // Whatever was accepted can be recorded, within a PDS's limit or refused clearly.
                let digest = Digest::of(atcr_protocol::digest::Algorithm::Sha256, bytes.as_bytes());
                let record = manifest::record(&parsed, "app", &digest, "did:web:hold.example", Value::Null, "2026-01-01T00:00:00Z");
                if let Err(e) = manifest::fit_record(record, manifest::MAX_RECORD_BYTES) {
                    prop_assert!(!e.to_string().is_empty());
                }
                let _ = parsed.blobs().count();
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn registry_tokens(text in ".{0,400}", near in "eyJ[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}") {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for token in [&text, &near] {
            prop_assert!(registry_token::verify(token, key.verifying_key(), "registry.example", now).is_err());
            let _ = registry_token::expiry(token);
            if let Err(e) = peek_claims(token) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn sealed_state(text in "[A-Za-z0-9_.~-]{0,300}", flip in any::<prop::sample::Index>()) {
        let key = b"hostile-input-test-key".to_vec();
        prop_assert!(sealed::open::<UploadSession>(&text, &key).is_err());
        let session = UploadSession {
            id: "abc".into(),
            upload_id: Some("u-1".into()),
            digest: None,
            owner: "did:plc:abcdefghijklmnopqrstuvwx".parse().unwrap(),
            expires_at: 1_900_000_000,
        };
        let token = session.seal(&key);
        let mut altered = token.clone().into_bytes();
        let i = flip.index(altered.len());
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        if altered != token {
            prop_assert!(sealed::open::<UploadSession>(&altered, &key).is_err());
        }
        prop_assert!(sealed::open::<UploadSession>(&token, b"another key").is_err());
    }

    #[test]
    fn identities(text in ".{0,120}", near in "(did:(plc|web|key):)?[a-zA-Z0-9.:%_-]{0,60}", handle in "[a-zA-Z0-9-]{0,20}(\\.[a-zA-Z0-9-]{0,20}){0,4}") {
        for s in [&text, &near, &handle] {
            if let Err(e) = s.parse::<Did>() {
                prop_assert!(!e.to_string().is_empty());
            }
            if let Ok(h) = s.parse::<Handle>() {
                prop_assert!(h.dns_txt_name().starts_with("_atproto."));
            }
            if let Err(e) = PublicKey::from_multikey(s) {
                prop_assert!(!e.is_empty());
            }
            let _ = Access::parse_scope(s);
        }
    }

    #[test]
    fn did_documents(value in json()) {
        if let Ok(doc) = serde_json::from_value::<DidDocument>(value) {
            let _ = doc.pds_endpoint();
            let _ = doc.handle();
            let _ = PublicKey::from_did_document(&doc);
        }
    }

    #[test]
    fn storage_urls(method in "(GET|PUT|HEAD|DELETE|[A-Z]{0,6})", path in ".{0,80}", query in prop::collection::vec((".{0,12}", ".{0,40}"), 0..8)) {
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert!(StorageUrl::verify(&method, &path, pairs, b"key", 1_800_000_000).is_err());
    }

    #[test]
    fn jetstream_events(
        text in ".{0,300}",
        record in json(),
        collection in "(io\\.atcr\\.(manifest|tag|sailor\\.star|repo\\.page|sailor\\.profile)|[a-z.]{0,20})",
        operation in "(create|update|delete|[a-z]{0,8})",
        kind in "(commit|identity|account|[a-z]{0,8})",
    ) {
        let near = serde_json::json!({
            "did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "time_us": 1_725_911_162_329_308_i64, "kind": kind,
            "commit": { "rev": "3l3qo2vutsw2b", "operation": operation, "collection": collection,
                        "rkey": "team~web:v1", "record": record, "cid": "bafyrei" },
        })
        .to_string();
        for message in [&text, &near] {
            let why = match jetstream::parse(message) {
                Ok(event) => match event.change {
                    Ok(_) => continue,
                    Err(skip) => skip,
                },
                Err(skip) => skip,
            };
            if let Skip::Malformed { collection, uri, .. } = &why {
                prop_assert!(uri.contains(collection.as_str()));
            }
            prop_assert!(!why.to_string().is_empty());
        }
    }

    #[test]
    fn markdown_never_runs(text in ".{0,400}", near in "(<script>|<img src=x onerror=|!?\\[x\\]\\((javascript|JaVaScRiPt|data|vbscript|https?):|<a href=\"javascript:|<iframe|&#x6a;|\\n|[a-z ]){0,30}") {
        for md in [&text, &near] {
            let html = to_safe_html(md);
            if let Err(why) = only_inert_markup(&html) {
                prop_assert!(false, "{why} in {html} (from {md:?})");
            }
        }
    }
}

/// Every tag in `html` is one Markdown makes, with no attribute but a safe
/// `href` or `src`, `title`, `alt`, `start` or a code block's `class`.
fn only_inert_markup(html: &str) -> Result<(), String> {
    const TAGS: [&str; 28] = [
        "p",
        "img",
        "a",
        "em",
        "strong",
        "del",
        "code",
        "pre",
        "ul",
        "ol",
        "li",
        "blockquote",
        "hr",
        "br",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "sup",
        "input",
    ];
    for (i, _) in html.match_indices('<') {
        let rest = &html[i + 1..];
        let end = rest.find('>').ok_or("an unclosed tag")?;
        let tag = rest[..end].trim_start_matches('/').trim_end_matches('/');
        let mut parts = tag.split_whitespace();
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !TAGS.contains(&name.as_str()) {
            return Err(format!("tag <{name}>"));
        }
        for attr in parts {
            let (key, value) = attr.split_once('=').unwrap_or((attr, ""));
            let value = value.trim_matches('"').to_ascii_lowercase();
            match key {
                "href"
                    if value.starts_with("http://")
                        || value.starts_with("https://")
                        || value.starts_with("mailto:")
                        || !value.contains(':') => {}
                "src"
                    if name == "img"
                        && (value.starts_with("http://")
                            || value.starts_with("https://")
                            || !value.contains(':')) => {}
                "title" | "alt" | "start" | "class" | "type" | "disabled" | "checked" | "align" => {
                }
                other => return Err(format!("attribute {other}={value}")),
            }
        }
    }
    Ok(())
}
