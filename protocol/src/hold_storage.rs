//! The hold's own storage endpoint, for stores that cannot presign (an R2
//! binding): the hold signs short-lived URLs to itself and moves the bytes.
//!
//! | URL | does |
//! |---|---|
//! | `GET\|HEAD /storage/<key>?exp=&sig=` | reads an object (GET honours one `Range`) |
//! | `PUT /storage/<key>?uploadId=&part=&exp=&sig=` | writes one part of a multipart upload |
//! | `PUT /storage/<key>?sha256=&size=&exp=&sig=` | writes one object of that size, which storage keeps only if its SHA-256 matches |
//!
//! `sig` is HMAC-SHA256, under a key only the hold has, over the method, the
//! key, every parameter and the expiry: a URL does one thing to one object
//! until it expires. Refusals are shaped like S3's (`<Error><Code>…`), so a
//! client of presigned S3 URLs handles both the same way.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where the endpoint lives on the hold's origin.
pub const PREFIX: &str = "/storage/";

/// What a URL allows, besides its method and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// GET or HEAD of the object.
    Read,
    /// One part of a multipart upload.
    Part { upload_id: String, part: u32 },
    /// The whole object in one PUT of `size` bytes whose SHA-256 is `sha256`
    /// (base64, as `x-amz-checksum-sha256` writes it).
    Put { sha256: String, size: u64 },
}

/// One signed storage URL, as issued or as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUrl {
    pub method: String,
    pub key: String,
    pub grant: Grant,
    /// Unix seconds; the URL is refused after this.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("not a storage URL this hold signs: {0}")]
    Malformed(&'static str),
    #[error(
        "the storage URL's signature does not match: it was altered, or is used for \
         another method, object or part"
    )]
    Tampered,
    #[error("the storage URL expired at {0} (unix seconds); ask the hold for a new one")]
    Expired(u64),
}

impl UrlRefusal {
    /// The S3 error code and status a presigned S3 URL would answer with.
    pub fn code_and_status(&self) -> (&'static str, u16) {
        match self {
            UrlRefusal::Malformed(_) => ("AccessDenied", 403),
            UrlRefusal::Tampered => ("SignatureDoesNotMatch", 403),
            UrlRefusal::Expired(_) => ("AccessDenied", 403),
        }
    }
}

/// The key that signs storage URLs, derived from the hold's secret so the
/// same secret can also seal upload sessions without reusing a key.
pub fn url_key(secret: &[u8]) -> Vec<u8> {
    mac(secret, b"atcr-hold-storage-url-key")
        .finalize()
        .into_bytes()
        .to_vec()
}

impl StorageUrl {
    /// The full URL under `base` (the hold's public URL).
    pub fn sign(&self, base: &str, key: &[u8]) -> String {
        let mut url = format!(
            "{}{PREFIX}{}?",
            base.trim_end_matches('/'),
            crate::s3::encode_key(&self.key)
        );
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        match &self.grant {
            Grant::Read => {}
            Grant::Part { upload_id, part } => {
                query.append_pair("uploadId", upload_id);
                query.append_pair("part", &part.to_string());
            }
            Grant::Put { sha256, size } => {
                query.append_pair("sha256", sha256);
                query.append_pair("size", &size.to_string());
            }
        }
        query.append_pair("exp", &self.expires_at.to_string());
        query.append_pair("sig", &B64.encode(self.tag(key)));
        url.push_str(&query.finish());
        url
    }

