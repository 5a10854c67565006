//! Identities: people known from an authoritative source, and their lifecycle.
//!
//! A lifecycle status is a pure function of the record and a date: Tenure never
//! reads a clock here, the caller passes `today`.

use crate::ids::{IdentityId, SourceId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The kind of working relationship a person has with the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmploymentType {
    /// A permanent or fixed-term employee.
    Employee,
    /// An individual contractor: an end date is expected.
    Contractor,
    /// Staff of a vendor or supplier.
    Vendor,
    /// Temporary staff.
    Temp,
    /// The human owner of a service account.
    ServiceOwner,
}

impl EmploymentType {
    /// Every employment type, in a stable order.
    pub const ALL: [EmploymentType; 5] = [
        Self::Employee,
        Self::Contractor,
        Self::Vendor,
        Self::Temp,
        Self::ServiceOwner,
    ];

    /// The canonical name used in configuration, CEL and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Employee => "employee",
            Self::Contractor => "contractor",
            Self::Vendor => "vendor",
            Self::Temp => "temp",
            Self::ServiceOwner => "service_owner",
        }
    }

    /// Parses a canonical name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for EmploymentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an identity is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    /// Known, with a start date still in the future: no access yet.
    Pending,
    /// Working: holds what policy gives them.
    Active,
    /// Suspended by an operator (for example during an incident): every account disabled.
    Suspended,
    /// Left on their end date: access is taken away as their deprovisioning policy says.
    Leaver,
    /// Deprovisioning finished; kept for the record.
    Deleted,
}

impl LifecycleStatus {
    /// The canonical name used in configuration, CEL and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Leaver => "leaver",
            Self::Deleted => "deleted",
        }
    }

    /// Parses a canonical name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Active,
            Self::Suspended,
            Self::Leaver,
            Self::Deleted,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Whether this status ends access (leaver or deleted).
    pub fn is_gone(self) -> bool {
        matches!(self, Self::Leaver | Self::Deleted)
    }
}

impl fmt::Display for LifecycleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an authoritative source says about one person, already mapped from the
/// source's own columns to Tenure's model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// The person's identifier in the source.
    pub id: IdentityId,
    /// The working relationship.
    pub employment_type: EmploymentType,
    /// The identifier of the person's manager, if any.
    pub manager: Option<IdentityId>,
    /// First working day; access starts on it.
    pub start_date: Option<NaiveDate>,
    /// Termination (or contract end) date: the person is a leaver from this day on.
    pub end_date: Option<NaiveDate>,
    /// Every other attribute (given_name, email, department, title, location …).
    pub attributes: BTreeMap<String, String>,
    /// Groups the source puts the person in (used by SCIM sources; empty for HR files).
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

impl IdentityRecord {
    /// A digest of everything the source said about this person (hex SHA-256
    /// of the record). Two records with the same digest are the same record,
    /// so an import can skip people whose stored digest matches.
    pub fn digest(&self) -> String {
        crate::plan::fingerprint(&[("record", self)])
    }

    /// The lifecycle status this record gives on `today`, before any operator overlay.
    pub fn status_on(&self, today: NaiveDate) -> LifecycleStatus {
        match (self.start_date, self.end_date) {
            (_, Some(end)) if end <= today => LifecycleStatus::Leaver,
            (Some(start), _) if start > today => LifecycleStatus::Pending,
            _ => LifecycleStatus::Active,
        }
    }

    /// An attribute's value, or `""` if the source did not give one.
    pub fn attribute(&self, name: &str) -> &str {
        self.attributes.get(name).map(String::as_str).unwrap_or("")
    }
}

/// An identity as Tenure stores it: the source's record, where it came from,
/// and the lifecycle status last evaluated for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// What the source says.
    pub record: IdentityRecord,
    /// Which source is authoritative for this person.
    pub source: SourceId,
    /// The status last evaluated (at the last import or refresh).
    pub status: LifecycleStatus,
    /// Set by an operator's emergency suspend; overrides an active status.
    #[serde(default)]
    pub suspended: bool,
}

impl Identity {
    /// The identity's id.
    pub fn id(&self) -> &IdentityId {
        &self.record.id
    }

    /// The status on `today`: the record's status with the operator's suspension applied.
    pub fn status_on(&self, today: NaiveDate) -> LifecycleStatus {
        match self.record.status_on(today) {
            LifecycleStatus::Active | LifecycleStatus::Pending if self.suspended => {
                LifecycleStatus::Suspended
            }
            s => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    fn rec(start: Option<&str>, end: Option<&str>) -> IdentityRecord {
        IdentityRecord {
            id: IdentityId::new("E1").unwrap_or_else(|_| unreachable!()),
            employment_type: EmploymentType::Employee,
            manager: None,
            start_date: start.map(d),
            end_date: end.map(d),
            attributes: BTreeMap::new(),
            groups: BTreeSet::new(),
        }
    }

    #[test]
    fn status_follows_dates() {
        let today = d("2026-11-24");
        assert_eq!(rec(None, None).status_on(today), LifecycleStatus::Active);
        assert_eq!(
            rec(Some("2026-12-01"), None).status_on(today),
            LifecycleStatus::Pending
        );
        assert_eq!(
            rec(Some("2026-11-24"), None).status_on(today),
            LifecycleStatus::Active
        );
        // terminated today: a leaver from today on
        assert_eq!(
            rec(None, Some("2026-11-24")).status_on(today),
            LifecycleStatus::Leaver
        );
        assert_eq!(
            rec(None, Some("2026-11-25")).status_on(today),
            LifecycleStatus::Active
        );
        // an end date wins over a future start (a cancelled hire)
        assert_eq!(
            rec(Some("2026-12-01"), Some("2026-11-01")).status_on(today),
            LifecycleStatus::Leaver
        );
    }

    #[test]
    fn employment_type_names_round_trip() {
        for t in EmploymentType::ALL {
            assert_eq!(EmploymentType::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            EmploymentType::parse(" Contractor "),
            Some(EmploymentType::Contractor)
        );
        assert_eq!(EmploymentType::parse("intern"), None);
    }
}
