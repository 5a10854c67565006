//! From a source's configuration to Tenure's record: which source columns to
//! read, and how each value becomes a field of an [`IdentityRecord`].
//!
//! The mapping is resolved once per file ([`Mapping::new`]), which also checks
//! the parts of the [`SourceConfig`] that parsing depends on (employment type
//! names, the date format, reserved or unknown attribute names). The format
//! modules hand it one [`Row`] at a time. It does not know about CSV or JSON
//! syntax, and it does not check relations between records other than
//! duplicated ids (a manager need not be in the same file).

use crate::error::{Draft, Field, Problems, show};
use chrono::NaiveDate;
use chrono::format::{Item, Parsed, StrftimeItems};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tenure_core::config::RESERVED_ATTRIBUTES;
use tenure_core::config::{SourceConfig, SourceFormat};
use tenure_core::{EmploymentType, IdentityId, IdentityRecord};

/// One value as a format module found it.
pub(crate) enum Cell<'r> {
    /// A value (not yet trimmed).
    Text(Cow<'r, str>),
    /// No value: a JSON key that is absent or null. Counts as empty.
    Absent,
    /// A column missing from the CSV header (already reported): nothing to check.
    Unknown,
    /// A value that cannot be used; the message says why and what was expected.
    Bad(String),
}

/// A record being read, as the format modules present it to the mapping.
pub(crate) trait Row {
    /// The value of the mapping's column number `col` (see [`Mapping::columns`]).
    fn cell(&self, col: usize) -> Cell<'_>;
    /// The line where the record starts.
    fn line(&self) -> usize;
    /// The line and (for JSON) column where column `col`'s value is, or the
    /// record's start when `col` is `None` or cannot be found.
    fn locate(&self, col: Option<usize>) -> (usize, Option<usize>);
}

