//! CSV exports: a header row, then one record per row.
//!
//! Columns are found by their header name once per file, then every row is
//! read into one reused [`csv::ByteRecord`]. Only the mapped columns are
//! decoded (and so only they must be UTF-8); other columns are never looked at
//! beyond counting them. Values may be quoted (RFC 4180, `""` for a quote) and
//! may then hold the delimiter and line breaks. Rows whose fields are all blank
//! are skipped like empty lines. This module does not guess the delimiter or
//! the encoding, and it does not accept rows with a different number of fields
//! than the header.

use crate::error::{Problems, show};
use crate::mapping::{Cell, Mapping, Row};
use std::borrow::Cow;
use std::collections::HashMap;
use tenure_core::IdentityRecord;
use tenure_core::config::SourceConfig;

struct CsvRow<'r> {
    record: &'r csv::ByteRecord,
    /// Mapping column → field index in the record (`None`: not in the header).
    index: &'r [Option<usize>],
    line: usize,
}

impl Row for CsvRow<'_> {
    fn cell(&self, col: usize) -> Cell<'_> {
        let Some(Some(i)) = self.index.get(col) else {
            return Cell::Unknown;
        };
        let bytes = self.record.get(*i).unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(s) => Cell::Text(Cow::Borrowed(s)),
            Err(e) => Cell::Bad(format!(
                "{} is not valid UTF-8 (bad byte at offset {} of the value); the file must be \
                 UTF-8 encoded",
                show(&String::from_utf8_lossy(bytes)),
                e.valid_up_to()
            )),
        }
    }

    fn line(&self) -> usize {
        self.line
    }

    fn locate(&self, _col: Option<usize>) -> (usize, Option<usize>) {
        (self.line, None)
    }
}

fn line_of(record: &csv::ByteRecord) -> usize {
    record
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX))
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.iter().all(|f| f.trim_ascii().is_empty())
}

/// Parses a CSV export (BOM already removed).
pub(crate) fn parse(
    cfg: &SourceConfig,
    mapping: &Mapping<'_>,
    bytes: &[u8],
    problems: &mut Problems<'_>,
) -> Vec<IdentityRecord> {
    let delimiter = match u8::try_from(cfg.delimiter) {
        Ok(d) if d.is_ascii() && !matches!(d, b'"' | b'\n' | b'\r') => d,
        _ => {
            problems.add_general(|| {
                format!(
                    "source {:?}: the delimiter {:?} cannot be used; it must be a single ASCII \
                     character other than a quote or a line break",
                    cfg.id.as_str(),
                    cfg.delimiter
                )
            });
            return Vec::new();
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);

    // The header is the first record that is not blank.
    let mut header = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut header) {
            Ok(true) if is_blank(&header) => {}
            Ok(true) => break,
            Ok(false) => return Vec::new(), // empty file: no records
            Err(e) => {
                report_csv_error(problems, &e);
                return Vec::new();
            }
        }
    }
    let header_line = line_of(&header);
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_owned())
        .collect();

    let index = resolve_columns(mapping, &names, header_line, problems);

    let mut records = Vec::new();
    let mut seen = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut last_start: Option<(usize, usize)> = None; // (byte offset, line)
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                report_csv_error(problems, &e);
                break;
            }
        }
        let line = line_of(&record);
        last_start = record
            .position()
            .and_then(|p| usize::try_from(p.byte()).ok())
            .map(|b| (b, line));
        if is_blank(&record) {
            continue;
        }
        if record.len() != header.len() {
            let (got, want) = (record.len(), header.len());
            problems.add_at(line, None, || {
                format!(
                    "the record has {got} field{} but the header has {want}{}",
                    if got == 1 { "" } else { "s" },
                    if got > want {
                        " (a value containing the delimiter must be quoted)"
                    } else {
                        ""
                    }
                )
            });
            continue;
        }
        let row = CsvRow {
            record: &record,
            index: &index,
            line,
        };
        if let Some(r) = mapping.build(&row, &mut seen, problems) {
            records.push(r);
        }
    }

    if let Some((start, line)) = last_start
        && let Some(field) = bytes
            .get(start..)
            .and_then(|rest| unclosed_quote(rest, delimiter))
    {
        problems.add(|| crate::error::Draft {
            line: Some(line),
            column: None,
            field: names
                .get(field)
                .map(|n| crate::error::Field::Column(n.clone())),
            message: "a quoted value starts in this record and its closing quote is missing, \
                      so the rest of the file was read as part of it"
                .to_owned(),
        });
    }
    records
}

