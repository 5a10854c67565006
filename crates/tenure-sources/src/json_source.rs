//! JSON exports: an array of objects (`json`), or one object per line (`jsonl`).
//!
//! For `json`, the array is walked element by element (each element parsed by
//! `serde_json`), so every record's line and column are known and problems can
//! name them. A syntax error ends the walk, since nothing after it can be
//! trusted; in `jsonl` a bad line is reported and the next line is read. Keys
//! that the source does not map are ignored whatever their values; mapped
//! values may be strings, numbers, booleans (stringified) or null (empty).
//! This module does not accept a single top-level object, comments, or
//! several values on one `jsonl` line.

use crate::error::Problems;
use crate::mapping::{Cell, Mapping, Row};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use tenure_core::IdentityRecord;

struct JsonRow<'r> {
    object: &'r Map<String, Value>,
    mapping: &'r Mapping<'r>,
    /// The record's text, for finding a key's position when reporting.
    text: &'r str,
    line: usize,
    /// 1-based byte column where the record starts.
    column: usize,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Row for JsonRow<'_> {
    fn cell(&self, col: usize) -> Cell<'_> {
        let Some(name) = self.mapping.columns().get(col) else {
            return Cell::Unknown;
        };
        match self.object.get(*name) {
            None | Some(Value::Null) => Cell::Absent,
            Some(Value::String(s)) => Cell::Text(Cow::Borrowed(s)),
            Some(Value::Number(n)) => Cell::Text(Cow::Owned(n.to_string())),
            Some(Value::Bool(b)) => Cell::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
            Some(v @ (Value::Array(_) | Value::Object(_))) => Cell::Bad(format!(
                "{} is not allowed here; expected a string, number, boolean or null",
                kind(v)
            )),
        }
    }

    fn line(&self) -> usize {
        self.line
    }

    fn locate(&self, col: Option<usize>) -> (usize, Option<usize>) {
        let here = (self.line, Some(self.column));
        let Some(name) = col.and_then(|c| self.mapping.columns().get(c)) else {
            return here;
        };
        let Some(offset) = find_key(self.text, name) else {
            return here;
        };
        let before = self.text.get(..offset).unwrap_or_default();
        match before.rfind('\n') {
            None => (self.line, Some(self.column + offset)),
            Some(nl) => (self.line + before.matches('\n').count(), Some(offset - nl)),
        }
    }
}

/// The byte offset of `"key"` used as a key (followed by `:`) in `text`.
/// Best effort: a key written with escapes is not found.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let quoted = serde_json::to_string(key).ok()?;
    let mut from = 0;
    while let Some(i) = text.get(from..).and_then(|t| t.find(&quoted)) {
        let at = from + i;
        let after = text.get(at + quoted.len()..).unwrap_or_default();
        if after.trim_start().starts_with(':') {
            return Some(at);
        }
        from = at + quoted.len();
    }
    None
}

/// `serde_json`'s message without its " at line L column C" suffix.
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    s.strip_suffix(&suffix).map(str::to_owned).unwrap_or(s)
}

fn utf8<'b>(bytes: &'b [u8], problems: &mut Problems<'_>) -> Option<&'b str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let col = valid
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(valid.len(), |nl| valid.len() - nl - 1)
                + 1;
            problems.add_at(line, Some(col), || {
                "the file is not valid UTF-8 here; a JSON export must be UTF-8 encoded".to_owned()
            });
            None
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Tracks the line of a forward-moving offset without rescanning the text.
struct Lines<'t> {
    text: &'t [u8],
    offset: usize,
    line: usize,
    line_start: usize,
}

impl Lines<'_> {
    fn at(&mut self, offset: usize) -> (usize, usize) {
        if offset > self.offset {
            let span = self.text.get(self.offset..offset).unwrap_or_default();
            for (i, b) in span.iter().enumerate() {
                if *b == b'\n' {
                    self.line += 1;
                    self.line_start = self.offset + i + 1;
                }
            }
            self.offset = offset;
        }
        (self.line, offset.saturating_sub(self.line_start) + 1)
    }
}

