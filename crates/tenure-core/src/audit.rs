//! The audit log as data: hash-chained records and their verification.
//!
//! Each record's hash covers its own fields and the hash of the record before
//! it, so editing, removing, inserting or reordering records breaks the chain
//! at a place [`verify`] names. The store appends; this module only computes.
//! A chain re-hashed from start to end by someone with write access to the
//! database is detected only against a head hash kept elsewhere, which is why
//! `tenure audit verify` prints the head.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Something that happened, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `cli:alice`, `token:scim-okta`, `tenure` for the engine itself.
    pub actor: String,
    /// What kind of event (`import.joiner`, `operation.done`, `guard.override` …).
    pub action: String,
    /// What it concerns (`identity:E1001`, `system:crm/account:ada`, `plan:…`).
    pub subject: String,
    /// Why, in words.
    pub reason: String,
    /// Details as JSON text (kept as text so its hash never depends on re-serialisation).
    pub detail: String,
}

/// An appended, chained record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the record before (or [`GENESIS`]).
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

/// Computes a record's hash.
pub fn record_hash(seq: u64, event: &AuditEvent, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(&seq.to_be_bytes());
    field(&event.at.timestamp_micros().to_be_bytes());
    field(event.actor.as_bytes());
    field(event.action.as_bytes());
    field(event.subject.as_bytes());
    field(event.reason.as_bytes());
    field(event.detail.as_bytes());
    field(prev_hash.as_bytes());
    hex::encode(h.finalize())
}

/// Chains events after a record with `prev_seq` and `prev_hash`.
pub fn seal(prev_seq: u64, prev_hash: &str, events: Vec<AuditEvent>) -> Vec<AuditRecord> {
    let mut prev = prev_hash.to_owned();
    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let seq = prev_seq + 1 + i as u64;
        let hash = record_hash(seq, &event, &prev);
        out.push(AuditRecord {
            seq,
            event,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    out
}

/// What is wrong at one place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The record's content does not match its hash.
    Edited,
    /// Records are missing before this one.
    Removed,
    /// This record does not follow the one before it: inserted, or re-chained.
    Inserted,
    /// This record is out of order (a lower or repeated sequence number).
    Reordered,
}

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The sequence number of the record where it shows.
    pub seq: u64,
    /// What.
    pub kind: ProblemKind,
    /// In words.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.seq, self.message)
    }
}

/// The result of verifying a log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Records read.
    pub records: u64,
    /// Sequence number and hash of the last record: keep them elsewhere to detect a re-hashed chain.
    pub head: Option<(u64, String)>,
    /// Problems, in log order; empty when the log is intact.
    pub problems: Vec<Problem>,
}

/// Incremental verifier: feed records in stored order (by sequence number).
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_seq: u64,
    expected_prev: String,
    out: Verification,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            expected_prev: GENESIS.to_owned(),
            out: Verification::default(),
        }
    }
}

impl Verifier {
    /// Checks the next record.
    pub fn push(&mut self, r: &AuditRecord) {
        self.out.records += 1;
        let recomputed = record_hash(r.seq, &r.event, &r.prev_hash);
        if recomputed != r.hash {
            self.out.problems.push(Problem {
                seq: r.seq,
                kind: ProblemKind::Edited,
                message: "its content does not match its hash: the record was edited".into(),
            });
        } else if r.seq < self.expected_seq {
            self.out.problems.push(Problem {
                seq: r.seq,
                kind: ProblemKind::Reordered,
                message: format!(
                    "sequence number {} comes where {} was expected: records were reordered or duplicated",
                    r.seq, self.expected_seq
                ),
            });
        } else if r.seq > self.expected_seq {
            self.out.problems.push(Problem {
                seq: r.seq,
                kind: ProblemKind::Removed,
                message: format!(
                    "records {}..{} are missing: they were removed",
                    self.expected_seq,
                    r.seq - 1
                ),
            });
        } else if r.prev_hash != self.expected_prev {
            self.out.problems.push(Problem {
                seq: r.seq,
                kind: ProblemKind::Inserted,
                message:
                    "it does not chain to the record before it: a record was inserted or replaced"
                        .into(),
            });
        }
        self.expected_seq = r.seq.max(self.expected_seq.saturating_sub(1)) + 1;
        self.expected_prev = r.hash.clone();
        self.out.head = Some((r.seq, r.hash.clone()));
    }

    /// The result.
    pub fn finish(self) -> Verification {
        self.out
    }
}

/// Verifies a whole log given in stored order.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Verification {
    let mut v = Verifier::default();
    for r in records {
        v.push(r);
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| AuditEvent {
                at: Utc
                    .timestamp_opt(1_700_000_000 + i as i64, 0)
                    .single()
                    .unwrap_or_default(),
                actor: "cli:test".into(),
                action: "import.joiner".into(),
                subject: format!("identity:E{i}"),
                reason: "test".into(),
                detail: "{}".into(),
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let log = seal(0, GENESIS, events(5));
        let v = verify(&log);
        assert_eq!(v.records, 5);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.head.map(|h| h.0), Some(5));
        // appending continues the chain
        let more = seal(5, &log[4].hash, events(2));
        let all: Vec<_> = log.iter().chain(more.iter()).cloned().collect();
        assert!(verify(&all).problems.is_empty());
    }

    #[test]
    fn edit_is_detected_at_the_record() {
        let mut log = seal(0, GENESIS, events(5));
        log[2].event.reason = "forged".into();
        let v = verify(&log);
        assert_eq!(v.problems.len(), 1);
        assert_eq!(
            (v.problems[0].seq, &v.problems[0].kind),
            (3, &ProblemKind::Edited)
        );
    }

    #[test]
    fn removal_is_detected() {
        let mut log = seal(0, GENESIS, events(5));
        log.remove(2);
        let v = verify(&log);
        assert_eq!(v.problems.len(), 1);
        assert_eq!(
            (v.problems[0].seq, &v.problems[0].kind),
            (4, &ProblemKind::Removed)
        );
    }

    #[test]
    fn insertion_is_detected() {
        let mut log = seal(0, GENESIS, events(5));
        // a forged record with a valid hash of its own, renumbering those after it
        let forged = seal(2, "f".repeat(64).as_str(), events(1));
        log.insert(2, forged[0].clone());
        let v = verify(&log);
        assert!(
            v.problems
                .iter()
                .any(|p| p.kind == ProblemKind::Inserted && p.seq == 3),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn reordering_is_detected() {
        let mut log = seal(0, GENESIS, events(5));
        log.swap(1, 3);
        let v = verify(&log);
        assert!(!v.problems.is_empty());
        assert!(
            v.problems
                .iter()
                .any(|p| p.kind == ProblemKind::Reordered || p.kind == ProblemKind::Removed)
        );
    }
}
