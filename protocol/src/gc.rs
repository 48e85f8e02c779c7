//! Garbage in a hold's bucket: what may go, decided without touching storage.
//!
//! Two kinds of garbage:
//! - **staging leftovers**: objects under the upload prefix
//!   (`KeyLayout::upload_key`) that no upload completed or aborted; the hold's
//!   scheduled sweep removes those older than [`STAGING_MAX_AGE_SECS`];
//! - **unreferenced blobs**: verified blobs (`KeyLayout::blob_key`) that no
//!   `io.atcr.manifest` record of the hold's users names, older than a grace
//!   period (so a push between its blob uploads and its manifest PUT never
//!   loses a blob). The owner runs this collection (`collectGarbage`).
//!
//! The hold's adapter lists storage (S3 `ListObjectsV2`, parsed here, or the
//! R2 binding) and reads the records; this module decides.

use crate::digest::Digest;
use crate::paths::KeyLayout;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;

/// Staged uploads older than this are abandoned: an upload session lives at
/// most six hours (`SESSION_LIFETIME_SECS` in the hold).
pub const STAGING_MAX_AGE_SECS: u64 = 24 * 3600;

/// The default grace period of a collection: blobs younger than this stay
/// even when nothing references them yet.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 3600;

/// One object in a listing of the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// When storage last wrote it (unix milliseconds).
    pub modified_ms: u64,
}

/// One page of a listing; `cursor` continues it when more follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub cursor: Option<String>,
}

/// An incomplete multipart upload, as `ListMultipartUploads` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    #[error("storage answered a listing without <{0}>")]
    Missing(&'static str),
    #[error("storage answered a listing with a bad {0}: {1}")]
    Bad(&'static str, String),
}

/// Parses an S3 `ListObjectsV2` answer (`ListBucketResult`).
pub fn parse_list_objects_v2(xml: &str) -> Result<ListPage, ListError> {
    if !xml.contains("<ListBucketResult") {
        return Err(ListError::Missing("ListBucketResult"));
    }
    let mut objects = Vec::new();
    for item in elements(xml, "Contents") {
        let key = text(item, "Key").ok_or(ListError::Missing("Key"))?;
        let size = text(item, "Size").ok_or(ListError::Missing("Size"))?;
        let size = size
            .trim()
            .parse()
            .map_err(|_| ListError::Bad("Size", size.clone()))?;
        let modified = text(item, "LastModified").ok_or(ListError::Missing("LastModified"))?;
        let modified_ms =
            parse_time_ms(&modified).ok_or(ListError::Bad("LastModified", modified))?;
        objects.push(ListedObject {
            key,
            size,
            modified_ms,
        });
    }
    let truncated = text(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    let cursor = match (truncated, text(xml, "NextContinuationToken")) {
        (false, _) => None,
        (true, Some(token)) if !token.is_empty() => Some(token),
        (true, _) => return Err(ListError::Missing("NextContinuationToken")),
    };
    Ok(ListPage { objects, cursor })
}

/// Parses an S3 `ListMultipartUploads` answer: the uploads of this page
/// (a sweep takes one page per run; the next run sees the rest).
pub fn parse_list_multipart_uploads(xml: &str) -> Result<Vec<PendingUpload>, ListError> {
    if !xml.contains("<ListMultipartUploadsResult") {
        return Err(ListError::Missing("ListMultipartUploadsResult"));
    }
    let mut uploads = Vec::new();
    for item in elements(xml, "Upload") {
        let key = text(item, "Key").ok_or(ListError::Missing("Key"))?;
        let upload_id = text(item, "UploadId").ok_or(ListError::Missing("UploadId"))?;
        let initiated = text(item, "Initiated").ok_or(ListError::Missing("Initiated"))?;
        let initiated_ms =
            parse_time_ms(&initiated).ok_or(ListError::Bad("Initiated", initiated))?;
        uploads.push(PendingUpload {
            key,
            upload_id,
            initiated_ms,
        });
    }
    Ok(uploads)
}

/// An RFC 3339 time (`2025-01-02T03:04:05.000Z`) as unix milliseconds.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// The bodies of every `<tag>…</tag>` in `xml`, in order (S3 listings never
/// nest an element in one of the same name).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

fn text(xml: &str, tag: &str) -> Option<String> {
    crate::s3::xml_element(xml, tag)
}

/// Staging objects older than `max_age_secs` at `now_ms`: uploads nobody
/// completed or aborted.
pub fn stale_staging(
    layout: &KeyLayout,
    objects: &[ListedObject],
    now_ms: u64,
    max_age_secs: u64,
) -> Vec<String> {
    objects
        .iter()
        .filter(|o| layout.is_upload_key(&o.key))
        .filter(|o| now_ms.saturating_sub(o.modified_ms) > max_age_secs * 1000)
        .map(|o| o.key.clone())
        .collect()
}

/// Every digest an `io.atcr.manifest` record names: its config and layers
/// (blobs), and also what it names that is not a blob here (an index's
/// manifests, its subject, its own digest). Keeping a digest too many is
/// harmless; deleting one a record needs is not, so any `digest` anywhere
/// in the record counts.
pub fn record_digests(record: &Value, out: &mut HashSet<Digest>) {
    match record {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "digest" {
                    if let Some(d) = value.as_str().and_then(|s| s.parse().ok()) {
                        out.insert(d);
                    }
                }
                record_digests(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| record_digests(v, out)),
        _ => {}
    }
}

/// A blob the collection removes (or, on a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Garbage {
    pub digest: Digest,
    pub size: u64,
    pub age_seconds: u64,
    #[serde(skip)]
    pub key: String,
}

/// What a collection keeps, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// Named by a manifest record.
    pub referenced: u64,
    /// Unreferenced, but younger than the grace period.
    pub within_grace: u64,
    /// Objects under the blob prefix whose key names no digest.
    pub unrecognized: u64,
}