/// Parses a JSON array of objects (BOM already removed).
pub(crate) fn parse_json(
    mapping: &Mapping<'_>,
    bytes: &[u8],
    problems: &mut Problems<'_>,
) -> Vec<IdentityRecord> {
    let mut records = Vec::new();
    let Some(text) = utf8(bytes, problems) else {
        return records;
    };
    let b = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while b.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        i
    };
    let mut lines = Lines {
        text: b,
        offset: 0,
        line: 1,
        line_start: 0,
    };
    let mut pos = skip_ws(0);
    match b.get(pos) {
        None => return records, // empty file: no records
        Some(b'[') => {}
        Some(c) => {
            let (line, col) = lines.at(pos);
            let found = *c;
            problems.add_at(line, Some(col), || {
                if found == b'{' {
                    "the file holds a single JSON object; a json source must be an array of \
                     objects (for one object per line, use format = \"jsonl\")"
                        .to_owned()
                } else {
                    "expected a JSON array of objects, starting with `[`".to_owned()
                }
            });
            return records;
        }
    }
    pos = skip_ws(pos + 1);
    if b.get(pos) == Some(&b']') {
        pos += 1;
    } else {
        let mut seen = HashMap::new();
        let mut number = 0usize;
        loop {
            number += 1;
            let start = pos;
            let (line, column) = lines.at(start);
            let rest = text.get(start..).unwrap_or_default();
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            let value = match stream.next() {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    let (l, c) = if e.line() <= 1 {
                        (line, column + e.column().saturating_sub(1))
                    } else {
                        (line + e.line() - 1, e.column())
                    };
                    problems.add_at(l, Some(c), || {
                        format!("JSON syntax error: {}", json_message(&e))
                    });
                    return records;
                }
                None => {
                    let (l, c) = lines.at(b.len());
                    problems.add_at(l, Some(c), || {
                        "the file ends inside the array: expected a record and `]`".to_owned()
                    });
                    return records;
                }
            };
            let end = start + stream.byte_offset();
            match &value {
                Value::Object(object) => {
                    let row = JsonRow {
                        object,
                        mapping,
                        text: text.get(start..end).unwrap_or_default(),
                        line,
                        column,
                    };
                    if let Some(r) = mapping.build(&row, &mut seen, problems) {
                        records.push(r);
                    }
                }
                other => problems.add_at(line, Some(column), || {
                    format!(
                        "record {number} is {}, not an object; expected an object with the \
                         source's fields",
                        kind(other)
                    )
                }),
            }
            pos = skip_ws(end);
            match b.get(pos) {
                Some(b',') => pos = skip_ws(pos + 1),
                Some(b']') => {
                    pos += 1;
                    break;
                }
                found => {
                    let (l, c) = lines.at(pos);
                    let at_end = found.is_none();
                    problems.add_at(l, Some(c), || {
                        if at_end {
                            format!(
                                "the file ends inside the array: expected `,` or `]` after \
                                 record {number}"
                            )
                        } else {
                            format!("JSON syntax error: expected `,` or `]` after record {number}")
                        }
                    });
                    return records;
                }
            }
        }
    }
    let after = skip_ws(pos);
    if after < b.len() {
        let (l, c) = lines.at(after);
        problems.add_at(l, Some(c), || {
            "JSON syntax error: unexpected text after the closing `]` of the array".to_owned()
        });
    }
    records
}

/// Parses JSON lines: one object per line, blank lines allowed (BOM already removed).
pub(crate) fn parse_jsonl(
    mapping: &Mapping<'_>,
    bytes: &[u8],
    problems: &mut Problems<'_>,
) -> Vec<IdentityRecord> {
    let mut records = Vec::new();
    let mut seen = HashMap::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.trim_ascii().is_empty() {
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let col = e.valid_up_to() + 1;
                problems.add_at(line, Some(col), || {
                    "the line is not valid UTF-8 here; a JSON-lines export must be UTF-8 encoded"
                        .to_owned()
                });
                continue;
            }
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.add_at(line, Some(e.column()), || {
                    format!("JSON syntax error: {}", json_message(&e))
                });
                continue;
            }
        };
        match &value {
            Value::Object(object) => {
                let lead = text.len() - text.trim_start().len();
                let row = JsonRow {
                    object,
                    mapping,
                    text: text.get(lead..).unwrap_or_default(),
                    line,
                    column: lead + 1,
                };
                if let Some(r) = mapping.build(&row, &mut seen, problems) {
                    records.push(r);
                }
            }
            other => {
                let lead = text.len() - text.trim_start().len();
                problems.add_at(line, Some(lead + 1), || {
                    format!(
                        "the line holds {}, not an object; expected one object with the \
                         source's fields per line",
                        kind(other)
                    )
                });
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn finds_keys_not_values() {
        let t = r#"{"a": "id", "id" : 1}"#;
        assert_eq!(find_key(t, "id"), Some(12));
        assert_eq!(find_key(t, "b"), None);
    }

    #[test]
    fn lines_track_forward() {
        let t = b"[\n  {},\n  {}\n]";
        let mut l = Lines {
            text: t,
            offset: 0,
            line: 1,
            line_start: 0,
        };
        assert_eq!(l.at(4), (2, 3));
        assert_eq!(l.at(10), (3, 3));
    }
}
