//! Pull counting off the request path: each manifest GET becomes one small
//! event on a queue, and the consumer folds a batch of events into one
//! upsert per repository, so D1 sees a handful of writes per batch instead
//! of one per pull.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One pull of a repository, as the queue carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullEvent {
    /// The owner's DID.
    pub owner: String,
    pub repository: String,
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
}

/// The pulls of one repository in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullTally {
    pub owner: String,
    pub repository: String,
    pub count: u64,
    /// The latest pull of the batch.
    pub last_pull: u64,
}

/// Folds events into one tally per repository, in a stable order (owner,
/// then repository) so the writes of a batch are deterministic.
pub fn tally<'a>(events: impl IntoIterator<Item = &'a PullEvent>) -> Vec<PullTally> {
    let mut by_repository: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for event in events {
        let entry = by_repository
            .entry((event.owner.as_str(), event.repository.as_str()))
            .or_insert((0, 0));
        entry.0 += 1;
        entry.1 = entry.1.max(event.at);
    }
    by_repository
        .into_iter()
        .map(|((owner, repository), (count, last_pull))| PullTally {
            owner: owner.to_string(),
            repository: repository.to_string(),
            count,
            last_pull,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(owner: &str, repository: &str, at: u64) -> PullEvent {
        PullEvent {
            owner: owner.into(),
            repository: repository.into(),
            at,
        }
    }

    #[test]
    fn one_tally_per_repository_with_its_count_and_latest_pull() {
        let events = [
            pull("did:plc:b", "app", 30),
            pull("did:plc:a", "web", 10),
            pull("did:plc:b", "app", 20),
            pull("did:plc:a", "web", 40),
            pull("did:plc:a", "api", 5),
        ];
        let tallies = tally(&events);
        let summary: Vec<_> = tallies
            .iter()
            .map(|t| {
                (
                    t.owner.as_str(),
                    t.repository.as_str(),
                    t.count,
                    t.last_pull,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("did:plc:a", "api", 1, 5),
                ("did:plc:a", "web", 2, 40),
                ("did:plc:b", "app", 2, 30),
            ]
        );
    }

    #[test]
    fn the_same_name_under_two_owners_is_two_repositories() {
        let tallies = tally(&[pull("did:plc:a", "app", 1), pull("did:plc:b", "app", 1)]);
        assert_eq!(tallies.len(), 2);
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        assert!(tally(&[]).is_empty());
    }

    #[test]
    fn events_travel_as_json() {
        let event = pull("did:plc:a", "team/app", 1_700_000_000_000);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<PullEvent>(&json).unwrap(), event);
    }
}