/// The plan of a collection over the listed blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub garbage: Vec<Garbage>,
    pub kept: Kept,
}

/// Decides which listed blobs go: unreferenced and older than the grace
/// period. Objects that are not blobs (staging keys, anything else) are
/// never garbage here.
pub fn plan(
    layout: &KeyLayout,
    objects: &[ListedObject],
    referenced: &HashSet<Digest>,
    now_ms: u64,
    grace_secs: u64,
) -> Plan {
    let mut plan = Plan::default();
    for object in objects {
        let Some(digest) = layout.blob_digest(&object.key) else {
            if layout.is_blob_key(&object.key) {
                plan.kept.unrecognized += 1;
            }
            continue;
        };
        let age_ms = now_ms.saturating_sub(object.modified_ms);
        if referenced.contains(&digest) {
            plan.kept.referenced += 1;
        } else if age_ms < grace_secs.saturating_mul(1000) {
            plan.kept.within_grace += 1;
        } else {
            plan.garbage.push(Garbage {
                digest,
                size: object.size,
                age_seconds: age_ms / 1000,
                key: object.key.clone(),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const M: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    const DAY_MS: u64 = 24 * 3600 * 1000;

    fn d(s: &str) -> Digest {
        s.parse().unwrap()
    }

    fn blob(digest: &str, modified_ms: u64) -> ListedObject {
        ListedObject {
            key: KeyLayout::default().blob_key(&d(digest)),
            size: 10,
            modified_ms,
        }
    }

    #[test]
    fn parses_a_list_objects_v2_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>docker/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>docker/a&amp;b</Key><LastModified>2025-01-02T03:04:05.000Z</LastModified><ETag>"x"</ETag><Size>123</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>docker/c</Key><LastModified>2025-01-02T03:04:06Z</LastModified><Size>0</Size></Contents>
<NextContinuationToken>tok/en=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_objects_v2(xml).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "docker/a&b");
        assert_eq!(page.objects[0].size, 123);
        assert_eq!(page.objects[0].modified_ms, 1_735_787_045_000);
        assert_eq!(page.objects[1].modified_ms, 1_735_787_046_000);
        assert_eq!(page.cursor.as_deref(), Some("tok/en="));
    }

    #[test]
    fn a_last_page_has_no_cursor_and_an_empty_one_no_objects() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>";
        assert_eq!(parse_list_objects_v2(xml).unwrap(), ListPage::default());
    }

    #[test]
    fn malformed_listings_are_errors_not_empty_pages() {
        assert!(parse_list_objects_v2("<Error><Code>AccessDenied</Code></Error>").is_err());
        let no_size = "<ListBucketResult><Contents><Key>k</Key><LastModified>2025-01-02T03:04:05Z</LastModified></Contents></ListBucketResult>";
        assert_eq!(
            parse_list_objects_v2(no_size),
            Err(ListError::Missing("Size"))
        );
        let bad_time = "<ListBucketResult><Contents><Key>k</Key><Size>1</Size><LastModified>yesterday</LastModified></Contents></ListBucketResult>";
        assert!(parse_list_objects_v2(bad_time).is_err());
        let truncated = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(parse_list_objects_v2(truncated).is_err());
    }

    #[test]
    fn parses_multipart_upload_listings() {
        let xml = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>k2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>\
            <Upload><Key>k1</Key><UploadId>u1</UploadId><Initiated>2025-01-02T03:04:05.000Z</Initiated></Upload>\
            <Upload><Key>k2</Key><UploadId>u2</UploadId><Initiated>2025-01-02T03:04:05.000Z</Initiated></Upload></ListMultipartUploadsResult>";
        let uploads = parse_list_multipart_uploads(xml).unwrap();
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[1].upload_id, "u2");
        assert_eq!(uploads[1].initiated_ms, 1_735_787_045_000);
        assert!(parse_list_multipart_uploads("<Error/>").is_err());
    }

    #[test]
    fn only_old_staging_objects_are_stale() {
        let now = 10 * DAY_MS;
        let objects = [
            ListedObject {
                key: KeyLayout::default().upload_key("old"),
                size: 1,
                modified_ms: now - DAY_MS - 1000,
            },
            ListedObject {
                key: KeyLayout::default().upload_key("fresh"),
                size: 1,
                modified_ms: now - 3600 * 1000,
            },
            blob(A, 0),
        ];
        assert_eq!(
            stale_staging(&KeyLayout::default(), &objects, now, STAGING_MAX_AGE_SECS),
            vec![KeyLayout::default().upload_key("old")]
        );
    }

    #[test]
    fn records_name_their_config_layers_children_and_subject() {
        let record = json!({
            "$type": "io.atcr.manifest",
            "digest": M,
            "holdDid": "did:web:elsewhere",
            "config": { "digest": A, "size": 2 },
            "layers": [{ "digest": B, "size": 3 }, { "digest": "not a digest" }],
            "subject": { "digest": C },
        });
        let mut out = HashSet::new();
        record_digests(&record, &mut out);
        assert_eq!(out, [A, B, C, M].into_iter().map(d).collect());
    }

    #[test]
    fn only_unreferenced_blobs_past_the_grace_period_go() {
        let now = 10 * DAY_MS;
        let objects = [
            blob(A, now - 2 * DAY_MS), // referenced
            blob(B, now - 2 * DAY_MS), // garbage
            blob(C, now - 60 * 1000),  // within grace
            ListedObject {
                key: KeyLayout::default().upload_key("s"),
                size: 5,
                modified_ms: 0,
            },
            ListedObject {
                key: "docker/registry/v2/blobs/sha256/zz/odd/data".into(),
                size: 5,
                modified_ms: 0,
            },
        ];
        let referenced = [d(A)].into_iter().collect();
        let plan = plan(
            &KeyLayout::default(),
            &objects,
            &referenced,
            now,
            DEFAULT_GRACE_SECS,
        );
        assert_eq!(plan.garbage.len(), 1);
        assert_eq!(plan.garbage[0].digest, d(B));
        assert_eq!(plan.garbage[0].age_seconds, 2 * 24 * 3600);
        assert_eq!(plan.garbage[0].key, KeyLayout::default().blob_key(&d(B)));
        assert_eq!(
            plan.kept,
            Kept {
                referenced: 1,
                within_grace: 1,
                unrecognized: 1
            }
        );
        // A grace of zero takes the young one too.
        let plan0 = super::plan(&KeyLayout::default(), &objects, &referenced, now, 0);
        assert_eq!(plan0.garbage.len(), 2);
    }
}