/// A source's column mapping, resolved and checked.
pub(crate) struct Mapping<'c> {
    format: SourceFormat,
    /// Every distinct source column (or JSON key) the mapping reads.
    columns: Vec<&'c str>,
    /// For each column, what it is used for (for messages).
    uses: Vec<Vec<String>>,
    id: usize,
    employment_type: Option<usize>,
    manager: Option<usize>,
    start_date: Option<usize>,
    end_date: Option<usize>,
    /// Attribute name → column, in name order.
    attributes: Vec<(&'c str, usize)>,
    /// Required names (attributes or Tenure fields) → column.
    required: Vec<(&'c str, usize)>,
    date_format: &'c str,
    /// `date_format`, parsed once.
    date_items: Vec<Item<'c>>,
    /// `employment_types` as written; a short list is faster to scan than to hash.
    types_exact: Vec<(&'c str, EmploymentType)>,
    types_folded: Vec<(String, EmploymentType)>,
    default_type: EmploymentType,
    accepted_types: String,
    /// A further check of each record built.
    pub(crate) check: Option<crate::RecordCheck<'c>>,
}

fn canonical_types() -> String {
    EmploymentType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'c> Mapping<'c> {
    /// Resolves the mapping, reporting configuration problems to `problems`.
    /// Parsing goes on after such problems so that the file's own problems are
    /// reported in the same run.
    pub(crate) fn new(cfg: &'c SourceConfig, problems: &mut Problems<'_>) -> Self {
        let src = cfg.id.as_str();
        let mut columns: Vec<&'c str> = Vec::new();
        let mut uses: Vec<Vec<String>> = Vec::new();
        let mut col = |name: &'c str, used_as: String| -> usize {
            let i = match columns.iter().position(|c| *c == name) {
                Some(i) => i,
                None => {
                    columns.push(name);
                    uses.push(Vec::new());
                    columns.len() - 1
                }
            };
            if let Some(u) = uses.get_mut(i) {
                u.push(used_as);
            }
            i
        };
        let c = &cfg.columns;
        let id = col(&c.id, "id".into());
        let employment_type = c
            .employment_type
            .as_deref()
            .map(|n| col(n, "employment_type".into()));
        let manager = c.manager.as_deref().map(|n| col(n, "manager".into()));
        let start_date = c.start_date.as_deref().map(|n| col(n, "start_date".into()));
        let end_date = c.end_date.as_deref().map(|n| col(n, "end_date".into()));
        let mut attributes = Vec::with_capacity(cfg.attributes.len());
        for (name, column) in &cfg.attributes {
            if RESERVED_ATTRIBUTES.contains(&name.as_str()) {
                problems.add_general(|| {
                    format!(
                        "source {src:?}: attribute {name:?} uses a reserved name; \
                         attributes may not be called {}",
                        RESERVED_ATTRIBUTES.join(", ")
                    )
                });
            }
            attributes.push((name.as_str(), col(column, format!("attribute {name:?}"))));
        }

        let mut required = Vec::with_capacity(cfg.required.len());
        let mut seen_required = BTreeSet::new();
        for name in &cfg.required {
            if !seen_required.insert(name.as_str()) {
                continue;
            }
            let core = match name.as_str() {
                "id" => continue, // always required
                "employment_type" => Some(employment_type),
                "manager" => Some(manager),
                "start_date" => Some(start_date),
                "end_date" => Some(end_date),
                _ => None,
            };
            let found = match core {
                Some(mapped) => mapped,
                None => cfg
                    .attributes
                    .keys()
                    .position(|a| a == name)
                    .and_then(|i| attributes.get(i))
                    .map(|(_, c)| *c),
            };
            match found {
                Some(c) => required.push((name.as_str(), c)),
                None if core.is_some() => problems.add_general(|| {
                    format!(
                        "source {src:?}: `required` lists {name:?}, but columns.{name} is not set"
                    )
                }),
                None => problems.add_general(|| {
                    let declared: Vec<&str> = cfg.attributes.keys().map(String::as_str).collect();
                    format!(
                        "source {src:?}: `required` lists {name:?}, which is not an attribute of \
                         this source (its attributes are: {})",
                        if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.join(", ")
                        }
                    )
                }),
            }
        }

        let mut types_exact = Vec::with_capacity(cfg.employment_types.len());
        let mut types_folded = Vec::with_capacity(cfg.employment_types.len());
        for (value, ty) in &cfg.employment_types {
            match EmploymentType::parse(ty) {
                Some(t) => {
                    types_exact.push((value.as_str(), t));
                    let folded = value.trim().to_lowercase();
                    if !types_folded.iter().any(|(k, _)| *k == folded) {
                        types_folded.push((folded, t));
                    }
                }
                None => problems.add_general(|| {
                    format!(
                        "source {src:?}: employment_types maps {value:?} to {ty:?}, which is not \
                         an employment type; expected one of {}",
                        canonical_types()
                    )
                }),
            }
        }
        let default_type = match EmploymentType::parse(&cfg.default_employment_type) {
            Some(t) => t,
            None => {
                problems.add_general(|| {
                    format!(
                        "source {src:?}: default_employment_type {:?} is not an employment type; \
                         expected one of {}",
                        cfg.default_employment_type,
                        canonical_types()
                    )
                });
                EmploymentType::Employee
            }
        };
        let accepted_types = if cfg.employment_types.is_empty() {
            format!("one of {}", canonical_types())
        } else {
            let listed: Vec<String> = cfg
                .employment_types
                .keys()
                .map(|k| format!("{k:?}"))
                .collect();
            format!(
                "one of {} (from employment_types) or a type name: {}",
                listed.join(", "),
                canonical_types()
            )
        };

        let date_format = cfg.date_format.as_str();
        let date_items: Vec<Item<'c>> = StrftimeItems::new(date_format).collect();
        let uses_dates = start_date.is_some() || end_date.is_some();
        if uses_dates
            && (date_items.is_empty() || date_items.iter().any(|i| matches!(i, Item::Error)))
        {
            problems.add_general(|| {
                format!("source {src:?}: date_format {date_format:?} is not a valid chrono format")
            });
        }

        Mapping {
            format: cfg.format,
            columns,
            uses,
            id,
            employment_type,
            manager,
            start_date,
            end_date,
            attributes,
            required,
            date_format,
            date_items,
            types_exact,
            types_folded,
            default_type,
            accepted_types,
            check: None,
        }
    }

    /// Every distinct source column the mapping reads, by index.
    pub(crate) fn columns(&self) -> &[&'c str] {
        &self.columns
    }

    /// What column `col` is used for, e.g. `start_date, attribute "hired"`.
    pub(crate) fn uses(&self, col: usize) -> String {
        self.uses.get(col).map(|u| u.join(", ")).unwrap_or_default()
    }

    /// How a problem names column `col`.
    pub(crate) fn field(&self, col: usize) -> Field {
        let name = self
            .columns
            .get(col)
            .copied()
            .unwrap_or_default()
            .to_owned();
        match self.format {
            SourceFormat::Csv => Field::Column(name),
            SourceFormat::Json | SourceFormat::Jsonl | SourceFormat::Scim => Field::Key(name),
        }
    }

    fn report<R: Row>(
        &self,
        problems: &mut Problems<'_>,
        row: &R,
        col: usize,
        message: impl FnOnce() -> String,
    ) {
        problems.add(|| {
            let (line, column) = row.locate(Some(col));
            Draft {
                line: Some(line),
                column,
                field: Some(self.field(col)),
                message: message(),
            }
        });
    }

    fn employment_type(&self, value: &str) -> Option<EmploymentType> {
        if let Some((_, t)) = self.types_exact.iter().find(|(k, _)| *k == value) {
            return Some(*t);
        }
        if !self.types_folded.is_empty() {
            let folded = value.to_lowercase();
            if let Some((_, t)) = self.types_folded.iter().find(|(k, _)| *k == folded) {
                return Some(*t);
            }
        }
        EmploymentType::parse(value)
    }

    fn date<R: Row>(
        &self,
        problems: &mut Problems<'_>,
        row: &R,
        col: Option<usize>,
        cells: &[Option<Cow<'_, str>>],
    ) -> Option<NaiveDate> {
        let col = col?;
        let v = text(cells, col)?;
        if v.is_empty() {
            return None;
        }
        let mut parsed = Parsed::new();
        let date = chrono::format::parse(&mut parsed, v, self.date_items.iter())
            .and_then(|()| parsed.to_naive_date());
        match date {
            Ok(d) => Some(d),
            Err(_) => {
                self.report(problems, row, col, || {
                    format!(
                        "{} is not a date in the format {}",
                        show(v),
                        self.date_format
                    )
                });
                None
            }
        }
    }

    /// Maps one record. Returns `None` if it had a problem (reported), in which
    /// case the import fails anyway; every check still runs, so that all of the
    /// record's problems are reported. `seen` maps ids to the line of the
    /// record that first used them.
    pub(crate) fn build<R: Row>(
        &self,
        row: &R,
        seen: &mut HashMap<String, usize>,
        problems: &mut Problems<'_>,
    ) -> Option<IdentityRecord> {
        let before = !problems.is_empty();
        let mut id_absent = false;
        let mut cells: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.columns.len());
        for col in 0..self.columns.len() {
            cells.push(match row.cell(col) {
                Cell::Text(v) => Some(trim(v)),
                Cell::Absent => {
                    id_absent |= col == self.id;
                    Some(Cow::Borrowed(""))
                }
                Cell::Unknown => None,
                Cell::Bad(message) => {
                    self.report(problems, row, col, || message);
                    None
                }
            });
        }

        let id = if id_absent {
            self.report(problems, row, self.id, || {
                "the record has no such field (or it is null); every record needs an identity id"
                    .to_owned()
            });
            None
        } else {
            text(&cells, self.id).and_then(|v| match IdentityId::new(v) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.report(problems, row, self.id, || {
                        if v.is_empty() {
                            "the id is empty; every record needs an identity id".to_owned()
                        } else {
                            format!("{} is not a valid identity id: {e}", show(v))
                        }
                    });
                    None
                }
            })
        };
        if let Some(id) = &id {
            match seen.entry(id.as_str().to_owned()) {
                Entry::Occupied(first) => {
                    let first = *first.get();
                    self.report(problems, row, self.id, || {
                        format!(
                            "id {} is already used by the record on line {first}",
                            show(id.as_str())
                        )
                    });
                }
                Entry::Vacant(v) => {
                    v.insert(row.line());
                }
            }
        }

        let mut employment_type = Some(self.default_type);
        if let Some(col) = self.employment_type
            && let Some(v) = text(&cells, col)
            && !v.is_empty()
        {
            employment_type = self.employment_type(v);
            if employment_type.is_none() {
                self.report(problems, row, col, || {
                    format!(
                        "{} is not a known employment type; expected {}",
                        show(v),
                        self.accepted_types
                    )
                });
            }
        }

        let mut manager = None;
        if let Some(col) = self.manager
            && let Some(v) = text(&cells, col)
            && !v.is_empty()
        {
            match IdentityId::new(v) {
                Ok(m) => manager = Some(m),
                Err(e) => self.report(problems, row, col, || {
                    format!("{} is not a valid manager id: {e}", show(v))
                }),
            }
        }

        let start_date = self.date(problems, row, self.start_date, &cells);
        let end_date = self.date(problems, row, self.end_date, &cells);

        for (name, col) in &self.required {
            if text(&cells, *col).is_some_and(str::is_empty) {
                self.report(problems, row, *col, || {
                    format!("{name:?} is required, but the value is empty")
                });
            }
        }

        // Once anything is wrong the import fails: skip building records.
        if before || !problems.is_empty() {
            return None;
        }
        let mut attributes = BTreeMap::new();
        for (name, col) in &self.attributes {
            let v = text(&cells, *col).unwrap_or_default();
            attributes.insert((*name).to_owned(), v.to_owned());
        }
        let record = IdentityRecord {
            id: id?,
            employment_type: employment_type?,
            manager,
            start_date,
            end_date,
            attributes,
            groups: BTreeSet::new(),
        };
        if let Some(check) = self.check
            && let Some(problem) = check(&record)
        {
            let col = self.end_date.unwrap_or(self.id);
            self.report(problems, row, col, || problem);
            return None;
        }
        Some(record)
    }
}

