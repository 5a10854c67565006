//! HR exports in, identity records out.
//!
//! [`parse`] turns the bytes of one export (CSV, a JSON array, or JSON lines)
//! into [`IdentityRecord`]s, using the column mapping of a [`SourceConfig`]. It
//! is pure: no file is opened, no clock is read, nothing is logged. The caller
//! reads the file and decides what the records mean (who joined, who left).
//!
//! An import is atomic: either every record is returned, in file order, or a
//! [`SourceError`] lists every problem found (see [`error`] for the format).
//! Nothing is sorted, deduplicated or dropped silently; the only things
//! skipped are empty lines (and CSV rows whose fields are all blank).
//!
//! [`synthetic`] generates realistic HR exports for demos, tests and
//! benchmarks.
//!
//! # Mapping rules
//!
//! - Values are trimmed. For JSON, strings are taken as they are, numbers and
//!   booleans are stringified, null counts as empty, and arrays or objects are
//!   an error (only for mapped keys; other keys are ignored).
//! - `columns.id` must hold a valid [`IdentityId`](tenure_core::IdentityId),
//!   unique within the file.
//! - An empty manager or date is `None`; dates are parsed with `date_format`.
//! - Employment type: the value is looked up in `employment_types` (exactly,
//!   then ignoring case), then read as a canonical name (`employee`,
//!   `contractor`, …); an empty value gives `default_employment_type`.
//! - Every attribute of the source is in the record's `attributes` (empty when
//!   the export has no value). Names in `required` must not be empty; besides
//!   attributes they may name `employment_type`, `manager`, `start_date` or
//!   `end_date` when those are mapped.
//! - In CSV every mapped column must be in the header. In JSON a mapped key
//!   may be absent from a record (it then counts as empty), except the id.
//! - `groups` is always empty: HR files do not carry group memberships.
//!
//! This crate does not check relations between records beyond duplicated ids:
//! a manager need not be in the same file, and a record may name itself.

mod csv_source;
pub mod error;
mod json_source;
mod mapping;
pub mod synthetic;

pub use error::{Field, MAX_PROBLEMS, Problem, SourceError};

use error::Problems;
use mapping::Mapping;
use tenure_core::IdentityRecord;
use tenure_core::config::{SourceConfig, SourceFormat};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses one HR export with the mapping of `source`.
///
/// `file_name` is used only in problem reports. A UTF-8 byte order mark is
/// skipped. An empty file, a CSV file with only a header, and an empty JSON
/// array give no records (not an error). On success the records are in file
/// order; otherwise the error lists every problem found, including problems of
/// `source` itself that make the file impossible to read correctly (an unknown
/// employment type name, an invalid date format, a reserved attribute name …).
///
/// ```
/// use tenure_core::SourceId;
/// use tenure_sources::synthetic::{generate_csv, synthetic_source_config};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = synthetic_source_config(SourceId::new("hr")?);
/// let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).ok_or("date")?;
/// let records = tenure_sources::parse(&source, "hr.csv", generate_csv(100, 1, today).as_bytes())?;
/// assert_eq!(records.len(), 100);
/// assert_eq!(records[0].attribute("title"), "Chief Executive Officer");
///
/// let bad = "employee_id,worker_type\nE1,Intern\n";
/// let err = tenure_sources::parse(&source, "hr.csv", bad.as_bytes()).unwrap_err();
/// assert!(err.to_string().starts_with("hr.csv:1: column \"manager_id\": is not in the header"));
/// assert!(err.to_string().contains("hr.csv:2: column \"worker_type\": \"Intern\" is not a known employment type"));
/// # Ok(())
/// # }
/// ```
pub fn parse(
    source: &SourceConfig,
    file_name: &str,
    bytes: &[u8],
) -> Result<Vec<IdentityRecord>, SourceError> {
    parse_checked(source, file_name, bytes, &|_| None)
}

/// A rule every record must also follow (beyond the mapping): returns what
/// is wrong with a record, reported at the record's line (at its end date's
/// value, since that is what policy rules check: who must have an end date).
pub type RecordCheck<'a> = &'a (dyn Fn(&IdentityRecord) -> Option<String> + Sync);

/// [`parse`], with each record also checked by `check`; a record it refuses
/// rejects the file like any other problem, with its line.
pub fn parse_checked(
    source: &SourceConfig,
    file_name: &str,
    bytes: &[u8],
    check: RecordCheck<'_>,
) -> Result<Vec<IdentityRecord>, SourceError> {
    let mut problems = Problems::new(file_name);
    let mut mapping = Mapping::new(source, &mut problems);
    mapping.check = Some(check);
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let records = match source.format {
        SourceFormat::Csv => csv_source::parse(source, &mapping, bytes, &mut problems),
        SourceFormat::Json => json_source::parse_json(&mapping, bytes, &mut problems),
        SourceFormat::Jsonl => json_source::parse_jsonl(&mapping, bytes, &mut problems),
        SourceFormat::Scim => {
            problems.add_general(|| {
                format!(
                    "source {:?} receives SCIM pushes (`tenure serve`); it has no file to import",
                    source.id.as_str()
                )
            });
            Vec::new()
        }
    };
    problems.finish(records)
}
