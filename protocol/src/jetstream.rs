//! Jetstream: the JSON form of the network's firehose, and what each of its
//! events changes in the index.
//!
//! A Jetstream event is `{did, time_us, kind, commit | identity | account}`;
//! a commit is `{rev, operation: create|update|delete, collection, rkey,
//! record?, cid?}` (github.com/bluesky-social/jetstream, "Consuming
//! Jetstream"). [`parse`] reads one message and validates its record
//! against the `io.atcr.*` lexicons, giving a [`Change`] to apply or a
//! [`Skip`] to count: a malformed record is never applied and never fails
//! the consumer. Applying a change twice leaves the index as applying it
//! once, so a consumer resumes from its cursor minus [`REWIND_US`].

use crate::collections;
use crate::digest::Digest;
use crate::identity::Did;
use crate::manifest::{self, DESCRIPTION_ANNOTATION};
use crate::reference::{parse_repository, parse_tag};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// The collections the index follows (Jetstream's `wantedCollections`).
pub const WANTED_COLLECTIONS: [&str; 7] = [
    collections::MANIFEST,
    collections::TAG,
    collections::STAR,
    collections::REPO_PAGE,
    collections::PROFILE,
    collections::HOLD,
    collections::HOLD_CREW,
];

/// How far before its saved cursor a consumer resumes: events near the
/// cursor may have been received but not yet applied when it stopped.
pub const REWIND_US: i64 = 5_000_000;

/// The subscription URL for a Jetstream at `base` (`wss://host` or
/// `wss://host/subscribe`), from `cursor` (unix µs) or live.
pub fn subscribe_url(base: &str, cursor: Option<i64>) -> String {
    let base = base.trim_end_matches('/');
    let mut url = if base.ends_with("/subscribe") {
        base.to_string()
    } else {
        format!("{base}/subscribe")
    };
    for (i, collection) in WANTED_COLLECTIONS.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str("wantedCollections=");
        url.push_str(collection);
    }
    if let Some(cursor) = cursor {
        url.push_str(&format!("&cursor={cursor}"));
    }
    url
}

/// The cursor to resume from after `saved`: a few seconds earlier.
pub fn resume_cursor(saved: Option<i64>) -> Option<i64> {
    saved.map(|c| (c - REWIND_US).max(0))
}

/// One event, read; its record validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub did: Did,
    /// Where the event is in the stream: a consumer's cursor moves past it
    /// whether it was applied or skipped.
    pub time_us: i64,
    /// What to apply, or why not (a record that breaks its lexicon).
    pub change: Result<Change, Skip>,
}

