//! Backfill: what a PDS already holds, read page by page and turned into the
//! same [`Change`]s a Jetstream commit gives, so the index learns records
//! written before its consumer was listening (or before its database was
//! emptied).
//!
//! A whole PDS is walked with `com.atproto.sync.listRepos` (every account on
//! it), each account with `com.atproto.repo.listRecords` per collection in
//! [`COLLECTIONS`] order. Every answer is one page with a cursor, and where a
//! walk stands is a [`Place`] (a collection and a cursor) the caller saves
//! after each page, so a walk cut off anywhere resumes where it stopped:
//! applying a page twice leaves the index as applying it once.
//! Records are validated by [`jetstream::record_change`], the one check
//! Jetstream commits get too.

use crate::collections;
use crate::identity::Did;
use crate::jetstream::{self, Change, Skip};
use serde::Deserialize;
use serde_json::Value;

/// The collections a backfill reads, in order: manifests before the tags
/// that name them (a tag keyed by a TID finds its manifest in the index),
/// pages after the repositories they describe exist; the profile, holds
/// and crew depend on nothing else.
pub const COLLECTIONS: [&str; 7] = [
    collections::MANIFEST,
    collections::TAG,
    collections::REPO_PAGE,
    collections::STAR,
    collections::PROFILE,
    collections::HOLD,
    collections::HOLD_CREW,
];

/// Records per `listRecords` page (its lexicon's maximum).
pub const RECORDS_PAGE: u32 = 100;
/// Accounts per `listRepos` page.
pub const REPOS_PAGE: u32 = 500;

/// `com.atproto.sync.listRepos` on `pds`, from `cursor`.
pub fn list_repos_url(pds: &str, cursor: Option<&str>, limit: u32) -> String {
    xrpc_url(
        pds,
        "com.atproto.sync.listRepos",
        &[("limit", Some(&limit.to_string())), ("cursor", cursor)],
    )
}

/// `com.atproto.repo.listRecords` of `did`'s `collection` on `pds`, from
/// `cursor`, oldest first.
pub fn list_records_url(
    pds: &str,
    did: &Did,
    collection: &str,
    cursor: Option<&str>,
    limit: u32,
) -> String {
    xrpc_url(
        pds,
        "com.atproto.repo.listRecords",
        &[
            ("repo", Some(did.as_str())),
            ("collection", Some(collection)),
            ("limit", Some(&limit.to_string())),
            ("reverse", Some("true")),
            ("cursor", cursor),
        ],
    )
}

fn xrpc_url(pds: &str, method: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut url = format!("{}/xrpc/{method}", pds.trim_end_matches('/'));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().filter_map(|(k, v)| v.map(|v| (*k, v))))
        .finish();
    url.push('?');
    url.push_str(&query);
    url
}

/// One `listRepos` page: the active accounts on it, and the cursor of the
/// next page (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct ReposPage {
    pub dids: Vec<Did>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct RawRepos {
    cursor: Option<String>,
    repos: Vec<RawRepo>,
}

#[derive(Deserialize)]
struct RawRepo {
    did: String,
    active: Option<bool>,
}

/// Reads a `listRepos` answer asked with `limit`. Deactivated accounts and
/// entries that are not DIDs are left out.
pub fn parse_repos(text: &str, limit: u32) -> Result<ReposPage, String> {
    let raw: RawRepos =
        serde_json::from_str(text).map_err(|e| format!("not a listRepos answer: {e}"))?;
    let full = raw.repos.len() >= limit as usize;
    let dids = raw
        .repos
        .into_iter()
        .filter(|r| r.active != Some(false))
        .filter_map(|r| r.did.parse().ok())
        .collect();
    Ok(ReposPage {
        dids,
        next: raw.cursor.filter(|_| full),
    })
}

