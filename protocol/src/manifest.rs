//! Manifests: what a registry accepts, and the `io.atcr.manifest` record it
//! writes for one.
//!
//! Accepted: OCI image manifests and indexes, Docker schema 2 manifests and
//! manifest lists (parsed with `oci-spec`), up to `MAX_MANIFEST_BYTES`.

use crate::digest::Digest;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::{json, Value};

/// "Registries SHOULD accept manifests of at least 4 MiB."
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A descriptor in our own types: the digest is validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// For index entries: `{architecture, os, variant?, …}`.
    pub platform: Option<Value>,
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    pub media_type: String,
    pub schema_version: u32,
    pub artifact_type: Option<String>,
    pub config: Option<Reference>,
    pub layers: Vec<Reference>,
    /// Entries of an index.
    pub manifests: Vec<Reference>,
    pub subject: Option<Reference>,
    pub annotations: Option<Value>,
}

impl ParsedManifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// Blobs that must exist before the manifest may be stored.
    pub fn blobs(&self) -> impl Iterator<Item = &Reference> {
        self.config.iter().chain(self.layers.iter())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    #[error("unsupported manifest media type '{0}'")]
    Unsupported(String),
}

/// Parses and checks a manifest. `content_type` is the request's header;
/// the body's own `mediaType`, when present, must agree with it.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Invalid(format!("not JSON: {e}")))?;
    let body_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| !c.is_empty());
    let media_type = match (&body_type, &header_type) {
        (Some(b), Some(h)) if b != h => {
            return Err(ManifestError::Invalid(format!(
                "Content-Type {h} does not match the manifest's mediaType {b}"
            )));
        }
        (Some(b), _) => b.clone(),
        (None, Some(h)) => h.clone(),
        (None, None) if value.get("manifests").is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if value.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(ManifestError::Invalid("schemaVersion must be 2".into()));
    }
    let annotations = value.get("annotations").cloned();
    let parsed = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m = ImageManifest::from_reader(bytes)
                .map_err(|e| ManifestError::Invalid(e.to_string()))?;
            ParsedManifest {
                schema_version: 2,
                artifact_type: m.artifact_type().as_ref().map(|t| t.to_string()),
                config: Some(reference(m.config())?),
                layers: m.layers().iter().map(reference).collect::<Result<_, _>>()?,
                manifests: vec![],
                subject: m.subject().as_ref().map(reference).transpose()?,
                annotations,
                media_type,
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let i = ImageIndex::from_reader(bytes)
                .map_err(|e| ManifestError::Invalid(e.to_string()))?;
            ParsedManifest {
                schema_version: 2,
                artifact_type: i.artifact_type().as_ref().map(|t| t.to_string()),
                config: None,
                layers: vec![],
                manifests: i
                    .manifests()
                    .iter()
                    .map(reference)
                    .collect::<Result<_, _>>()?,
                subject: i.subject().as_ref().map(reference).transpose()?,
                annotations,
                media_type,
            }
        }
        other => return Err(ManifestError::Unsupported(other.to_string())),
    };
    Ok(parsed)
}

fn reference(d: &Descriptor) -> Result<Reference, ManifestError> {
    let digest: Digest = d
        .digest()
        .to_string()
        .parse()
        .map_err(|e: crate::digest::DigestError| ManifestError::Invalid(e.to_string()))?;
    let raw = serde_json::to_value(d).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    Ok(Reference {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
        platform: raw.get("platform").cloned(),
        raw,
    })
}

