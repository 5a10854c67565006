//! Import classification: what an incoming export means for each person.
//!
//! [`classify`] compares the records of one import with the identities stored
//! for that source and says, for each person, whether they joined, started,
//! moved, were given a leaving date, left, came back, or did not change. It is
//! pure: the caller stores the result (atomically) or rejects it.

use crate::config::MissingPolicy;
use crate::identity::{Identity, IdentityRecord, LifecycleStatus};
use crate::ids::{IdentityId, SourceId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// What an import means for one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New to Tenure.
    Joiner,
    /// Their start date has come.
    Activated,
    /// Department, title, manager, location, employment type or another attribute changed.
    Mover,
    /// A leaving date in the future was set or changed.
    LeaverScheduled,
    /// They left (their end date has come, or they vanished from a full export).
    Leaver,
    /// A leaver is back (rehire, or a corrected termination).
    Rehire,
    /// Only dates that do not change their status changed.
    Updated,
    /// Nothing changed.
    Unchanged,
}

impl ChangeKind {
    /// The name used in the audit log (`import.<name>`) and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joiner => "joiner",
            Self::Activated => "activated",
            Self::Mover => "mover",
            Self::LeaverScheduled => "leaver_scheduled",
            Self::Leaver => "leaver",
            Self::Rehire => "rehire",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field (`department`, `manager`, `end_date` …).
    pub field: String,
    /// Before (empty when absent).
    pub before: String,
    /// After (empty when absent).
    pub after: String,
}

/// What an import means for one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityChange {
    /// Who.
    pub id: IdentityId,
    /// What.
    pub kind: ChangeKind,
    /// Status before (none for a joiner).
    pub before: Option<LifecycleStatus>,
    /// Status after.
    pub after: LifecycleStatus,
    /// The fields that changed.
    pub fields: Vec<FieldChange>,
    /// A note (`missing from a full export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The outcome of comparing an import with the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// Every person in the import or affected by it, in id order.
    pub changes: Vec<IdentityChange>,
    /// The identities to store (new or changed), in id order.
    pub upserts: Vec<Identity>,
    /// Ids this source sent that another source is authoritative for.
    pub conflicts: Vec<(IdentityId, SourceId)>,
}

impl Classification {
    /// How many people of each kind.
    pub fn counts(&self) -> BTreeMap<ChangeKind, usize> {
        let mut m = BTreeMap::new();
        for c in &self.changes {
            *m.entry(c.kind).or_insert(0) += 1;
        }
        m
    }
}

fn date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

fn field_changes(a: &IdentityRecord, b: &IdentityRecord) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, before: String, after: String| {
        if before != after {
            out.push(FieldChange {
                field: field.to_owned(),
                before,
                after,
            });
        }
    };
    push(
        "employment_type",
        a.employment_type.to_string(),
        b.employment_type.to_string(),
    );
    push(
        "manager",
        a.manager
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        b.manager
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    push("start_date", date(a.start_date), date(b.start_date));
    push("end_date", date(a.end_date), date(b.end_date));
    let keys: std::collections::BTreeSet<&String> =
        a.attributes.keys().chain(b.attributes.keys()).collect();
    for k in keys {
        push(k, a.attribute(k).to_owned(), b.attribute(k).to_owned());
    }
    let ga: Vec<&str> = a.groups.iter().map(String::as_str).collect();
    let gb: Vec<&str> = b.groups.iter().map(String::as_str).collect();
    push("groups", ga.join(","), gb.join(","));
    out
}

/// Compares one import from `source` with the stored identities.
///
/// `stored` may hold every identity (other sources' are ignored except to
/// detect id conflicts). With [`MissingPolicy::Leaver`], stored people of this
/// source absent from the import get `today` as their end date.
pub fn classify(
    source: &SourceId,
    stored: &[Identity],
    incoming: Vec<IdentityRecord>,
    missing: MissingPolicy,
    today: NaiveDate,
) -> Classification {
    let by_id: HashMap<&IdentityId, &Identity> = stored.iter().map(|i| (i.id(), i)).collect();
    let mut out = Classification::default();
    let mut seen: std::collections::HashSet<IdentityId> = std::collections::HashSet::new();
    for record in incoming {
        seen.insert(record.id.clone());
        match by_id.get(&record.id) {
            Some(old) if &old.source != source => {
                out.conflicts.push((record.id.clone(), old.source.clone()));
            }
            None => {
                let identity = Identity {
                    status: record.status_on(today),
                    record,
                    source: source.clone(),
                    suspended: false,
                };
                out.changes.push(IdentityChange {
                    id: identity.id().clone(),
                    kind: ChangeKind::Joiner,
                    before: None,
                    after: identity.status,
                    fields: vec![],
                    note: None,
                });
                out.upserts.push(identity);
            }
            Some(old) => {
                let updated = Identity {
                    status: if old.status == LifecycleStatus::Deleted
                        && record.status_on(today).is_gone()
                    {
                        LifecycleStatus::Deleted
                    } else {
                        record.status_on(today)
                    },
                    record,
                    source: source.clone(),
                    suspended: old.suspended,
                };
                push_change(&mut out, old, updated, None);
            }
        }
    }
    if missing == MissingPolicy::Leaver {
        for old in stored
            .iter()
            .filter(|i| &i.source == source && !seen.contains(i.id()))
        {
            if old.status.is_gone() {
                continue;
            }
            let mut record = old.record.clone();
            record.end_date = Some(record.end_date.map_or(today, |d| d.min(today)));
            let updated = Identity {
                status: LifecycleStatus::Leaver,
                record,
                source: source.clone(),
                suspended: old.suspended,
            };
            push_change(
                &mut out,
                old,
                updated,
                Some("missing from a full export".to_owned()),
            );
        }
    }
    out.changes.sort_by(|a, b| a.id.cmp(&b.id));
    out.upserts.sort_by(|a, b| a.id().cmp(b.id()));
    out.conflicts.sort();
    out
}