    /// Checks a request for `/storage/<path>` against its signature and
    /// expiry; `query` is the decoded query string. Only what was signed is
    /// returned, so the caller acts on nothing else.
    pub fn verify<'a>(
        method: &str,
        path: &str,
        query: impl IntoIterator<Item = (&'a str, &'a str)>,
        key: &[u8],
        now_secs: u64,
    ) -> Result<StorageUrl, UrlRefusal> {
        // The hold signs only keys that need no escaping; anything else was not issued here.
        let safe = |b: u8| b.is_ascii_alphanumeric() || b"-._~/".contains(&b);
        if path.is_empty() || !path.bytes().all(safe) {
            return Err(UrlRefusal::Malformed(
                "the object key is not one the hold issues",
            ));
        }
        let mut params = std::collections::BTreeMap::new();
        for (name, value) in query {
            if params.insert(name, value).is_some() {
                return Err(UrlRefusal::Malformed("a parameter appears twice"));
            }
        }
        let number = |name| -> Result<Option<u64>, UrlRefusal> {
            params
                .get(name)
                .map(|v: &&str| {
                    v.parse()
                        .map_err(|_| UrlRefusal::Malformed("a number is malformed"))
                })
                .transpose()
        };
        let expires_at = number("exp")?.ok_or(UrlRefusal::Malformed("exp is missing"))?;
        let sig = params
            .get("sig")
            .and_then(|s| B64.decode(s).ok())
            .ok_or(UrlRefusal::Malformed("sig is missing or malformed"))?;
        let grant = match (params.get("uploadId"), params.get("sha256")) {
            (Some(upload_id), None) => Grant::Part {
                upload_id: upload_id.to_string(),
                part: number("part")?
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or(UrlRefusal::Malformed("part is missing or too large"))?,
            },
            (None, Some(sha256)) => Grant::Put {
                sha256: sha256.to_string(),
                size: number("size")?.ok_or(UrlRefusal::Malformed("size is missing"))?,
            },
            (None, None) => Grant::Read,
            (Some(_), Some(_)) => {
                return Err(UrlRefusal::Malformed("uploadId and sha256 together"))
            }
        };
        let url = StorageUrl {
            method: method.to_string(),
            key: path.to_string(),
            grant,
            expires_at,
        };
        // Signature first: an altered expiry is tampering, not lateness.
        mac(key, &url.signed_bytes())
            .verify_slice(&sig)
            .map_err(|_| UrlRefusal::Tampered)?;
        if now_secs > expires_at {
            return Err(UrlRefusal::Expired(expires_at));
        }
        Ok(url)
    }

    fn tag(&self, key: &[u8]) -> Vec<u8> {
        mac(key, &self.signed_bytes())
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// JSON of every field: unambiguous whatever the values contain.
    fn signed_bytes(&self) -> Vec<u8> {
        let grant = match &self.grant {
            Grant::Read => serde_json::json!(["read"]),
            Grant::Part { upload_id, part } => serde_json::json!(["part", upload_id, part]),
            Grant::Put { sha256, size } => serde_json::json!(["put", sha256, size]),
        };
        serde_json::to_vec(&serde_json::json!([
            "atcr-hold-storage-v1",
            self.method,
            self.key,
            grant,
            self.expires_at
        ]))
        .expect("JSON values serialize")
    }
}

/// The raw SHA-256 a `Grant::Put` names, for storage that takes bytes.
pub fn sha256_bytes(checksum: &str) -> Option<Vec<u8>> {
    STANDARD.decode(checksum).ok().filter(|b| b.len() == 32)
}

/// A single `Range: bytes=…` request resolved against an object's size:
/// the inclusive first and last byte to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// How many bytes the range covers (at least one).
    pub fn length(&self) -> u64 {
        self.last - self.first + 1
    }

    /// `Content-Range` for a 206 answer.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.first, self.last)
    }
}

/// How to answer a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one this endpoint ignores (several ranges, other units):
    /// send the whole object.
    Whole,
    Partial(ByteRange),
    /// 416, with `Content-Range: bytes */<size>`.
    Unsatisfiable,
}

/// Resolves a `Range` header (RFC 9110 §14.1.2) against `size`.
pub fn resolve_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                return RangeRequest::Unsatisfiable;
            }
            ByteRange {
                first: size.saturating_sub(n),
                last: size - 1,
            }
        }
        (Ok(a), Err(_)) if last.is_empty() => ByteRange {
            first: a,
            last: size.saturating_sub(1),
        },
        (Ok(a), Ok(b)) if a <= b => ByteRange {
            first: a,
            last: b.min(size.saturating_sub(1)),
        },
        _ => return RangeRequest::Whole,
    };
    if range.first >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(range)
}

