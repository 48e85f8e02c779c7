//! S3-compatible storage addressing and SigV4 signing.
//!
//! Holds never move blob bytes: they hand clients URLs presigned here (query
//! string signatures), and sign the few small requests they make themselves
//! (header signatures). Signing is `aws-sigv4`'s; this module decides the
//! URL shape (path-style or virtual-host) and the S3 signing settings.

use crate::digest::{Algorithm, Digest};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::{Duration, SystemTime};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 endpoint '{0}': {1}")]
    Endpoint(String, String),
    #[error("could not sign the S3 request: {0}")]
    Signing(String),
}

/// Where a bucket lives and the keys that may touch it.
#[derive(Clone)]
pub struct S3Config {
    /// e.g. `https://<account>.r2.cloudflarestorage.com` or `http://127.0.0.1:9000`
    pub endpoint: Url,
    pub bucket: String,
    /// `auto` for R2, `us-east-1` for most others.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host (`bucket.endpoint/key`).
    pub path_style: bool,
}

impl std::fmt::Debug for S3Config {
    // Never print the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// The payload hash S3 expects for a request with an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl S3Config {
    pub fn new(
        endpoint: &str,
        bucket: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        path_style: bool,
    ) -> Result<Self, S3Error> {
        let endpoint =
            Url::parse(endpoint).map_err(|e| S3Error::Endpoint(endpoint.into(), e.to_string()))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(S3Error::Endpoint(
                endpoint.to_string(),
                "must be an http(s) URL with a host".into(),
            ));
        }
        Ok(S3Config {
            endpoint,
            bucket: bucket.into(),
            region: region.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            path_style,
        })
    }

    /// The URL of an object (or of the bucket itself when `key` is empty).
    pub fn object_url(&self, key: &str) -> String {
        let scheme = self.endpoint.scheme();
        let host = self.endpoint.host_str().unwrap_or_default();
        let port = self
            .endpoint
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let base_path = self.endpoint.path().trim_end_matches('/');
        let key = encode_key(key);
        if self.path_style {
            format!("{scheme}://{host}{port}{base_path}/{}/{key}", self.bucket)
        } else {
            format!("{scheme}://{}.{host}{port}{base_path}/{key}", self.bucket)
        }
    }

    fn identity(&self) -> Identity {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "atcr-hold",
        )
        .into()
    }

    /// A URL that lets its bearer perform `method` on `key` until `expires_in`
    /// has passed, without any credentials of its own. `query` is added to
    /// the URL and covered by the signature (e.g. `partNumber`, `uploadId`).
    pub fn presign(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<String, S3Error> {
        self.presign_with_headers(method, key, query, &[], expires_in, now)
    }

    /// Like [`presign`](Self::presign), also signing `headers`: the bearer
    /// must send each with exactly this value (e.g. `x-amz-checksum-sha256`,
    /// so storage refuses bytes with another hash).
    pub fn presign_with_headers(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<String, S3Error> {
        let mut url =
            Url::parse(&self.object_url(key)).map_err(|e| S3Error::Signing(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut settings = s3_settings();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        let host = host_header(&url);
        let mut signed_headers = vec![("host", host.as_str())];
        signed_headers.extend_from_slice(headers);
        let identity = self.identity();
        let (_, params) = self.sign(
            method,
            url.as_str(),
            &signed_headers,
            SignableBody::UnsignedPayload,
            settings,
            &identity,
            now,
        )?;
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        Ok(url.to_string())
    }

    /// Headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`) that
    /// authenticate a request this service sends itself. `payload_sha256` is
    /// the hex SHA-256 of the body ([`EMPTY_SHA256`] when there is none).
    pub fn sign_headers(
        &self,
        method: &str,
        url: &str,
        extra_headers: &[(&str, &str)],
        payload_sha256: &str,
        now: SystemTime,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let parsed = Url::parse(url).map_err(|e| S3Error::Signing(e.to_string()))?;
        let host = host_header(&parsed);
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", host.as_str()),
            ("x-amz-content-sha256", payload_sha256),
        ];
        headers.extend_from_slice(extra_headers);
        let identity = self.identity();
        let body = SignableBody::Precomputed(payload_sha256.to_string());
        let (signed, _) = self.sign(method, url, &headers, body, s3_settings(), &identity, now)?;
        let mut out: Vec<(String, String)> =
            vec![("x-amz-content-sha256".into(), payload_sha256.into())];
        out.extend(signed);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: SignableBody<'_>,
        settings: SigningSettings,
        identity: &Identity,
        now: SystemTime,
    ) -> Result<(SignedHeaders, SignedQuery), S3Error> {
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| S3Error::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(method, url, headers.iter().copied(), body)
            .map_err(|e| S3Error::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| S3Error::Signing(e.to_string()))?
            .into_parts();
        let (headers, query) = instructions.into_parts();
        Ok((
            headers
                .iter()
                .map(|h| (h.name().to_string(), h.value().to_string()))
                .collect(),
            query
                .into_iter()
                .map(|(k, v)| (k, v.into_owned()))
                .collect(),
        ))
    }
}

type SignedHeaders = Vec<(String, String)>;
type SignedQuery = Vec<(&'static str, String)>;

/// S3 signs the path exactly as sent: no double encoding, no normalization.
fn s3_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings
}

fn host_header(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// Percent-encodes an object key for a URL path, keeping `/` and the
/// characters RFC 3986 leaves unreserved.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn time(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The bucket and keys of AWS's published S3 signing examples.
    fn aws_example_bucket() -> S3Config {
        S3Config::new(
            "https://s3.amazonaws.com",
            "examplebucket",
            "us-east-1",
            AK,
            SK,
            false,
        )
        .unwrap()
    }

    /// 2013-05-24T00:00:00Z, the instant AWS's published S3 examples use.
    const AWS_EXAMPLE_TIME: u64 = 1_369_353_600;

    #[test]
    fn presigned_get_matches_the_aws_published_example() {
        // "Example: Authenticating Requests: Using Query Parameters (AWS Signature Version 4)".
        let s3 = aws_example_bucket();
        let url = s3
            .presign(
                "GET",
                "test.txt",
                &[],
                Duration::from_secs(86400),
                time(AWS_EXAMPLE_TIME),
            )
            .unwrap();
        assert!(
            url.starts_with("https://examplebucket.s3.amazonaws.com/test.txt?"),
            "{url}"
        );
        assert!(
            url.contains(
                "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=86400"));
        assert!(
            url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
    }

    #[test]
    fn header_signed_get_matches_the_aws_published_example() {
        // "Example: GET Object" from "Signature Calculations for the Authorization Header".
        let s3 = aws_example_bucket();
        let url = s3.object_url("test.txt");
        let headers = s3
            .sign_headers(
                "GET",
                &url,
                &[("range", "bytes=0-9")],
                EMPTY_SHA256,
                time(AWS_EXAMPLE_TIME),
            )
            .unwrap();
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn path_style_and_virtual_host_urls() {
        let path =
            S3Config::new("http://127.0.0.1:9000", "blobs", "us-east-1", AK, SK, true).unwrap();
        assert_eq!(
            path.object_url("a/b c"),
            "http://127.0.0.1:9000/blobs/a/b%20c"
        );
        assert_eq!(path.object_url(""), "http://127.0.0.1:9000/blobs/");
        let vhost = S3Config::new(
            "https://acct.r2.cloudflarestorage.com",
            "blobs",
            "auto",
            AK,
            SK,
            false,
        )
        .unwrap();
        assert_eq!(
            vhost.object_url("x/data"),
            "https://blobs.acct.r2.cloudflarestorage.com/x/data"
        );
    }

    #[test]
    fn presigned_query_parameters_are_signed() {
        let s3 =
            S3Config::new("http://127.0.0.1:9000", "blobs", "us-east-1", AK, SK, true).unwrap();
        let a = s3
            .presign(
                "PUT",
                "k",
                &[("partNumber", "1"), ("uploadId", "u")],
                Duration::from_secs(60),
                time(AWS_EXAMPLE_TIME),
            )
            .unwrap();
        let b = s3
            .presign(
                "PUT",
                "k",
                &[("partNumber", "2"), ("uploadId", "u")],
                Duration::from_secs(60),
                time(AWS_EXAMPLE_TIME),
            )
            .unwrap();
        assert!(
            a.contains("partNumber=1&uploadId=u&X-Amz-Algorithm=AWS4-HMAC-SHA256"),
            "{a}"
        );
        let sig = |u: &str| u.rsplit("X-Amz-Signature=").next().unwrap().to_string();
        assert_ne!(sig(&a), sig(&b));
    }

    #[test]
    fn presigned_headers_are_signed_and_must_be_sent() {
        let s3 =
            S3Config::new("http://127.0.0.1:9000", "blobs", "us-east-1", AK, SK, true).unwrap();
        let digest: Digest =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap();
        let checksum = sha256_checksum(&digest).unwrap();
        assert_eq!(checksum, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let url = s3
            .presign_with_headers(
                "PUT",
                "k",
                &[],
                &[("content-length", "0"), (CHECKSUM_SHA256_HEADER, &checksum)],
                Duration::from_secs(60),
                time(AWS_EXAMPLE_TIME),
            )
            .unwrap();
        assert!(
            url.contains("X-Amz-SignedHeaders=content-length%3Bhost%3Bx-amz-checksum-sha256"),
            "{url}"
        );
        let sha512: Digest = format!("sha512:{}", "0".repeat(128)).parse().unwrap();
        assert_eq!(sha256_checksum(&sha512), None);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let s3 =
            S3Config::new("http://127.0.0.1:9000", "blobs", "us-east-1", AK, SK, true).unwrap();
        assert!(!format!("{s3:?}").contains(SK));
    }
}

/// The header in which S3 takes (on PUT) and reports (on HEAD, with
/// `x-amz-checksum-mode: ENABLED`) an object's SHA-256.
pub const CHECKSUM_SHA256_HEADER: &str = "x-amz-checksum-sha256";

/// A sha256 digest as S3 writes checksums (base64 of the hash bytes); S3 has
/// no SHA-512 checksum, so other digests have none.
pub fn sha256_checksum(digest: &Digest) -> Option<String> {
    use base64::Engine;
    if digest.algorithm() != Algorithm::Sha256 {
        return None;
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&digest.hex()[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<_>>()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The body of a CompleteMultipartUpload request.
pub fn complete_multipart_xml(parts: &[(u32, &str)]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (number, etag) in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
            xml_escape(etag)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

/// The text of the first `<tag>…</tag>` in an S3 XML response.
pub fn xml_element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml_unescape(&xml[start..end]))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod xml_tests {
    use super::*;

    #[test]
    fn reads_upload_ids_and_error_codes() {
        let created = r#"<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>abc&amp;def</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(xml_element(created, "UploadId").as_deref(), Some("abc&def"));
        assert_eq!(xml_element(created, "Missing"), None);
        let error = "<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>";
        assert_eq!(xml_element(error, "Code").as_deref(), Some("NoSuchUpload"));
    }

    #[test]
    fn completion_body_lists_parts_in_order() {
        let xml = complete_multipart_xml(&[(1, "\"e1\""), (2, "\"e2\"")]);
        assert_eq!(
            xml,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