/// What an event changes in the index.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Manifest(ManifestEntry),
    ManifestDeleted {
        record_uri: String,
    },
    Tag(TagEntry),
    TagDeleted {
        record_uri: String,
    },
    Star(StarEntry),
    StarDeleted {
        record_uri: String,
    },
    /// An `io.atcr.repo.page` written: the repository's description.
    Page {
        repository: String,
        description: Option<String>,
    },
    /// An `io.atcr.repo.page` deleted (its key names the repository).
    PageDeleted {
        repository: String,
    },
    /// The author's `io.atcr.sailor.profile`: their default hold.
    Profile(ProfileEntry),
    /// The author's profile deleted: their pushes go to the appview's
    /// default hold.
    ProfileDeleted,
    /// An `io.atcr.hold` the author runs.
    Hold(HoldEntry),
    HoldDeleted {
        record_uri: String,
    },
    /// An `io.atcr.hold.crew` record: a member of the author's holds' crew.
    Crew(CrewEntry),
    CrewDeleted {
        record_uri: String,
    },
    /// The author's identity changed (handle, PDS): resolve it again.
    Identity,
    /// The author's account was deactivated (`false`: its user and their
    /// repositories leave the pages, search and the catalog) or activated
    /// again (`true`).
    Account {
        active: bool,
    },
    /// An event the index has no place for (another collection).
    Ignored,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    pub repository: String,
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// Bytes of the manifest (its `manifestBlob`'s size; 0 when absent).
    pub size: u64,
    pub hold: Option<String>,
    /// JSON array of an index's platforms.
    pub platforms: Option<String>,
    pub description: Option<String>,
    pub record_uri: String,
    /// Unix ms of the record's `updatedAt`, else `createdAt`: when it was
    /// pushed, which the index keeps however late it reads the record.
    pub changed_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagEntry {
    pub repository: String,
    pub tag: String,
    /// The `io.atcr.manifest` record the tag points at.
    pub manifest_uri: String,
    /// The digest, when the manifest's record key names it
    /// (`<repository>:<digest>`); else the index looks the URI up.
    pub digest: Option<Digest>,
    pub record_uri: String,
    /// Unix ms of the record's `updatedAt`, else `createdAt`.
    pub changed_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StarEntry {
    pub owner: Did,
    pub repository: String,
    pub record_uri: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEntry {
    /// The hold new blobs go to; `None`: the appview's default.
    pub default_hold: Option<Did>,
    /// Unix ms of the record's `updatedAt`, else its `createdAt`.
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HoldEntry {
    /// The hold's DID: the record's `endpoint` when that is a did:web,
    /// else the did:web of the endpoint's host (a hold's identity).
    pub hold: Did,
    pub endpoint: String,
    /// Whether anyone may read from it.
    pub public: bool,
    /// Unix ms of `createdAt`.
    pub created_at: i64,
    pub record_uri: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CrewEntry {
    pub member: Did,
    pub role: Option<String>,
    /// `blob:read`, `blob:write`; empty: both.
    pub permissions: Vec<String>,
    /// Unix ms of `addedAt`.
    pub added_at: i64,
    pub record_uri: String,
}

/// Why a message was not applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    /// Not a Jetstream event at all.
    Unreadable(String),
    /// A record that does not follow its lexicon.
    Malformed {
        collection: String,
        uri: String,
        why: String,
    },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Unreadable(why) => write!(f, "unreadable event: {why}"),
            Skip::Malformed {
                collection,
                uri,
                why,
            } => {
                write!(f, "malformed {collection} record {uri}: {why}")
            }
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    did: String,
    time_us: i64,
    kind: String,
    commit: Option<RawCommit>,
    account: Option<RawAccount>,
}

#[derive(Deserialize)]
struct RawAccount {
    active: bool,
}

#[derive(Deserialize)]
struct RawCommit {
    operation: String,
    collection: String,
    rkey: String,
    record: Option<Value>,
}

/// Reads one Jetstream message; `Err` when it is not one at all.
pub fn parse(text: &str) -> Result<Event, Skip> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| Skip::Unreadable(e.to_string()))?;
    let did: Did = raw
        .did
        .parse()
        .map_err(|_| Skip::Unreadable(format!("'{}' is not a DID", raw.did)))?;
    let change = match (raw.kind.as_str(), raw.commit) {
        ("account", _) => match raw.account {
            Some(account) => Ok(Change::Account {
                active: account.active,
            }),
            None => Err(Skip::Unreadable(
                "an account event without its account".into(),
            )),
        },
        ("commit", Some(commit)) => commit_change(&did, commit),
        ("commit", None) => Err(Skip::Unreadable("a commit event without its commit".into())),
        ("identity", _) => Ok(Change::Identity),
        _ => Ok(Change::Ignored),
    };
    Ok(Event {
        did,
        time_us: raw.time_us,
        change,
    })
}

fn commit_change(did: &Did, commit: RawCommit) -> Result<Change, Skip> {
    let uri = format!("at://{did}/{}/{}", commit.collection, commit.rkey);
    let collection = commit.collection.as_str();
    match commit.operation.as_str() {
        "delete" => Ok(match collection {
            collections::MANIFEST => Change::ManifestDeleted { record_uri: uri },
            collections::TAG => Change::TagDeleted { record_uri: uri },
            collections::STAR => Change::StarDeleted { record_uri: uri },
            collections::REPO_PAGE => Change::PageDeleted {
                repository: commit.rkey.replace('~', "/"),
            },
            collections::PROFILE if commit.rkey == PROFILE_KEY => Change::ProfileDeleted,
            collections::HOLD => Change::HoldDeleted { record_uri: uri },
            collections::HOLD_CREW => Change::CrewDeleted { record_uri: uri },
            _ => Change::Ignored,
        }),
        "create" | "update" => record_change(did, collection, &commit.rkey, commit.record.as_ref()),
        other => Err(Skip::Unreadable(format!("unknown operation '{other}'"))),
    }
}

/// What a record written at `at://<did>/<collection>/<rkey>` changes in the
/// index, validated against its lexicon: the one check for a record, whether
/// it came in a Jetstream commit or from a backfill's `listRecords`.
pub fn record_change(
    did: &Did,
    collection: &str,
    rkey: &str,
    record: Option<&Value>,
) -> Result<Change, Skip> {
    let uri = format!("at://{did}/{collection}/{rkey}");
    let malformed = |why: String| Skip::Malformed {
        collection: collection.to_string(),
        uri: uri.clone(),
        why,
    };
    let record = record.ok_or_else(|| malformed("no record".into()))?;
    if !record.is_object() {
        return Err(malformed("the record is not an object".into()));
    }
    let change = match collection {
        collections::MANIFEST => manifest_change(record, &uri).map(Change::Manifest),
        collections::TAG => tag_change(record, &uri).map(Change::Tag),
        collections::STAR => star_change(record, &uri).map(Change::Star),
        collections::REPO_PAGE => page_change(record),
        collections::PROFILE => profile_change(rkey, record).map(Change::Profile),
        collections::HOLD => hold_change(did, record, &uri).map(Change::Hold),
        collections::HOLD_CREW => crew_change(record, &uri).map(Change::Crew),
        _ => Ok(Change::Ignored),
    };
    change.map_err(malformed)
}

fn string<'a>(record: &'a Value, key: &str) -> Result<&'a str, String> {
    record[key]
        .as_str()
        .ok_or_else(|| format!("'{key}' is missing or not a string"))
}