/// One `listRecords` page: each record's change (or why it is skipped), and
/// the cursor of the next page (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsPage {
    pub changes: Vec<Result<Change, Skip>>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct RawRecords {
    cursor: Option<String>,
    records: Vec<RawRecord>,
}

#[derive(Deserialize)]
struct RawRecord {
    uri: String,
    value: Option<Value>,
}

/// Reads a `listRecords` answer for `did`'s `collection` asked with `limit`;
/// each record is validated as a Jetstream commit's is.
pub fn parse_records(
    did: &Did,
    collection: &str,
    text: &str,
    limit: u32,
) -> Result<RecordsPage, String> {
    let raw: RawRecords =
        serde_json::from_str(text).map_err(|e| format!("not a listRecords answer: {e}"))?;
    let full = raw.records.len() >= limit as usize;
    let prefix = format!("at://{did}/{collection}/");
    let changes = raw
        .records
        .into_iter()
        .map(|r| match r.uri.strip_prefix(&prefix) {
            Some(rkey) if !rkey.is_empty() && !rkey.contains('/') => {
                jetstream::record_change(did, collection, rkey, r.value.as_ref())
            }
            _ => Err(Skip::Malformed {
                collection: collection.to_string(),
                uri: r.uri.clone(),
                why: format!("listed for {did}'s {collection} under another URI"),
            }),
        })
        .collect();
    Ok(RecordsPage {
        changes,
        next: raw.cursor.filter(|_| full),
    })
}

/// Where the walk of one account stands: the collection being read and the
/// cursor of its next page (`None`: its first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub collection: &'static str,
    pub cursor: Option<String>,
}

impl Place {
    /// The first page of the first collection.
    pub fn start() -> Self {
        Place {
            collection: COLLECTIONS[0],
            cursor: None,
        }
    }

    /// A place saved earlier; one naming no collection we read starts over.
    pub fn saved(collection: Option<&str>, cursor: Option<&str>) -> Self {
        match collection.and_then(|c| COLLECTIONS.iter().find(|k| **k == c)) {
            Some(collection) => Place {
                collection,
                cursor: cursor.map(str::to_string),
            },
            None => Place::start(),
        }
    }

    /// Where to go once the page read here answered `next`: its next page,
    /// else the next collection's first; `None` when the account is done.
    pub fn after(&self, next: Option<String>) -> Option<Place> {
        if next.is_some() {
            return Some(Place {
                collection: self.collection,
                cursor: next,
            });
        }
        let i = COLLECTIONS.iter().position(|c| *c == self.collection)?;
        COLLECTIONS.get(i + 1).map(|collection| Place {
            collection,
            cursor: None,
        })
    }
}

