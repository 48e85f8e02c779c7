//! Pull counting off the request path, aggregated twice: an isolate adds
//! up its manifest GETs for a moment ([`PendingPulls`]) and sends them as
//! one queue message of counts per repository, and the queue's consumer
//! folds a batch of messages into one upsert per repository ([`tally`]), so
//! neither the queue nor D1 sees a write per pull.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Pulls of one repository, as the queue carries them: `count` pulls, the
/// latest at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullEvent {
    /// The owner's DID.
    pub owner: String,
    pub repository: String,
    /// When the latest of them was, in milliseconds since the Unix epoch.
    pub at: u64,
    /// How many pulls (messages queued before counts were carried are one).
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

/// The pulls an isolate has answered and not yet sent: one entry per
/// repository, however many pulls it had.
#[derive(Debug, Default)]
pub struct PendingPulls {
    by_repository: BTreeMap<(String, String), (u64, u64)>,
    /// A send is scheduled: later pulls join it instead of scheduling another.
    scheduled: bool,
}

impl PendingPulls {
    /// Adds one pull; true when it is the first since the last send, so
    /// the caller schedules the next one.
    pub fn add(&mut self, owner: &str, repository: &str, at: u64) -> bool {
        self.count(owner, repository, 1, at);
        !std::mem::replace(&mut self.scheduled, true)
    }

    /// Adds `count` pulls of `repository`, the latest at `at`.
    fn count(&mut self, owner: &str, repository: &str, count: u64, at: u64) {
        let entry = self
            .by_repository
            .entry((owner.to_string(), repository.to_string()))
            .or_insert((0, 0));
        entry.0 += count;
        entry.1 = entry.1.max(at);
    }

    /// Everything pending, as events to send; the next pull schedules anew.
    pub fn take(&mut self) -> Vec<PullEvent> {
        self.scheduled = false;
        std::mem::take(&mut self.by_repository)
            .into_iter()
            .map(|((owner, repository), (count, at))| PullEvent {
                owner,
                repository,
                at,
                count,
            })
            .collect()
    }
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
    let mut folded = PendingPulls::default();
    for event in events {
        folded.count(&event.owner, &event.repository, event.count, event.at);
    }
    folded
        .take()
        .into_iter()
        .map(|event| PullTally {
            owner: event.owner,
            repository: event.repository,
            count: event.count,
            last_pull: event.at,
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
            count: 1,
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
    fn pending_pulls_are_one_event_per_repository_and_schedule_one_send() {
        let mut pending = PendingPulls::default();
        assert!(
            pending.add("did:plc:a", "web", 10),
            "the first pull schedules a send"
        );
        assert!(!pending.add("did:plc:a", "web", 30));
        assert!(!pending.add("did:plc:a", "web", 20));
        assert!(!pending.add("did:plc:b", "web", 5));
        let sent = pending.take();
        assert_eq!(
            sent,
            [
                PullEvent {
                    count: 3,
                    ..pull("did:plc:a", "web", 30)
                },
                pull("did:plc:b", "web", 5),
            ]
        );
        assert!(pending.take().is_empty());
        assert!(
            pending.add("did:plc:a", "web", 40),
            "after a send, the next pull schedules again"
        );
    }

    #[test]
    fn counts_add_up_across_messages() {
        let events = [
            PullEvent {
                count: 3,
                ..pull("did:plc:a", "web", 30)
            },
            PullEvent {
                count: 2,
                ..pull("did:plc:a", "web", 50)
            },
        ];
        let tallies = tally(&events);
        assert_eq!((tallies[0].count, tallies[0].last_pull), (5, 50));
    }

    #[test]
    fn a_message_from_before_counts_were_carried_is_one_pull() {
        let old = r#"{"owner":"did:plc:a","repository":"web","at":7}"#;
        assert_eq!(
            serde_json::from_str::<PullEvent>(old).unwrap(),
            pull("did:plc:a", "web", 7)
        );
    }

    #[test]
    fn events_travel_as_json() {
        let event = pull("did:plc:a", "team/app", 1_700_000_000_000);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<PullEvent>(&json).unwrap(), event);
    }
}
