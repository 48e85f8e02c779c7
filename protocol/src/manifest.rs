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

/// The largest `io.atcr.manifest` record written, in bytes of JSON: the
/// reference PDS refuses XRPC JSON bodies over 150 KiB, and the
/// `putRecord` envelope needs a little room.
pub const MAX_RECORD_BYTES: usize = 140 * 1024;

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

/// The annotation an image describes itself with (OCI image spec).
pub const DESCRIPTION_ANNOTATION: &str = "org.opencontainers.image.description";

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

    /// Blobs that must be in the registry before the manifest may be
    /// stored: the config and every layer that is not foreign.
    pub fn blobs(&self) -> impl Iterator<Item = &Reference> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.is_foreign()))
    }
}

/// Layer media types whose content a registry is not expected to hold
/// (image spec, "Non-distributable layers"; Docker's foreign layers).
const NON_DISTRIBUTABLE: [&str; 2] = [
    "application/vnd.oci.image.layer.nondistributable.",
    "application/vnd.docker.image.rootfs.foreign.",
];

impl Reference {
    /// A layer fetched from elsewhere: a non-distributable media type, or
    /// `urls` saying where its content lives. Never uploaded here.
    pub fn is_foreign(&self) -> bool {
        NON_DISTRIBUTABLE
            .iter()
            .any(|prefix| self.media_type.starts_with(prefix))
            || self.raw["urls"].as_array().is_some_and(|u| !u.is_empty())
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
    #[error("the manifest names too many descriptors to fit a PDS record ({0} bytes without annotations; at most {1})")]
    RecordTooLarge(usize, usize),
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

/// The record shrunk to at most `max_bytes` of JSON, for PDSs that refuse
/// larger records. Annotations go first (the manifest's, then its
/// descriptors'): they are what makes big manifests big, and the exact
/// bytes in `manifestBlob` keep them. Descriptors themselves never go, since
/// they say which blobs the manifest needs.
pub fn fit_record(mut record: Value, max_bytes: usize) -> Result<Value, ManifestError> {
    let size = |r: &Value| r.to_string().len();
    if size(&record) <= max_bytes {
        return Ok(record);
    }
    if let Some(map) = record.as_object_mut() {
        map.remove("annotations");
    }
    if size(&record) <= max_bytes {
        return Ok(record);
    }
    for key in ["config", "subject"] {
        if let Some(d) = record.get_mut(key).and_then(Value::as_object_mut) {
            d.remove("annotations");
        }
    }
    for key in ["layers", "manifests"] {
        if let Some(list) = record.get_mut(key).and_then(Value::as_array_mut) {
            for d in list.iter_mut().filter_map(Value::as_object_mut) {
                d.remove("annotations");
            }
        }
    }
    match size(&record) {
        fits if fits <= max_bytes => Ok(record),
        too_big => Err(ManifestError::RecordTooLarge(too_big, max_bytes)),
    }
}

/// Record key of the `io.atcr.tag` record for `repository:tag`. Record keys
/// may not hold `/`; `~` never appears in repository names nor `:` in tags,
/// so the mapping cannot collide.
pub fn tag_record_key(repository: &str, tag: &str) -> String {
    format!("{}{tag}", repository_key_prefix(repository))
}

/// Record key of the `io.atcr.manifest` record of `digest` in `repository`:
/// known in advance, so a manifest is read by key, never searched for.
/// (Records written before this scheme have TID keys; the index finds them.)
pub fn manifest_record_key(repository: &str, digest: &Digest) -> String {
    format!("{}{digest}", repository_key_prefix(repository))
}

/// What the record keys of one repository's tags and manifests start with.
/// A PDS lists records in key order, so a repository's records are one
/// contiguous range, read without touching the owner's other repositories.
pub fn repository_key_prefix(repository: &str) -> String {
    format!("{}:", repository.replace('/', "~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_of_a_repository_share_its_prefix_and_no_other_repository_does() {
        let digest: Digest = D1.parse().unwrap();
        let key = manifest_record_key("team/app", &digest);
        assert_eq!(key, format!("team~app:{D1}"));
        assert!(key.starts_with(&repository_key_prefix("team/app")));
        assert!(tag_record_key("team/app", "v1").starts_with(&repository_key_prefix("team/app")));
        // Neither a repository nested below nor one whose name extends it shares the range.
        assert!(!manifest_record_key("team/app/x", &digest)
            .starts_with(&repository_key_prefix("team/app")));
        assert!(!tag_record_key("team/app-x", "v1").starts_with(&repository_key_prefix("team/app")));
        // Every character is one a record key may hold, and the longest fits in 512.
        let long = "a".repeat(255);
        let sha512: Digest = format!("sha512:{}", "0".repeat(128)).parse().unwrap();
        let longest = manifest_record_key(&long, &sha512);
        assert!(longest.len() <= 512);
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:~".contains(&b)));
    }

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
    fn foreign_layers_need_not_be_here() {
        let foreign = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[
              {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"sha256:{a}","size":10}},
              {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:{b}","size":10}},
              {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{c}","size":10,"urls":["https://example.com/layer"]}},
              {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":10}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64),
        );
        let m = parse(foreign.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        let needed: Vec<_> = m.blobs().map(|b| b.digest.to_string()).collect();
        assert_eq!(needed, vec![D1.to_string(), D1.to_string()]);
        assert_eq!(m.layers.iter().filter(|l| l.is_foreign()).count(), 3);
        // The record still names every layer, urls included.
        let rec = record(
            &m,
            "app",
            &Digest::of(crate::digest::Algorithm::Sha256, b"x"),
            "did:web:h",
            json!({}),
            "t",
        );
        assert_eq!(rec["layers"].as_array().unwrap().len(), 4);
        assert_eq!(rec["layers"][2]["urls"][0], "https://example.com/layer");
    }

    #[test]
    fn big_records_shed_annotations_but_never_descriptors() {
        let big = "x".repeat(10_000);
        let annotations: serde_json::Map<String, Value> =
            (0..40).map(|i| (format!("a{i}"), json!(big))).collect();
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":10,"annotations":{{"l":"{big}"}}}}],
            "annotations":{}}}"#,
            Value::Object(annotations)
        );
        let m = parse(text.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        let full = record(
            &m,
            "app",
            &Digest::of(crate::digest::Algorithm::Sha256, text.as_bytes()),
            "did:web:h",
            json!({}),
            "t",
        );
        assert!(full.to_string().len() > 400_000);
        // Fits as is: unchanged.
        assert_eq!(fit_record(full.clone(), 1_000_000).unwrap(), full);
        // The manifest's annotations go first.
        let shed = fit_record(full.clone(), 50_000).unwrap();
        assert!(shed.get("annotations").is_none());
        assert_eq!(shed["layers"][0]["annotations"]["l"], json!(big));
        // Then the descriptors' annotations; the descriptors stay.
        let shed = fit_record(full.clone(), 2_000).unwrap();
        assert!(shed["layers"][0].get("annotations").is_none());
        assert_eq!(shed["layers"][0]["digest"], D1);
        assert_eq!(shed["config"]["digest"], D1);
        // Descriptors alone too big: a clear refusal.
        assert!(matches!(
            fit_record(full, 100),
            Err(ManifestError::RecordTooLarge(_, 100))
        ));
    }

    #[test]
    fn tag_keys_do_not_collide() {
        assert_eq!(tag_record_key("team/app", "v1"), "team~app:v1");
        assert_ne!(tag_record_key("a/b", "c"), tag_record_key("a_b", "c"));
    }
}