/// How many pages one run of the backfill reads at most: each is a
/// subrequest, and an invocation may make 50 (Workers Free) or 1,000
/// (Paid), DID resolutions and D1 batches included.
pub const PAGES_PER_RUN: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const D1: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn alice() -> Did {
        ALICE.parse().unwrap()
    }

    #[test]
    fn urls_name_the_method_and_encode_their_parameters() {
        assert_eq!(
            list_repos_url("http://127.0.0.1:2583/", None, 500),
            "http://127.0.0.1:2583/xrpc/com.atproto.sync.listRepos?limit=500"
        );
        assert_eq!(
            list_repos_url("https://pds.example", Some("a b&c"), 10),
            "https://pds.example/xrpc/com.atproto.sync.listRepos?limit=10&cursor=a+b%26c"
        );
        assert_eq!(
            list_records_url("https://pds.example", &alice(), "io.atcr.tag", Some("web:v1"), 100),
            format!(
                "https://pds.example/xrpc/com.atproto.repo.listRecords?repo={}&collection=io.atcr.tag\
                 &limit=100&reverse=true&cursor=web%3Av1",
                ALICE.replace(':', "%3A")
            )
        );
    }

    #[test]
    fn a_repos_page_lists_active_accounts_and_goes_on_only_when_full() {
        let text = json!({ "cursor": "c2", "repos": [
            { "did": ALICE, "head": "bafy", "rev": "3l", "active": true },
            { "did": "did:plc:gone", "head": "bafy", "rev": "3l", "active": false },
            { "did": "not a did", "head": "bafy", "rev": "3l" },
        ]})
        .to_string();
        let page = parse_repos(&text, 3).unwrap();
        assert_eq!(page.dids, vec![alice()]);
        assert_eq!(page.next.as_deref(), Some("c2"));
        // Fewer than asked: the last page, whatever cursor came with it.
        assert_eq!(parse_repos(&text, 4).unwrap().next, None);
        assert!(parse_repos("{}", 3).is_err());
        assert!(parse_repos("<html>", 3).is_err());
    }

    #[test]
    fn records_are_validated_as_jetstream_commits_are() {
        let good = json!({ "repository": "web", "tag": "v1",
            "manifest": format!("at://{ALICE}/io.atcr.manifest/web:{D1}"),
            "createdAt": "2026-12-02T05:00:00Z" });
        let text = json!({ "cursor": "web:v2", "records": [
            { "uri": format!("at://{ALICE}/io.atcr.tag/web:v1"), "cid": "bafy", "value": good },
            { "uri": format!("at://{ALICE}/io.atcr.tag/web:v2"), "cid": "bafy",
              "value": { "repository": "web", "createdAt": "2026-12-02T05:00:00Z" } },
            { "uri": format!("at://did:plc:other/io.atcr.tag/web:v3"), "cid": "bafy", "value": good },
        ]})
        .to_string();
        let page = parse_records(&alice(), collections::TAG, &text, 3).unwrap();
        assert_eq!(page.next.as_deref(), Some("web:v2"));
        let Ok(Change::Tag(tag)) = &page.changes[0] else {
            panic!("{:?}", page.changes[0])
        };
        assert_eq!((tag.repository.as_str(), tag.tag.as_str()), ("web", "v1"));
        assert_eq!(tag.digest.as_ref().map(|d| d.as_str()), Some(D1));
        assert_eq!(tag.record_uri, format!("at://{ALICE}/io.atcr.tag/web:v1"));
        assert!(
            matches!(&page.changes[1], Err(Skip::Malformed { why, .. }) if why.contains("'tag'"))
        );
        assert!(
            matches!(&page.changes[2], Err(Skip::Malformed { why, .. }) if why.contains("another URI"))
        );
        assert_eq!(
            parse_records(&alice(), collections::TAG, &text, 100)
                .unwrap()
                .next,
            None
        );
    }

    #[test]
    fn a_walk_reads_each_collection_to_its_end_then_the_next() {
        let mut place = Some(Place::start());
        let mut seen = vec![];
        // Two pages of manifests, one of everything else.
        let mut manifests_pages = 2;
        while let Some(p) = place {
            seen.push((p.collection, p.cursor.clone()));
            let next = if p.collection == collections::MANIFEST {
                manifests_pages -= 1;
                (manifests_pages > 0).then(|| "m1".to_string())
            } else {
                None
            };
            place = p.after(next);
        }
        assert_eq!(
            seen,
            vec![
                (collections::MANIFEST, None),
                (collections::MANIFEST, Some("m1".into())),
                (collections::TAG, None),
                (collections::REPO_PAGE, None),
                (collections::STAR, None),
                (collections::PROFILE, None),
                (collections::HOLD, None),
                (collections::HOLD_CREW, None),
            ]
        );
    }

    #[test]
    fn a_saved_place_resumes_there() {
        assert_eq!(
            Place::saved(Some(collections::TAG), Some("web:v1")),
            Place {
                collection: collections::TAG,
                cursor: Some("web:v1".into())
            }
        );
        assert_eq!(Place::saved(None, None), Place::start());
        assert_eq!(
            Place::saved(Some("app.bsky.feed.post"), Some("x")),
            Place::start()
        );
    }
}