/// A trimmed value, or `None` if it is unusable (already reported).
fn text<'a>(cells: &'a [Option<Cow<'_, str>>], col: usize) -> Option<&'a str> {
    cells.get(col).and_then(Option::as_deref)
}

fn trim(v: Cow<'_, str>) -> Cow<'_, str> {
    match v {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => {
            let t = s.trim();
            if t.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(t.to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tenure_core::SourceId;
    use tenure_core::config::{MissingPolicy, SourceColumns};

    fn cfg() -> SourceConfig {
        SourceConfig {
            id: SourceId::new("hr").unwrap(),
            format: SourceFormat::Csv,
            path: None,
            missing: MissingPolicy::Ignore,
            date_format: "%Y-%m-%d".into(),
            delimiter: ',',
            columns: SourceColumns {
                id: "id".into(),
                employment_type: Some("kind".into()),
                manager: None,
                start_date: None,
                end_date: None,
            },
            attributes: BTreeMap::from([
                ("mail".into(), "email".into()),
                ("login".into(), "id".into()),
            ]),
            required: vec![],
            employment_types: BTreeMap::from([
                ("Full-time".into(), "employee".into()),
                (" Staff ".into(), "vendor".into()),
                ("Temp".into(), "contractor".into()),
            ]),
            default_employment_type: "temp".into(),
            deactivate: Default::default(),
            deactivation_window_minutes: 60,
        }
    }

    #[test]
    fn columns_are_deduplicated() {
        let c = cfg();
        let mut p = Problems::new("f");
        let m = Mapping::new(&c, &mut p);
        assert!(p.is_empty());
        assert_eq!(m.columns(), ["id", "kind", "email"]);
        assert_eq!(m.uses(0), "id, attribute \"login\"");
        assert_eq!(m.field(2), Field::Column("email".into()));
    }

    #[test]
    fn employment_type_lookup_order() {
        let c = cfg();
        let mut p = Problems::new("f");
        let m = Mapping::new(&c, &mut p);
        let t = |v| m.employment_type(v);
        assert_eq!(t("Full-time"), Some(EmploymentType::Employee));
        assert_eq!(t("FULL-TIME"), Some(EmploymentType::Employee));
        assert_eq!(
            t("staff"),
            Some(EmploymentType::Vendor),
            "keys are trimmed when folded"
        );
        assert_eq!(
            t("Temp"),
            Some(EmploymentType::Contractor),
            "mapping before names"
        );
        assert_eq!(
            t("temp"),
            Some(EmploymentType::Contractor),
            "folded mapping too"
        );
        assert_eq!(t("Service_Owner"), Some(EmploymentType::ServiceOwner));
        assert_eq!(t("intern"), None);
        assert_eq!(m.default_type, EmploymentType::Temp);
    }

    #[test]
    fn trim_keeps_borrowing() {
        assert!(matches!(trim(Cow::Borrowed(" a ")), Cow::Borrowed("a")));
        let owned = trim(Cow::Owned(" b".to_owned()));
        assert_eq!(owned, "b");
        assert!(matches!(owned, Cow::Owned(_)));
    }
}
