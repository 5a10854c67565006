//! Problems found in an HR export, and the error that carries all of them.
//!
//! An import is atomic: [`crate::parse`] either returns every record or a
//! [`SourceError`] listing every problem it found (up to [`MAX_PROBLEMS`], with
//! a count of the rest). Each [`Problem`] is plain data — file, line, column,
//! source field, message — so a command-line tool can print it and an API can
//! serialise it. This module only describes problems; it does not decide what
//! is a problem (that is the format modules' and the mapping's job).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How many problems a [`SourceError`] keeps; the rest are only counted.
pub const MAX_PROBLEMS: usize = 50;

/// The source field a problem is about, by the name the export uses for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Field {
    /// A CSV column, by its header name. Displayed as `column "hire_date"`.
    Column(String),
    /// A JSON object key. Displayed as `field "hire_date"`.
    Key(String),
}

impl Field {
    /// The column or key name.
    pub fn name(&self) -> &str {
        match self {
            Field::Column(n) | Field::Key(n) => n,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Column(n) => write!(f, "column {n:?}"),
            Field::Key(n) => write!(f, "field {n:?}"),
        }
    }
}

/// One problem in an HR export.
///
/// Displayed as `file:line[:column]: [field: ]message`, for example
/// `hr-2026-11.csv:14: column "hire_date": "2026-13-01" is not a date in the format %Y-%m-%d`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Problem {
    /// The file name, as the caller gave it.
    pub file: String,
    /// 1-based line. For CSV, the physical line where the record starts (the
    /// header is line 1, and quoted values spanning lines are counted). `None`
    /// for problems of the source's configuration rather than of a record.
    pub line: Option<usize>,
    /// 1-based byte column within the line, counted the way `serde_json`
    /// counts it. Only JSON and JSON-lines problems have one.
    pub column: Option<usize>,
    /// The source column (CSV) or key (JSON) the problem is about, if any.
    pub field: Option<Field>,
    /// What is wrong, with the offending value and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why an HR export could not be imported: every problem found in it.
///
/// `Display` prints the problems one per line (no heading, no trailing
/// newline), followed by a line counting those left out when there were more
/// than [`MAX_PROBLEMS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SourceError {
    file: String,
    problems: Vec<Problem>,
    omitted: usize,
}

impl SourceError {
    /// The file name, as the caller gave it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The problems kept, in the order they were found (file order, after any
    /// problems of the source's configuration).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// How many further problems were found but not kept.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// How many problems were found in all.
    pub fn total(&self) -> usize {
        self.problems.len() + self.omitted
    }

    /// The problems kept, by value.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        if self.omitted > 0 {
            write!(
                f,
                "\n{}: … and {} more problem{} not shown ({} in all)",
                self.file,
                self.omitted,
                if self.omitted == 1 { "" } else { "s" },
                self.total()
            )?;
        }
        Ok(())
    }
}

/// A problem before the file name is attached.
pub(crate) struct Draft {
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) field: Option<Field>,
    pub(crate) message: String,
}

/// Collects problems while a file is parsed; builds them lazily so that files
/// with thousands of bad rows cost nothing beyond the kept ones.
pub(crate) struct Problems<'f> {
    file: &'f str,
    list: Vec<Problem>,
    total: usize,
}

impl<'f> Problems<'f> {
    pub(crate) fn new(file: &'f str) -> Self {
        Self {
            file,
            list: Vec::new(),
            total: 0,
        }
    }

    /// Whether no problem has been found yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Records a problem; `draft` runs only if the problem is kept.
    pub(crate) fn add(&mut self, draft: impl FnOnce() -> Draft) {
        self.total += 1;
        if self.list.len() < MAX_PROBLEMS {
            let d = draft();
            self.list.push(Problem {
                file: self.file.to_owned(),
                line: d.line,
                column: d.column,
                field: d.field,
                message: d.message,
            });
        }
    }

    /// A problem with no position (of the configuration, or of the whole file).
    pub(crate) fn add_general(&mut self, message: impl FnOnce() -> String) {
        self.add(|| Draft {
            line: None,
            column: None,
            field: None,
            message: message(),
        });
    }

    /// A problem at a line (and column), about no particular field.
    pub(crate) fn add_at(
        &mut self,
        line: usize,
        column: Option<usize>,
        message: impl FnOnce() -> String,
    ) {
        self.add(|| Draft {
            line: Some(line),
            column,
            field: None,
            message: message(),
        });
    }

    /// The records if nothing was wrong, or every problem.
    pub(crate) fn finish<T>(self, ok: T) -> Result<T, SourceError> {
        if self.total == 0 {
            Ok(ok)
        } else {
            Err(SourceError {
                file: self.file.to_owned(),
                omitted: self.total - self.list.len(),
                problems: self.list,
            })
        }
    }
}

/// A value quoted for a message, cut short if it is long.
pub(crate) fn show(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    match value.char_indices().nth(MAX_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", value.get(..cut).unwrap_or(value)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn problem_display() {
        let p = Problem {
            file: "hr-2026-11.csv".into(),
            line: Some(14),
            column: None,
            field: Some(Field::Column("hire_date".into())),
            message: "\"2026-13-01\" is not a date in the format %Y-%m-%d".into(),
        };
        assert_eq!(
            p.to_string(),
            "hr-2026-11.csv:14: column \"hire_date\": \"2026-13-01\" is not a date in the format %Y-%m-%d"
        );
        let p = Problem {
            file: "hr.json".into(),
            line: Some(3),
            column: Some(7),
            field: Some(Field::Key("id".into())),
            message: "x".into(),
        };
        assert_eq!(p.to_string(), "hr.json:3:7: field \"id\": x");
        let p = Problem {
            file: "hr.json".into(),
            line: None,
            column: Some(7),
            field: None,
            message: "x".into(),
        };
        assert_eq!(p.to_string(), "hr.json: x");
    }

    #[test]
    fn caps_and_counts() {
        let mut ps = Problems::new("f.csv");
        for i in 0..(MAX_PROBLEMS + 7) {
            ps.add_at(i + 2, None, || format!("p{i}"));
        }
        let err = ps.finish(()).unwrap_err();
        assert_eq!(err.problems().len(), MAX_PROBLEMS);
        assert_eq!(err.omitted(), 7);
        assert_eq!(err.total(), MAX_PROBLEMS + 7);
        let text = err.to_string();
        assert_eq!(text.lines().count(), MAX_PROBLEMS + 1);
        assert!(text.lines().next().unwrap().starts_with("f.csv:2: p0"));
        assert!(
            text.ends_with("f.csv: … and 7 more problems not shown (57 in all)"),
            "{text}"
        );
    }

    #[test]
    fn show_cuts_long_values() {
        assert_eq!(show("a\"b"), "\"a\\\"b\"");
        let long = "é".repeat(100);
        let s = show(&long);
        assert!(s.ends_with("\"…"));
        assert_eq!(s.chars().filter(|c| *c == 'é').count(), 80);
    }
}