fn optional_string<'a>(record: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match &record[key] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(format!("'{key}' is not a string")),
    }
}

/// The RFC 3339 datetime under `key`, as unix ms.
fn datetime(record: &Value, key: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(string(record, key)?)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("'{key}' is not a datetime"))
}

/// `createdAt` (and `updatedAt`, when present) are RFC 3339 datetimes;
/// answers the later one's unix ms (`updatedAt`, else `createdAt`).
fn datetimes(record: &Value) -> Result<i64, String> {
    let created = datetime(record, "createdAt")?;
    match record["updatedAt"] {
        Value::Null => Ok(created),
        _ => datetime(record, "updatedAt"),
    }
}

fn did_field(record: &Value, key: &str) -> Result<Did, String> {
    string(record, key)?
        .parse()
        .map_err(|_| format!("'{key}' is not a DID"))
}

fn repository(record: &Value) -> Result<String, String> {
    let name = string(record, "repository")?;
    parse_repository(name)
        .map(str::to_string)
        .map_err(|e| e.to_string())
}

fn digest_of(value: &Value, what: &str) -> Result<Digest, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{what} has no digest"))?
        .parse()
        .map_err(|_| format!("{what}'s digest is not a digest"))
}

/// A descriptor (`#descriptor` / `#manifestEntry`): mediaType, size, digest.
fn descriptor(value: &Value, what: &str) -> Result<(), String> {
    if !value.is_object() {
        return Err(format!("{what} is not a descriptor"));
    }
    value["mediaType"]
        .as_str()
        .ok_or_else(|| format!("{what} has no mediaType"))?;
    value["size"]
        .as_u64()
        .ok_or_else(|| format!("{what} has no size"))?;
    digest_of(&value["digest"], what).map(|_| ())
}

fn manifest_change(record: &Value, uri: &str) -> Result<ManifestEntry, String> {
    let changed_at = datetimes(record)?;
    let repository = repository(record)?;
    let digest = digest_of(&record["digest"], "the manifest")?;
    let media_type = string(record, "mediaType")?.to_string();
    record["schemaVersion"]
        .as_i64()
        .ok_or("'schemaVersion' is missing or not an integer")?;
    let hold = optional_string(record, "holdDid")?;
    if let Some(hold) = hold {
        hold.parse::<Did>()
            .map_err(|_| "'holdDid' is not a DID".to_string())?;
    }
    if !record["config"].is_null() {
        descriptor(&record["config"], "config")?;
    }
    let subject = match &record["subject"] {
        Value::Null => None,
        s => {
            descriptor(s, "subject")?;
            Some(digest_of(&s["digest"], "subject")?)
        }
    };
    let list = |key: &str| -> Result<&[Value], String> {
        match &record[key] {
            Value::Null => Ok(&[]),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    descriptor(item, &format!("{key}[{i}]"))?;
                }
                Ok(items)
            }
            _ => Err(format!("'{key}' is not an array")),
        }
    };
    list("layers")?;
    let entries = list("manifests")?;
    let platforms = (!entries.is_empty()).then(|| {
        Value::Array(
            entries
                .iter()
                .filter_map(|m| m.get("platform").cloned())
                .collect(),
        )
        .to_string()
    });
    let size = record["manifestBlob"]["size"].as_u64().unwrap_or(0);
    Ok(ManifestEntry {
        repository,
        digest,
        media_type,
        artifact_type: optional_string(record, "artifactType")?.map(str::to_string),
        subject,
        size,
        hold: hold.map(str::to_string),
        platforms,
        description: record["annotations"][DESCRIPTION_ANNOTATION]
            .as_str()
            .map(str::to_string),
        record_uri: uri.to_string(),
        changed_at,
    })
}

