//! OCI Distribution error codes and the one JSON envelope they travel in.
//!
//! The table mirrors "Error Codes" in the distribution spec: each code's wire
//! string, HTTP status and default message live in a single `match`, so they
//! cannot drift apart. `Internal` is ours: the spec does not constrain server
//! faults, and we keep them apart from the client errors.

use serde::Serialize;

/// Why a request is refused: the OCI code and words for a person.
pub type Refusal = (OciCode, String);

/// Every error code a registry response may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    PaginationNumberInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A fault on our side (storage, PDS, database): never the client's doing.
    Internal,
}

impl OciCode {
    pub const ALL: [OciCode; 16] = [
        OciCode::BlobUnknown,
        OciCode::BlobUploadInvalid,
        OciCode::BlobUploadUnknown,
        OciCode::DigestInvalid,
        OciCode::ManifestBlobUnknown,
        OciCode::ManifestInvalid,
        OciCode::ManifestUnknown,
        OciCode::NameInvalid,
        OciCode::NameUnknown,
        OciCode::SizeInvalid,
        OciCode::PaginationNumberInvalid,
        OciCode::Unauthorized,
        OciCode::Denied,
        OciCode::Unsupported,
        OciCode::TooManyRequests,
        OciCode::Internal,
    ];

    /// The wire string, HTTP status and default message of this code.
    pub fn describe(self) -> (&'static str, u16, &'static str) {
        use OciCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                404,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            NameUnknown => ("NAME_UNKNOWN", 404, "repository name not known to registry"),
            SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            PaginationNumberInvalid => (
                "PAGINATION_NUMBER_INVALID",
                400,
                "invalid number of results requested",
            ),
            Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            Denied => ("DENIED", 403, "requested access to the resource is denied"),
            Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            Internal => ("INTERNAL", 500, "internal server error"),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.describe().0
    }

    pub fn status(self) -> u16 {
        self.describe().1
    }

    pub fn default_message(self) -> &'static str {
        self.describe().2
    }
}

impl std::fmt::Display for OciCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.default_message())
    }
}

/// One entry of the `{"errors": [...]}` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorEntry {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The JSON body every failed registry request returns.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorEnvelope {
    pub errors: Vec<ErrorEntry>,
}

impl ErrorEnvelope {
    /// An envelope with one error; `message` replaces the default when given.
    pub fn single(
        code: OciCode,
        message: Option<String>,
        detail: Option<serde_json::Value>,
    ) -> Self {
        ErrorEnvelope {
            errors: vec![ErrorEntry {
                code: code.as_str(),
                message: message.unwrap_or_else(|| code.default_message().to_string()),
                detail,
            }],
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("error envelope always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_distribution_spec_table() {
        let expected = [
            ("BLOB_UNKNOWN", 404),
            ("BLOB_UPLOAD_INVALID", 400),
            ("BLOB_UPLOAD_UNKNOWN", 404),
            ("DIGEST_INVALID", 400),
            ("MANIFEST_BLOB_UNKNOWN", 404),
            ("MANIFEST_INVALID", 400),
            ("MANIFEST_UNKNOWN", 404),
            ("NAME_INVALID", 400),
            ("NAME_UNKNOWN", 404),
            ("SIZE_INVALID", 400),
            // Not in the OCI table; CNCF distribution's code for a bad `n`.
            ("PAGINATION_NUMBER_INVALID", 400),
            ("UNAUTHORIZED", 401),
            ("DENIED", 403),
            ("UNSUPPORTED", 405),
            ("TOOMANYREQUESTS", 429),
            ("INTERNAL", 500),
        ];
        assert_eq!(OciCode::ALL.len(), expected.len());
        for (code, (name, status)) in OciCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status(), status, "{name}");
        }
    }

    #[test]
    fn envelope_has_the_spec_shape() {
        let body = ErrorEnvelope::single(
            OciCode::NameUnknown,
            Some("no such user alice.test".into()),
            None,
        )
        .to_json();
        assert_eq!(
            body,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"no such user alice.test"}]}"#
        );
        let body = ErrorEnvelope::single(
            OciCode::Unauthorized,
            None,
            Some(serde_json::json!([{"Type":"registry"}])),
        )
        .to_json();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errors"][0]["message"], "authentication required");
        assert_eq!(v["errors"][0]["detail"][0]["Type"], "registry");
    }
}