/// Finds each mapped column in the header, reporting missing and ambiguous ones.
fn resolve_columns(
    mapping: &Mapping<'_>,
    names: &[String],
    header_line: usize,
    problems: &mut Problems<'_>,
) -> Vec<Option<usize>> {
    let mut index = Vec::with_capacity(mapping.columns().len());
    for (col, wanted) in mapping.columns().iter().enumerate() {
        let wanted = wanted.trim();
        let mut found = names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.as_str() == wanted)
            .map(|(i, _)| i);
        let first = found.next();
        let second = found.next();
        match (first, second) {
            (Some(i), None) => index.push(Some(i)),
            (Some(i), Some(j)) => {
                problems.add(|| crate::error::Draft {
                    line: Some(header_line),
                    column: None,
                    field: Some(mapping.field(col)),
                    message: format!(
                        "appears more than once in the header (columns {} and {}), so it is \
                         ambiguous",
                        i + 1,
                        j + 1
                    ),
                });
                index.push(None);
            }
            (None, _) => {
                problems.add(|| {
                    let hint = names
                        .iter()
                        .find(|n| n.to_lowercase() == wanted.to_lowercase())
                        .map(|n| format!(" (did you mean {n:?}?)"))
                        .unwrap_or_default();
                    let listed: Vec<String> = names.iter().map(|n| show(n)).collect();
                    crate::error::Draft {
                        line: Some(header_line),
                        column: None,
                        field: Some(mapping.field(col)),
                        message: format!(
                            "is not in the header, but the source maps it to {}{hint}; the \
                             header's columns are: {}",
                            mapping.uses(col),
                            listed.join(", ")
                        ),
                    }
                });
                index.push(None);
            }
        }
    }
    index
}

fn report_csv_error(problems: &mut Problems<'_>, e: &csv::Error) {
    let line = e
        .position()
        .map_or(1, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    problems.add_at(line, None, || format!("cannot read the CSV: {e}"));
}

/// If `rest` (one record up to the end of the input) ends inside a quoted
/// value, the number of the field where that quote opened. This mirrors the
/// quoting rules of the `csv` crate, which silently reads an unclosed quote up
/// to the end of the input.
fn unclosed_quote(rest: &[u8], delimiter: u8) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        StartField,
        InField,
        InQuoted,
        QuoteInQuoted,
    }
    let mut state = State::StartField;
    let mut field = 0usize;
    for &b in rest {
        state = match (state, b) {
            (State::InQuoted, b'"') => State::QuoteInQuoted,
            (State::InQuoted, _) => State::InQuoted,
            (State::QuoteInQuoted, b'"') => State::InQuoted,
            (_, b'\n' | b'\r') => {
                field = 0;
                State::StartField
            }
            (_, d) if d == delimiter => {
                field += 1;
                State::StartField
            }
            (State::StartField, b'"') => State::InQuoted,
            _ => State::InField,
        };
    }
    (state == State::InQuoted).then_some(field)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn detects_unclosed_quotes() {
        assert_eq!(unclosed_quote(b"a,\"b\nc,d\n", b','), Some(1));
        assert_eq!(unclosed_quote(b"a,\"b\"\"\nc\",d\n", b','), None);
        assert_eq!(unclosed_quote(b"a,b\"c,d\n", b','), None);
        assert_eq!(unclosed_quote(b"\"a\"x,\"", b','), Some(1));
        assert_eq!(unclosed_quote(b"a;\"b;c", b';'), Some(1));
        assert_eq!(unclosed_quote(b"", b','), None);
    }
}