fn push_change(out: &mut Classification, old: &Identity, updated: Identity, note: Option<String>) {
    let fields = field_changes(&old.record, &updated.record);
    let (before, after) = (old.status, updated.status);
    let only_dates = fields
        .iter()
        .all(|f| f.field == "start_date" || f.field == "end_date");
    let kind = if fields.is_empty() && before == after {
        ChangeKind::Unchanged
    } else if before.is_gone() && !after.is_gone() {
        ChangeKind::Rehire
    } else if !before.is_gone() && after.is_gone() {
        ChangeKind::Leaver
    } else if before == LifecycleStatus::Pending && after == LifecycleStatus::Active {
        ChangeKind::Activated
    } else if !only_dates {
        ChangeKind::Mover
    } else if fields
        .iter()
        .any(|f| f.field == "end_date" && !f.after.is_empty())
        && !after.is_gone()
    {
        ChangeKind::LeaverScheduled
    } else {
        ChangeKind::Updated
    };
    let note = note.or_else(|| match (kind, updated.record.end_date) {
        (ChangeKind::Leaver, Some(end)) if !fields.iter().any(|f| f.field == "end_date") => {
            Some(format!("end date {end} reached"))
        }
        _ => None,
    });
    out.changes.push(IdentityChange {
        id: updated.id().clone(),
        kind,
        before: Some(before),
        after,
        fields,
        note,
    });
    if kind != ChangeKind::Unchanged {
        out.upserts.push(updated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::EmploymentType;
    use std::collections::BTreeSet;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }
    fn id(s: &str) -> IdentityId {
        IdentityId::from_static(Box::leak(s.to_owned().into_boxed_str()))
    }
    fn rec(i: &str, dept: &str, start: Option<&str>, end: Option<&str>) -> IdentityRecord {
        IdentityRecord {
            id: id(i),
            employment_type: EmploymentType::Employee,
            manager: None,
            start_date: start.map(d),
            end_date: end.map(d),
            attributes: [("department".to_owned(), dept.to_owned())]
                .into_iter()
                .collect(),
            groups: BTreeSet::new(),
        }
    }
    fn stored(r: IdentityRecord, today: NaiveDate) -> Identity {
        Identity {
            status: r.status_on(today),
            record: r,
            source: SourceId::from_static("hr"),
            suspended: false,
        }
    }

    #[test]
    fn every_kind_is_recognised() {
        let today = d("2026-11-24");
        let hr = SourceId::from_static("hr");
        let before = vec![
            stored(rec("A", "Sales", None, None), d("2026-11-01")),
            stored(rec("B", "Sales", None, None), d("2026-11-01")),
            stored(rec("C", "Sales", Some("2026-11-20"), None), d("2026-11-01")),
            stored(rec("D", "Sales", None, Some("2026-10-01")), d("2026-11-01")),
            stored(rec("E", "Sales", None, None), d("2026-11-01")),
            stored(rec("F", "Sales", None, None), d("2026-11-01")),
            stored(rec("G", "Sales", None, None), d("2026-11-01")),
        ];
        let incoming = vec![
            rec("A", "Sales", None, None),               // unchanged
            rec("B", "Finance", None, None),             // mover
            rec("C", "Sales", Some("2026-11-20"), None), // pending -> active
            rec("D", "Sales", None, None),               // rehire
            rec("E", "Sales", None, Some("2026-11-24")), // leaver today
            rec("F", "Sales", None, Some("2026-12-31")), // leaver scheduled
            rec("N", "Sales", Some("2026-12-01"), None), // joiner, pending
        ];
        let c = classify(&hr, &before, incoming, MissingPolicy::Leaver, today);
        let kinds: Vec<(String, ChangeKind)> = c
            .changes
            .iter()
            .map(|c| (c.id.to_string(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("A".into(), ChangeKind::Unchanged),
                ("B".into(), ChangeKind::Mover),
                ("C".into(), ChangeKind::Activated),
                ("D".into(), ChangeKind::Rehire),
                ("E".into(), ChangeKind::Leaver),
                ("F".into(), ChangeKind::LeaverScheduled),
                ("G".into(), ChangeKind::Leaver), // missing from a full export
                ("N".into(), ChangeKind::Joiner),
            ]
        );
        let g = c
            .upserts
            .iter()
            .find(|i| i.id().as_str() == "G")
            .map(|i| i.record.end_date);
        assert_eq!(g, Some(Some(today)));
        assert!(
            !c.upserts.iter().any(|i| i.id().as_str() == "A"),
            "unchanged people are not rewritten"
        );
        assert_eq!(c.changes[1].fields[0].field, "department");
    }

    #[test]
    fn missing_people_are_ignored_by_default() {
        let today = d("2026-11-24");
        let hr = SourceId::from_static("hr");
        let before = vec![stored(rec("A", "Sales", None, None), today)];
        let c = classify(&hr, &before, vec![], MissingPolicy::Ignore, today);
        assert!(c.changes.is_empty());
    }

    #[test]
    fn another_sources_ids_are_conflicts() {
        let today = d("2026-11-24");
        let mut other = stored(rec("A", "Sales", None, None), today);
        other.source = SourceId::from_static("scim");
        let c = classify(
            &SourceId::from_static("hr"),
            &[other],
            vec![rec("A", "Sales", None, None)],
            MissingPolicy::Ignore,
            today,
        );
        assert_eq!(c.conflicts.len(), 1);
        assert!(c.upserts.is_empty());
    }
}