fn tag_change(record: &Value, uri: &str) -> Result<TagEntry, String> {
    let changed_at = datetimes(record)?;
    let repository = repository(record)?;
    let tag = parse_tag(string(record, "tag")?).map_err(|e| e.to_string())?;
    let manifest_uri = string(record, "manifest")?;
    let rest = manifest_uri
        .strip_prefix("at://")
        .ok_or("'manifest' is not an at-uri")?;
    let mut parts = rest.splitn(3, '/');
    let (authority, collection, rkey) = (parts.next(), parts.next(), parts.next());
    let (Some(_), Some(collections::MANIFEST), Some(rkey)) = (authority, collection, rkey) else {
        return Err("'manifest' is not the at-uri of an io.atcr.manifest record".into());
    };
    // `<repository>:<digest>`, or a TID key of a record written before.
    let digest = rkey
        .strip_prefix(&manifest::repository_key_prefix(&repository))
        .and_then(|d| d.parse().ok());
    Ok(TagEntry {
        repository,
        tag,
        manifest_uri: manifest_uri.to_string(),
        digest,
        record_uri: uri.to_string(),
        changed_at,
    })
}

fn star_change(record: &Value, uri: &str) -> Result<StarEntry, String> {
    datetimes(record)?;
    let (owner, repository) =
        crate::star::subject(record).ok_or("'subject' is not {did, repository}")?;
    parse_repository(&repository).map_err(|e| e.to_string())?;
    Ok(StarEntry {
        owner,
        repository,
        record_uri: uri.to_string(),
    })
}

/// The longest description a page may carry (its lexicon's maxLength).
const MAX_DESCRIPTION: usize = 100_000;

fn page_change(record: &Value) -> Result<Change, String> {
    datetimes(record)?;
    let repository = repository(record)?;
    let description = optional_string(record, "description")?;
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(format!("'description' is longer than {MAX_DESCRIPTION}"));
    }
    Ok(Change::Page {
        repository,
        description: description.map(str::to_string),
    })
}

/// The key of a user's one `io.atcr.sailor.profile` record.
pub const PROFILE_KEY: &str = "self";

fn profile_change(rkey: &str, record: &Value) -> Result<ProfileEntry, String> {
    if rkey != PROFILE_KEY {
        return Err(format!("a profile's key is '{PROFILE_KEY}', not '{rkey}'"));
    }
    let updated_at = datetimes(record)?;
    let default_hold = match record["defaultHold"] {
        Value::Null => None,
        _ => Some(did_field(record, "defaultHold")?),
    };
    Ok(ProfileEntry {
        default_hold,
        updated_at,
    })
}

/// The DID of the hold a record's `endpoint` names: the endpoint itself
/// when it is a did:web (holds match either, `hold-worker`'s `access`),
/// else the did:web of its http(s) URL.
pub fn hold_did_of_endpoint(endpoint: &str) -> Option<Did> {
    let did = if endpoint.starts_with("did:") {
        endpoint.parse().ok()?
    } else {
        Did::web_for_url(endpoint).ok()?
    };
    (did.method() == "web").then_some(did)
}

fn hold_change(did: &Did, record: &Value, uri: &str) -> Result<HoldEntry, String> {
    let created_at = datetime(record, "createdAt")?;
    let endpoint = string(record, "endpoint")?.trim_end_matches('/');
    let hold = hold_did_of_endpoint(endpoint)
        .ok_or("'endpoint' is neither a hold's http(s) URL nor its did:web")?;
    // A hold's records are read from its owner's repository; one claiming
    // another owner is not the owner's word.
    if &did_field(record, "owner")? != did {
        return Err("'owner' is not the account whose repository holds the record".into());
    }
    let public = record["public"]
        .as_bool()
        .ok_or("'public' is missing or not a boolean")?;
    Ok(HoldEntry {
        hold,
        endpoint: endpoint.to_string(),
        public,
        created_at,
        record_uri: uri.to_string(),
    })
}

/// The longest role or permission kept (the lexicon sets none; an index
/// row need not hold more).
const MAX_CREW_TEXT: usize = 64;

