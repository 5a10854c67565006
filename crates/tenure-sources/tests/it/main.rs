//! Integration tests of `tenure-sources`: every format, every problem, the
//! synthetic generator, and property tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod csv_errors;
mod csv_ok;
mod json;
mod props;
mod synthetic;

use std::collections::BTreeMap;
use tenure_core::config::{MissingPolicy, SourceColumns, SourceConfig, SourceFormat};
use tenure_core::{IdentityRecord, SourceId};
use tenure_sources::SourceError;

/// A source with every kind of mapping:
/// id ← `id`, employment_type ← `type`, manager ← `manager`, start_date ←
/// `start`, end_date ← `end`; attributes name ← `name`, dept ← `dept`;
/// `name` required; `FT` → employee, `Contractor` → contractor.
pub fn source(format: SourceFormat) -> SourceConfig {
    SourceConfig {
        id: SourceId::new("hr").unwrap(),
        format,
        path: None,
        missing: MissingPolicy::Ignore,
        date_format: "%Y-%m-%d".into(),
        delimiter: ',',
        columns: SourceColumns {
            id: "id".into(),
            employment_type: Some("type".into()),
            manager: Some("manager".into()),
            start_date: Some("start".into()),
            end_date: Some("end".into()),
        },
        attributes: BTreeMap::from([
            ("name".into(), "name".into()),
            ("dept".into(), "dept".into()),
        ]),
        required: vec!["name".into()],
        employment_types: BTreeMap::from([
            ("FT".into(), "employee".into()),
            ("Contractor".into(), "contractor".into()),
        ]),
        default_employment_type: "employee".into(),
        deactivate: Default::default(),
        deactivation_window_minutes: 60,
    }
}

pub const HEADER: &str = "id,type,manager,start,end,name,dept\n";

pub fn csv(text: &str) -> Result<Vec<IdentityRecord>, SourceError> {
    tenure_sources::parse(&source(SourceFormat::Csv), "hr.csv", text.as_bytes())
}

pub fn ok_csv(text: &str) -> Vec<IdentityRecord> {
    csv(text).unwrap_or_else(|e| panic!("{e}"))
}

pub fn err_csv(text: &str) -> SourceError {
    csv(text).expect_err("must fail")
}

pub fn d(s: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The error's lines.
pub fn lines(e: &SourceError) -> Vec<String> {
    e.to_string().lines().map(str::to_owned).collect()
}
