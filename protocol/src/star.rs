//! Stars: `io.atcr.sailor.star` records, kept in the starrer's own PDS.
//!
//! A star's record key is derived from what it stars, so starring twice
//! writes one record and unstarring knows which record to delete without
//! searching the starrer's records.

use crate::collections;
use crate::Did;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The record key of `starrer`'s star on `owner`'s `repository`: the first
/// 16 bytes of SHA-256 over both, in hex (a DID may hold `%`, which record
/// keys may not).
pub fn record_key(owner: &Did, repository: &str) -> String {
    let digest = Sha256::digest(format!("{owner}\n{repository}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `io.atcr.sailor.star` record on `owner`'s `repository`.
pub fn record(owner: &Did, repository: &str, created_at: &str) -> Value {
    json!({
        "$type": collections::STAR,
        "subject": { "did": owner.as_str(), "repository": repository },
        "createdAt": created_at,
    })
}

/// What a star record stars, if it is well formed.
pub fn subject(record: &Value) -> Option<(Did, String)> {
    let subject = record.get("subject")?;
    let did = subject.get("did")?.as_str()?.parse().ok()?;
    let repository = subject.get("repository")?.as_str()?;
    (!repository.is_empty()).then(|| (did, repository.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

    #[test]
    fn a_star_has_one_key_per_repository_valid_as_a_record_key() {
        let alice: Did = ALICE.parse().unwrap();
        let web: Did = "did:web:localhost%3A8080".parse().unwrap();
        let key = record_key(&alice, "tools/web");
        assert_eq!(key, record_key(&alice, "tools/web"));
        assert_ne!(key, record_key(&alice, "tools"));
        assert_ne!(key, record_key(&web, "tools/web"));
        assert_eq!(key.len(), 32);
        assert!(record_key(&web, "x").bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_record_names_its_subject_and_reads_back() {
        let alice: Did = ALICE.parse().unwrap();
        let record = record(&alice, "web", "2026-12-02T05:00:00Z");
        assert_eq!(record["$type"], "io.atcr.sailor.star");
        assert_eq!(subject(&record), Some((alice, "web".to_string())));
        assert_eq!(
            subject(&json!({ "subject": { "did": "nope", "repository": "web" } })),
            None
        );
        assert_eq!(
            subject(&json!({ "subject": { "did": ALICE, "repository": "" } })),
            None
        );
    }
}