/// An S3-shaped error body.
pub fn error_xml(code: &str, message: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
        escape(code),
        escape(message)
    )
}

fn mac(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"url-key";
    const BLOB: &str = "docker/registry/v2/blobs/sha256/ab/abcd/data";

    fn verify_url(method: &str, url: &str, now: u64) -> Result<StorageUrl, UrlRefusal> {
        let url = url::Url::parse(url).unwrap();
        let path = url.path().strip_prefix(PREFIX).unwrap().to_string();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        StorageUrl::verify(
            method,
            &path,
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            KEY,
            now,
        )
    }

    fn issued() -> Vec<StorageUrl> {
        let at = |method: &str, key: &str, grant| StorageUrl {
            method: method.into(),
            key: key.into(),
            grant,
            expires_at: 1000,
        };
        vec![
            at("GET", BLOB, Grant::Read),
            at("HEAD", BLOB, Grant::Read),
            at(
                "PUT",
                "docker/registry/v2/atcr-uploads/01/data",
                Grant::Part {
                    upload_id: "u+1/=x".into(),
                    part: 7,
                },
            ),
            at(
                "PUT",
                "docker/registry/v2/atcr-uploads/02/data",
                Grant::Put {
                    sha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
                    size: 0,
                },
            ),
        ]
    }

    #[test]
    fn issued_urls_verify_until_they_expire() {
        for url in issued() {
            let signed = url.sign("http://localhost:8788/", KEY);
            assert!(
                signed.starts_with("http://localhost:8788/storage/docker/"),
                "{signed}"
            );
            assert_eq!(verify_url(&url.method, &signed, 1000), Ok(url.clone()));
            assert_eq!(
                verify_url(&url.method, &signed, 1001),
                Err(UrlRefusal::Expired(1000))
            );
        }
    }

    #[test]
    fn a_url_does_only_what_was_signed() {
        let [get, head, part, put] = issued().try_into().unwrap();
        let get_url = get.sign("http://h", KEY);
        assert_eq!(
            verify_url("HEAD", &head.sign("http://h", KEY), 0),
            Ok(head.clone())
        );
        assert_eq!(
            verify_url("GET", &head.sign("http://h", KEY), 0),
            Err(UrlRefusal::Tampered)
        );
        assert_eq!(verify_url("PUT", &get_url, 0), Err(UrlRefusal::Tampered));
        let other_key = get_url.replace("/ab/abcd/", "/ab/abce/");
        assert_eq!(verify_url("GET", &other_key, 0), Err(UrlRefusal::Tampered));
        let later = get_url.replace("exp=1000", "exp=9999");
        assert_eq!(verify_url("GET", &later, 0), Err(UrlRefusal::Tampered));
        let part_url = part.sign("http://h", KEY);
        let other_part = part_url.replace("part=7", "part=8");
        assert_eq!(verify_url("PUT", &other_part, 0), Err(UrlRefusal::Tampered));
        let other_upload = part_url.replace("uploadId=u", "uploadId=v");
        assert_eq!(
            verify_url("PUT", &other_upload, 0),
            Err(UrlRefusal::Tampered)
        );
        let put_url = put.sign("http://h", KEY);
        let bigger = put_url.replace("size=0", "size=1");
        assert_eq!(verify_url("PUT", &bigger, 0), Err(UrlRefusal::Tampered));
        // Dropping the checksum turns the URL into a read it never was.
        let unchecked = put_url.replace("sha256=", "x=");
        assert_eq!(verify_url("PUT", &unchecked, 0), Err(UrlRefusal::Tampered));
        let other_secret =
            StorageUrl::verify("GET", BLOB, [("exp", "1000"), ("sig", "AAAA")], KEY, 0);
        assert_eq!(other_secret, Err(UrlRefusal::Tampered));
    }

    #[test]
    fn malformed_urls_are_refused() {
        let sig = B64.encode(issued()[0].tag(KEY));
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("", vec![("exp", "1"), ("sig", &sig)]),
            ("a%2Fb", vec![("exp", "1"), ("sig", &sig)]),
            ("a\nb", vec![("exp", "1"), ("sig", &sig)]),
            (BLOB, vec![("sig", &sig)]),
            (BLOB, vec![("exp", "soon"), ("sig", &sig)]),
            (BLOB, vec![("exp", "1")]),
            (BLOB, vec![("exp", "1"), ("sig", "!!")]),
            (BLOB, vec![("exp", "1"), ("exp", "2"), ("sig", &sig)]),
            (BLOB, vec![("uploadId", "u"), ("exp", "1"), ("sig", &sig)]),
            (
                BLOB,
                vec![
                    ("uploadId", "u"),
                    ("part", "99999999999"),
                    ("exp", "1"),
                    ("sig", &sig),
                ],
            ),
            (BLOB, vec![("sha256", "x"), ("exp", "1"), ("sig", &sig)]),
            (
                BLOB,
                vec![
                    ("sha256", "x"),
                    ("uploadId", "u"),
                    ("exp", "1"),
                    ("sig", &sig),
                ],
            ),
        ];
        for (path, query) in cases {
            let got = StorageUrl::verify("GET", path, query.clone(), KEY, 0);
            assert!(
                matches!(got, Err(UrlRefusal::Malformed(_))),
                "{path} {query:?}: {got:?}"
            );
        }
    }

    #[test]
    fn url_keys_differ_from_the_secret_and_per_secret() {
        assert_ne!(url_key(b"s"), b"s".to_vec());
        assert_ne!(url_key(b"s"), url_key(b"t"));
        assert_eq!(url_key(b"s").len(), 32);
    }

    #[test]
    fn checksums_decode_to_32_bytes() {
        assert_eq!(
            sha256_bytes("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").map(|b| b.len()),
            Some(32)
        );
        assert_eq!(sha256_bytes("AAAA"), None);
        assert_eq!(sha256_bytes("not base64"), None);
    }

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        let partial = |first, last| RangeRequest::Partial(ByteRange { first, last });
        let cases = [
            (None, 100, RangeRequest::Whole),
            (Some("bytes=0-9"), 100, partial(0, 9)),
            (Some("bytes=90-"), 100, partial(90, 99)),
            (Some("bytes=90-200"), 100, partial(90, 99)),
            (Some("bytes=-10"), 100, partial(90, 99)),
            (Some("bytes=-200"), 100, partial(0, 99)),
            (Some("bytes=100-"), 100, RangeRequest::Unsatisfiable),
            (Some("bytes=-0"), 100, RangeRequest::Unsatisfiable),
            (Some("bytes=0-"), 0, RangeRequest::Unsatisfiable),
            (Some("bytes=5-1"), 100, RangeRequest::Whole),
            (Some("bytes=0-1,5-6"), 100, RangeRequest::Whole),
            (Some("items=0-1"), 100, RangeRequest::Whole),
            (Some("bytes=x-y"), 100, RangeRequest::Whole),
        ];
        for (header, size, want) in cases {
            assert_eq!(resolve_range(header, size), want, "{header:?} of {size}");
        }
        assert_eq!(
            ByteRange {
                first: 90,
                last: 99
            }
            .content_range(100),
            "bytes 90-99/100"
        );
        assert_eq!(
            ByteRange {
                first: 90,
                last: 99
            }
            .length(),
            10
        );
    }

    #[test]
    fn errors_are_s3_shaped_and_escaped() {
        let xml = error_xml("BadDigest", "a <b> & c");
        assert_eq!(
            crate::s3::xml_element(&xml, "Code").as_deref(),
            Some("BadDigest")
        );
        assert!(xml.contains("a &lt;b&gt; &amp; c"));
    }
}