/// The `io.atcr.manifest` record for a stored manifest. `manifest_blob` is
/// the PDS blob reference holding the exact bytes.
pub fn record(
    parsed: &ParsedManifest,
    repository: &str,
    digest: &Digest,
    hold_did: &str,
    manifest_blob: Value,
    created_at: &str,
) -> Value {
    let descriptor = |r: &Reference| {
        let mut d = json!({ "mediaType": r.media_type, "size": r.size, "digest": r.digest });
        for key in ["urls", "annotations", "artifactType"] {
            if let Some(v) = r.raw.get(key) {
                d[key] = v.clone();
            }
        }
        d
    };
    let mut rec = json!({
        "$type": crate::collections::MANIFEST,
        "repository": repository,
        "digest": digest,
        "mediaType": parsed.media_type,
        "schemaVersion": parsed.schema_version,
        "holdDid": hold_did,
        "manifestBlob": manifest_blob,
        "createdAt": created_at,
    });
    if let Some(config) = &parsed.config {
        rec["config"] = descriptor(config);
    }
    if !parsed.layers.is_empty() {
        rec["layers"] = parsed.layers.iter().map(descriptor).collect();
    }
    if !parsed.manifests.is_empty() {
        rec["manifests"] = parsed
            .manifests
            .iter()
            .map(|m| {
                let mut d = descriptor(m);
                if let Some(p) = &m.platform {
                    d["platform"] = p.clone();
                }
                d
            })
            .collect();
    }
    if let Some(subject) = &parsed.subject {
        rec["subject"] = descriptor(subject);
    }
    if let Some(t) = &parsed.artifact_type {
        rec["artifactType"] = json!(t);
    }
    if let Some(a) = &parsed.annotations {
        rec["annotations"] = a.clone();
    }
    rec
}

/// Whether an `io.atcr.manifest` record names `digest` as its config or one
/// of its layers: the blobs that must outlive the record.
pub fn record_uses_blob(record: &Value, digest: &Digest) -> bool {
    let names = |d: &Value| d["digest"].as_str() == Some(digest.as_str());
    names(&record["config"])
        || record["layers"]
            .as_array()
            .is_some_and(|layers| layers.iter().any(names))
}

/// Record key of the `io.atcr.tag` record for `repository:tag`. Record keys
/// may not hold `/`; `~` never appears in repository names nor `:` in tags,
/// so the mapping cannot collide.
pub fn tag_record_key(repository: &str, tag: &str) -> String {
    format!("{}:{tag}", repository.replace('/', "~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":10}}]}}"#
        )
    }

    #[test]
    fn parses_an_image_manifest_and_lists_its_blobs() {
        let m = parse(image().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert!(!m.is_index());
        assert_eq!(m.blobs().count(), 2);
        let digest: Digest = D1.parse().unwrap();
        let rec = record(
            &m,
            "app",
            &digest,
            "did:web:hold",
            json!({"$type":"blob"}),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(rec["$type"], "io.atcr.manifest");
        assert_eq!(rec["layers"][0]["size"], 10);
        assert_eq!(rec["holdDid"], "did:web:hold");
    }

    #[test]
    fn parses_an_index_with_platforms() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        );
        let m = parse(body.as_bytes(), None).unwrap();
        assert!(m.is_index());
        assert_eq!(m.manifests[1].platform.as_ref().unwrap()["variant"], "v8");
        assert_eq!(m.blobs().count(), 0);
    }

    #[test]
    fn refuses_bad_manifests() {
        assert!(matches!(
            parse(b"{not json", None),
            Err(ManifestError::Invalid(_))
        ));
        assert!(matches!(
            parse(image().as_bytes(), Some(OCI_INDEX)),
            Err(ManifestError::Invalid(_))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::Invalid(_))
        ));
        let weird = r#"{"schemaVersion":2,"mediaType":"text/plain"}"#;
        assert!(matches!(
            parse(weird.as_bytes(), None),
            Err(ManifestError::Unsupported(_))
        ));
        let bad_digest = image().replace(D1, "sha256:nothex");
        assert!(parse(bad_digest.as_bytes(), None).is_err());
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(parse(&huge, None), Err(ManifestError::TooLarge));
    }

    #[test]
    fn records_name_the_blobs_they_use() {
        let layer = format!("sha256:{}", "a".repeat(64));
        let rec = json!({
            "config": { "digest": D1 },
            "layers": [{ "digest": layer }],
        });
        assert!(record_uses_blob(&rec, &D1.parse().unwrap()));
        assert!(record_uses_blob(&rec, &layer.parse().unwrap()));
        let other: Digest = format!("sha256:{}", "e".repeat(64)).parse().unwrap();
        assert!(!record_uses_blob(&rec, &other));
        assert!(!record_uses_blob(&json!({}), &other));
    }

    #[test]
    fn tag_keys_do_not_collide() {
        assert_eq!(tag_record_key("team/app", "v1"), "team~app:v1");
        assert_ne!(tag_record_key("a/b", "c"), tag_record_key("a_b", "c"));
    }
}