fn crew_change(record: &Value, uri: &str) -> Result<CrewEntry, String> {
    let added_at = datetime(record, "addedAt")?;
    let member = did_field(record, "member")?;
    let role = optional_string(record, "role")?;
    let permissions = match &record["permissions"] {
        Value::Null => vec![],
        Value::Array(items) => items
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or("'permissions' holds something other than strings")?,
        _ => return Err("'permissions' is not an array".into()),
    };
    if role
        .iter()
        .copied()
        .chain(permissions.iter().map(String::as_str))
        .any(|text| text.chars().count() > MAX_CREW_TEXT)
    {
        return Err(format!(
            "a role or permission is longer than {MAX_CREW_TEXT}"
        ));
    }
    Ok(CrewEntry {
        member,
        role: role.map(str::to_string),
        permissions,
        added_at,
        record_uri: uri.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const BOB: &str = "did:plc:bobbobbobbobbobbobbobbob";
    const D1: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    const D2: &str = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";

    fn commit(operation: &str, collection: &str, rkey: &str, record: Option<Value>) -> String {
        let mut commit = json!({ "rev": "3l3qo2vutsw2b", "operation": operation,
            "collection": collection, "rkey": rkey, "cid": "bafyreiexample" });
        if let Some(record) = record {
            commit["record"] = record;
        }
        json!({ "did": ALICE, "time_us": 1_725_911_162_329_308_i64, "kind": "commit", "commit": commit })
            .to_string()
    }

    fn manifest_record() -> Value {
        json!({
            "$type": "io.atcr.manifest", "repository": "team/web", "digest": D1,
            "mediaType": manifest::OCI_INDEX, "schemaVersion": 2,
            "holdDid": "did:web:hold.example.com",
            "manifests": [{ "mediaType": manifest::OCI_MANIFEST, "size": 500, "digest": D2,
                            "platform": { "architecture": "amd64", "os": "linux" } }],
            "annotations": { DESCRIPTION_ANNOTATION: "A web server" },
            "manifestBlob": { "$type": "blob", "ref": { "$link": "bafkreiexample" },
                              "mimeType": manifest::OCI_INDEX, "size": 321 },
            "createdAt": "2026-12-02T05:00:00.000Z",
        })
    }

    fn malformed(text: &str) -> String {
        match parse(text).map(|e| e.change) {
            Ok(Err(Skip::Malformed { why, .. })) => why,
            other => panic!("expected a malformed record, got {other:?}"),
        }
    }

    #[test]
    fn the_subscription_asks_for_our_collections_from_the_cursor() {
        let url = subscribe_url("wss://jetstream.example.com/", Some(42));
        assert_eq!(
            url,
            "wss://jetstream.example.com/subscribe?wantedCollections=io.atcr.manifest\
             &wantedCollections=io.atcr.tag&wantedCollections=io.atcr.sailor.star\
             &wantedCollections=io.atcr.repo.page&wantedCollections=io.atcr.sailor.profile\
             &wantedCollections=io.atcr.hold&wantedCollections=io.atcr.hold.crew&cursor=42"
        );
        assert!(subscribe_url("ws://127.0.0.1:6008/subscribe", None)
            .starts_with("ws://127.0.0.1:6008/subscribe?wantedCollections="));
        assert!(!subscribe_url("ws://h", None).contains("cursor"));
    }

    #[test]
    fn a_consumer_resumes_a_few_seconds_before_its_cursor() {
        assert_eq!(resume_cursor(None), None);
        assert_eq!(resume_cursor(Some(10_000_000)), Some(5_000_000));
        assert_eq!(resume_cursor(Some(1)), Some(0));
    }

    #[test]
    fn a_manifest_record_becomes_an_index_entry() {
        let event = parse(&commit(
            "create",
            "io.atcr.manifest",
            "team~web:x",
            Some(manifest_record()),
        ))
        .unwrap();
        assert_eq!(event.did.as_str(), ALICE);
        assert_eq!(event.time_us, 1_725_911_162_329_308);
        let Ok(Change::Manifest(m)) = event.change else {
            panic!("{:?}", event.change)
        };
        assert_eq!(m.repository, "team/web");
        assert_eq!(m.digest.as_str(), D1);
        assert_eq!(m.size, 321);
        assert_eq!(m.hold.as_deref(), Some("did:web:hold.example.com"));
        assert_eq!(
            m.platforms.as_deref(),
            Some(r#"[{"architecture":"amd64","os":"linux"}]"#)
        );
        assert_eq!(m.description.as_deref(), Some("A web server"));
        // When it was pushed (createdAt), not when the index read it.
        assert_eq!(m.changed_at, 1_796_187_600_000);
        assert_eq!(
            m.record_uri,
            format!("at://{ALICE}/io.atcr.manifest/team~web:x")
        );
    }

    #[test]
    fn malformed_manifests_are_skipped_with_the_reason() {
        let with = |key: &str, value: Value| {
            let mut r = manifest_record();
            r[key] = value;
            commit("create", "io.atcr.manifest", "k", Some(r))
        };
        let without = |key: &str| {
            let mut r = manifest_record();
            r.as_object_mut().unwrap().remove(key);
            commit("create", "io.atcr.manifest", "k", Some(r))
        };
        assert!(malformed(&with("digest", json!("sha256:nothex"))).contains("digest"));
        assert!(malformed(&without("mediaType")).contains("mediaType"));
        assert!(malformed(&with("schemaVersion", json!("2"))).contains("schemaVersion"));
        assert!(malformed(&with("repository", json!("Team/Web"))).contains("repository"));
        assert!(malformed(&with("repository", json!(""))).contains("repository"));
        assert!(malformed(&with("createdAt", json!("yesterday"))).contains("createdAt"));
        assert!(malformed(&with("holdDid", json!("hold"))).contains("holdDid"));
        assert!(malformed(&with(
            "layers",
            json!([{ "mediaType": "x", "size": -1, "digest": D1 }])
        ))
        .contains("layers[0]"));
        assert!(malformed(&with("manifests", json!({}))).contains("manifests"));
        assert!(malformed(&commit(
            "create",
            "io.atcr.manifest",
            "k",
            Some(json!("text"))
        ))
        .contains("object"));
        assert!(malformed(&commit("update", "io.atcr.manifest", "k", None)).contains("no record"));
    }

    #[test]
    fn tags_point_at_a_manifest_by_record_key() {
        let record = |manifest: &str| {
            json!({ "repository": "team/web", "tag": "v1", "manifest": manifest,
                                              "createdAt": "2026-12-02T05:00:00Z" })
        };
        let uri = format!("at://{ALICE}/io.atcr.manifest/team~web:{D1}");
        let Change::Tag(tag) = parse(&commit(
            "create",
            "io.atcr.tag",
            "team~web:v1",
            Some(record(&uri)),
        ))
        .unwrap()
        .change
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (tag.repository.as_str(), tag.tag.as_str()),
            ("team/web", "v1")
        );
        assert_eq!(tag.digest.as_ref().map(Digest::as_str), Some(D1));
        assert_eq!(
            tag.record_uri,
            format!("at://{ALICE}/io.atcr.tag/team~web:v1")
        );
        // A TID-keyed manifest: the index looks the URI up.
        let tid = format!("at://{ALICE}/io.atcr.manifest/3l3qo2vutsw2b");
        let Change::Tag(tag) = parse(&commit("update", "io.atcr.tag", "k", Some(record(&tid))))
            .unwrap()
            .change
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((tag.digest, tag.manifest_uri), (None, tid));
        assert!(malformed(&commit(
            "create",
            "io.atcr.tag",
            "k",
            Some(record("https://x"))
        ))
        .contains("at-uri"));
        let elsewhere = format!("at://{ALICE}/io.atcr.tag/x");
        assert!(malformed(&commit(
            "create",
            "io.atcr.tag",
            "k",
            Some(record(&elsewhere))
        ))
        .contains("io.atcr.manifest"));
        let mut bad = record(&uri);
        bad["tag"] = json!("-v1");
        assert!(malformed(&commit("create", "io.atcr.tag", "k", Some(bad))).contains("tag"));
    }

    #[test]
    fn stars_and_pages() {
        let star = json!({ "subject": { "did": BOB, "repository": "app" }, "createdAt": "2026-12-02T05:00:00Z" });
        let Change::Star(s) = parse(&commit("create", "io.atcr.sailor.star", "abc", Some(star)))
            .unwrap()
            .change
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((s.owner.as_str(), s.repository.as_str()), (BOB, "app"));
        let no_subject = json!({ "createdAt": "2026-12-02T05:00:00Z" });
        assert!(malformed(&commit(
            "create",
            "io.atcr.sailor.star",
            "abc",
            Some(no_subject)
        ))
        .contains("subject"));

        let page = json!({ "repository": "team/web", "description": "# Web", "createdAt": "2026-12-02T05:00:00Z" });
        assert_eq!(
            parse(&commit(
                "update",
                "io.atcr.repo.page",
                "team~web",
                Some(page)
            ))
            .unwrap()
            .change
            .unwrap(),
            Change::Page {
                repository: "team/web".into(),
                description: Some("# Web".into())
            }
        );
        let long = json!({ "repository": "web", "description": "x".repeat(100_001), "createdAt": "2026-12-02T05:00:00Z" });
        assert!(
            malformed(&commit("create", "io.atcr.repo.page", "web", Some(long))).contains("longer")
        );
    }

    fn profile(record: Value) -> Result<Change, Skip> {
        parse(&commit(
            "create",
            "io.atcr.sailor.profile",
            "self",
            Some(record),
        ))
        .unwrap()
        .change
    }

    #[test]
    fn a_profile_names_the_default_hold_and_when_it_changed() {
        let record = json!({ "defaultHold": "did:web:hold.example.com",
            "createdAt": "2026-12-02T05:00:00Z", "updatedAt": "2026-12-03T05:00:00.250Z" });
        assert_eq!(
            profile(record).unwrap(),
            Change::Profile(ProfileEntry {
                default_hold: Some("did:web:hold.example.com".parse().unwrap()),
                updated_at: 1_796_274_000_250,
            })
        );
        // No hold named: the appview's default; no updatedAt: when it was made.
        assert_eq!(
            profile(json!({ "createdAt": "2026-12-02T05:00:00Z" })).unwrap(),
            Change::Profile(ProfileEntry {
                default_hold: None,
                updated_at: 1_796_187_600_000,
            })
        );
        let why = |record| match profile(record) {
            Err(Skip::Malformed { why, .. }) => why,
            other => panic!("expected a malformed profile, got {other:?}"),
        };
        assert!(
            why(json!({ "defaultHold": "hold", "createdAt": "2026-12-02T05:00:00Z" }))
                .contains("defaultHold")
        );
        assert!(
            why(json!({ "defaultHold": 7, "createdAt": "2026-12-02T05:00:00Z" }))
                .contains("defaultHold")
        );
        assert!(why(json!({ "defaultHold": "did:web:h.example" })).contains("createdAt"));
        assert!(
            why(json!({ "createdAt": "2026-12-02T05:00:00Z", "updatedAt": "later" }))
                .contains("updatedAt")
        );
        let elsewhere = commit(
            "create",
            "io.atcr.sailor.profile",
            "other",
            Some(json!({ "createdAt": "2026-12-02T05:00:00Z" })),
        );
        assert!(malformed(&elsewhere).contains("'self'"));
    }

    fn hold_record() -> Value {
        json!({ "endpoint": "https://hold.example.com/", "owner": ALICE, "public": true,
                "createdAt": "2026-12-02T05:00:00Z" })
    }

    #[test]
    fn a_hold_record_names_its_hold_by_the_endpoint() {
        let event = parse(&commit("create", "io.atcr.hold", "h1", Some(hold_record()))).unwrap();
        assert_eq!(
            event.change.unwrap(),
            Change::Hold(HoldEntry {
                hold: "did:web:hold.example.com".parse().unwrap(),
                endpoint: "https://hold.example.com".into(),
                public: true,
                created_at: 1_796_187_600_000,
                record_uri: format!("at://{ALICE}/io.atcr.hold/h1"),
            })
        );
        let hold_of = |endpoint: &str| hold_did_of_endpoint(endpoint).map(|d| d.to_string());
        // A loopback hold with a port is named as localhost (as it names itself).
        assert_eq!(
            hold_of("http://127.0.0.1:8789").as_deref(),
            Some("did:web:localhost%3A8789")
        );
        assert_eq!(
            hold_of("did:web:localhost%3A8789").as_deref(),
            Some("did:web:localhost%3A8789")
        );
        assert_eq!(hold_of("did:plc:ewvi7nxzyoun6zhxrhs64oiz"), None);
        assert_eq!(hold_of("ftp://hold.example.com"), None);
        assert_eq!(hold_of("hold.example.com"), None);
    }

    #[test]
    fn malformed_holds_are_skipped_with_the_reason() {
        let with = |key: &str, value: Value| {
            let mut r = hold_record();
            r[key] = value;
            commit("create", "io.atcr.hold", "h1", Some(r))
        };
        let without = |key: &str| {
            let mut r = hold_record();
            r.as_object_mut().unwrap().remove(key);
            commit("create", "io.atcr.hold", "h1", Some(r))
        };
        assert!(malformed(&with("endpoint", json!("not a url"))).contains("endpoint"));
        assert!(malformed(&with("endpoint", json!("did:plc:abc"))).contains("endpoint"));
        assert!(malformed(&without("endpoint")).contains("endpoint"));
        assert!(malformed(&with("public", json!("yes"))).contains("public"));
        assert!(malformed(&without("public")).contains("public"));
        assert!(malformed(&with("owner", json!("alice"))).contains("owner"));
        assert!(malformed(&with("owner", json!(BOB))).contains("'owner' is not the account"));
        assert!(malformed(&with("createdAt", json!("2026-12-02"))).contains("createdAt"));
    }

    #[test]
    fn crew_records_name_a_member_and_what_they_may_do() {
        let record = json!({ "member": BOB, "role": "crew", "permissions": ["blob:read"],
                             "addedAt": "2026-12-02T05:00:00Z" });
        let change = parse(&commit("create", "io.atcr.hold.crew", BOB, Some(record)))
            .unwrap()
            .change
            .unwrap();
        assert_eq!(
            change,
            Change::Crew(CrewEntry {
                member: BOB.parse().unwrap(),
                role: Some("crew".into()),
                permissions: vec!["blob:read".into()],
                added_at: 1_796_187_600_000,
                record_uri: format!("at://{ALICE}/io.atcr.hold.crew/{BOB}"),
            })
        );
        // Only member and addedAt are required.
        let bare = json!({ "member": BOB, "addedAt": "2026-12-02T05:00:00Z" });
        let Change::Crew(bare) = parse(&commit("create", "io.atcr.hold.crew", "k", Some(bare)))
            .unwrap()
            .change
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((bare.role, bare.permissions), (None, vec![]));
        let crew = |record: Value| commit("create", "io.atcr.hold.crew", "k", Some(record));
        let at = "2026-12-02T05:00:00Z";
        assert!(malformed(&crew(json!({ "addedAt": at }))).contains("member"));
        assert!(malformed(&crew(json!({ "member": "bob", "addedAt": at }))).contains("member"));
        assert!(malformed(&crew(json!({ "member": BOB }))).contains("addedAt"));
        assert!(malformed(&crew(
            json!({ "member": BOB, "addedAt": at, "permissions": "blob:read" })
        ))
        .contains("permissions"));
        assert!(malformed(&crew(
            json!({ "member": BOB, "addedAt": at, "permissions": [1] })
        ))
        .contains("permissions"));
        assert!(
            malformed(&crew(json!({ "member": BOB, "addedAt": at, "role": 3 }))).contains("role")
        );
        assert!(malformed(&crew(
            json!({ "member": BOB, "addedAt": at, "role": "x".repeat(65) })
        ))
        .contains("longer"));
    }

    #[test]
    fn deletions_name_the_record_by_its_uri() {
        let change = |collection| {
            parse(&commit("delete", collection, "team~web:v1", None))
                .unwrap()
                .change
                .unwrap()
        };
        let uri = |collection| format!("at://{ALICE}/{collection}/team~web:v1");
        assert_eq!(
            change("io.atcr.tag"),
            Change::TagDeleted {
                record_uri: uri("io.atcr.tag")
            }
        );
        assert_eq!(
            change("io.atcr.manifest"),
            Change::ManifestDeleted {
                record_uri: uri("io.atcr.manifest")
            }
        );
        assert_eq!(
            change("io.atcr.sailor.star"),
            Change::StarDeleted {
                record_uri: uri("io.atcr.sailor.star")
            }
        );
        assert_eq!(
            parse(&commit("delete", "io.atcr.repo.page", "team~web", None))
                .unwrap()
                .change
                .unwrap(),
            Change::PageDeleted {
                repository: "team/web".into()
            }
        );
        assert_eq!(
            change("io.atcr.hold"),
            Change::HoldDeleted {
                record_uri: uri("io.atcr.hold")
            }
        );
        assert_eq!(
            change("io.atcr.hold.crew"),
            Change::CrewDeleted {
                record_uri: uri("io.atcr.hold.crew")
            }
        );
        let profile = |rkey| {
            parse(&commit("delete", "io.atcr.sailor.profile", rkey, None))
                .unwrap()
                .change
                .unwrap()
        };
        assert_eq!(profile("self"), Change::ProfileDeleted);
        // No profile lives under another key: nothing to forget.
        assert_eq!(profile("other"), Change::Ignored);
    }

    #[test]
    fn a_skipped_event_still_has_its_place_in_the_stream() {
        let event = parse(&commit("create", "io.atcr.tag", "k", Some(json!({})))).unwrap();
        assert_eq!(event.time_us, 1_725_911_162_329_308);
        assert!(matches!(event.change, Err(Skip::Malformed { .. })));
    }

    #[test]
    fn identities_are_resolved_again_accounts_hidden_or_shown_others_ignored() {
        let identity = json!({ "did": ALICE, "time_us": 5, "kind": "identity",
                               "identity": { "did": ALICE, "handle": "alice.test", "seq": 1, "time": "2026-12-02T05:00:00Z" } });
        assert_eq!(
            parse(&identity.to_string()).unwrap().change.unwrap(),
            Change::Identity
        );
        let account = json!({ "did": ALICE, "time_us": 6, "kind": "account",
                              "account": { "did": ALICE, "active": false, "status": "deactivated", "seq": 2, "time": "2026-12-02T05:00:00Z" } });
        assert_eq!(
            parse(&account.to_string()).unwrap().change.unwrap(),
            Change::Account { active: false }
        );
        let active = json!({ "did": ALICE, "time_us": 7, "kind": "account",
                             "account": { "did": ALICE, "active": true, "seq": 3, "time": "2026-12-02T05:00:00Z" } });
        assert_eq!(
            parse(&active.to_string()).unwrap().change.unwrap(),
            Change::Account { active: true }
        );
        let bare = json!({ "did": ALICE, "time_us": 8, "kind": "account" });
        assert!(matches!(
            parse(&bare.to_string()).unwrap().change,
            Err(Skip::Unreadable(_))
        ));
        assert_eq!(
            parse(&commit(
                "create",
                "app.bsky.feed.post",
                "3l3qo2vutsw2b",
                Some(json!({}))
            ))
            .unwrap()
            .change
            .unwrap(),
            Change::Ignored
        );
        assert!(matches!(parse("not json"), Err(Skip::Unreadable(_))));
        assert!(matches!(
            parse(r#"{"did":"nope","time_us":1,"kind":"commit"}"#),
            Err(Skip::Unreadable(_))
        ));
        assert!(matches!(
            parse(&json!({ "did": ALICE, "time_us": 1, "kind": "commit" }).to_string())
                .unwrap()
                .change,
            Err(Skip::Unreadable(_))
        ));
    }
}
