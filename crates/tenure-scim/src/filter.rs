//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): a parser into
//! an AST, and an evaluator of a filter on one JSON value.
//!
//! The whole grammar is parsed: `eq ne co sw ew gt ge lt le pr`, `and`,
//! `or`, `not`, parentheses, and value paths (`emails[type eq "work" and
//! value co "@x"]`), with `not` binding tighter than `and`, and `and`
//! tighter than `or`. Keywords and operators are case-insensitive; string
//! values are JSON strings. Errors say what was expected at which character.
//!
//! The evaluator is for one resource at a time (PATCH value filters, a
//! group's members): list queries are translated to SQL by the store, never
//! evaluated in memory over all resources.

use crate::error::ScimError;
use serde_json::Value;
use std::fmt;

/// How deeply filters may nest (parentheses, `not`, value paths).
const MAX_DEPTH: usize = 32;
/// The longest filter accepted, in bytes.
pub const MAX_LEN: usize = 8192;

/// `[URI:]name[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, when the path is fully qualified.
    pub uri: Option<String>,
    /// The attribute.
    pub name: String,
    /// The sub-attribute.
    pub sub: Option<String>,
}

impl AttrPath {
    /// The path without its sub-attribute, as text (`urn:…:manager`).
    pub fn attr_text(&self) -> String {
        match &self.uri {
            Some(u) => format!("{u}:{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attr_text())?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl CompareOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

/// A comparison value.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
}

impl CompValue {
    /// The value as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`.
    Compare(AttrPath, CompareOp, CompValue),
    /// `path pr`.
    Present(AttrPath),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`.
    Not(Box<Filter>),
    /// `path[filter]`: some value of a multi-valued (or complex) attribute
    /// matches the inner filter, whose paths name its sub-attributes.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH path: `attrPath`, or `attrPath[valFilter]` optionally followed by `.sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (with a sub-attribute when written `a.b`).
    pub attr: AttrPath,
    /// The value filter.
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[…].value`).
    pub sub: Option<String>,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

/// Parses a filter.
pub fn parse(src: &str) -> Result<Filter, ScimError> {
    if src.len() > MAX_LEN {
        return Err(ScimError::filter(format!(
            "the filter is {} bytes long; at most {MAX_LEN} are accepted",
            src.len()
        )));
    }
    let mut p = Parser {
        src,
        pos: 0,
        depth: 0,
    };
    let f = p.or_expr(false)?;
    p.ws();
    if p.pos < src.len() {
        return Err(p.err("`and`, `or` or the end of the filter"));
    }
    Ok(f)
}

/// Parses a PATCH path.
pub fn parse_path(src: &str) -> Result<PatchPath, ScimError> {
    let mut p = Parser {
        src,
        pos: 0,
        depth: 0,
    };
    let to_path = |e: ScimError| ScimError::path(format!("invalid path {src:?}: {}", e.detail));
    p.ws();
    let attr = p.attr_path().map_err(to_path)?;
    let mut filter = None;
    let mut sub = None;
    if p.peek() == Some('[') {
        if attr.sub.is_some() {
            return Err(to_path(p.err("no value filter after a sub-attribute")));
        }
        p.pos += 1;
        p.depth += 1;
        filter = Some(p.or_expr(true).map_err(to_path)?);
        p.ws();
        if p.peek() != Some(']') {
            return Err(to_path(p.err("`]`")));
        }
        p.pos += 1;
        if p.peek() == Some('.') {
            p.pos += 1;
            let name = p.name().map_err(to_path)?;
            sub = Some(name);
        }
    }
    p.ws();
    if p.pos < src.len() {
        return Err(to_path(p.err("the end of the path")));
    }
    Ok(PatchPath { attr, filter, sub })
}

impl Parser<'_> {
    fn err(&self, expected: &str) -> ScimError {
        let found: String = self.src[self.pos..].chars().take(12).collect();
        let found = if found.is_empty() {
            "the end".to_owned()
        } else {
            format!("{found:?}")
        };
        ScimError::filter(format!(
            "expected {expected} at character {} of the filter, found {found}",
            self.pos + 1
        ))
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next word (letters only), without consuming it.
    fn word(&self) -> &str {
        let rest = &self.src[self.pos..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        &rest[..end]
    }

    /// Consumes `kw` (case-insensitive) if it is the next whole word.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let w = self.word();
        if w.eq_ignore_ascii_case(kw) {
            let after = self.pos + w.len();
            match self.src[after..].chars().next() {
                None | Some(' ' | '(' | '\t' | '\n' | '\r') => {
                    self.pos = after;
                    true
                }
                _ => false,
            }
        } else {
            false
        }
    }

    fn or_expr(&mut self, inner: bool) -> Result<Filter, ScimError> {
        let mut left = self.and_expr(inner)?;
        loop {
            let save = self.pos;
            if self.keyword("or") {
                let right = self.and_expr(inner)?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self, inner: bool) -> Result<Filter, ScimError> {
        let mut left = self.unary(inner)?;
        loop {
            let save = self.pos;
            if self.keyword("and") {
                let right = self.unary(inner)?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ScimError::filter(format!(
                "the filter nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn unary(&mut self, inner: bool) -> Result<Filter, ScimError> {
        self.ws();
        let save = self.pos;
        if self.keyword("not") {
            self.ws();
            if self.peek() == Some('(') {
                self.enter()?;
                let f = self.group(inner)?;
                self.depth -= 1;
                return Ok(Filter::Not(Box::new(f)));
            }
            // An attribute called `not…`: read it as a path.
            self.pos = save;
        }
        if self.peek() == Some('(') {
            self.enter()?;
            let f = self.group(inner)?;
            self.depth -= 1;
            return Ok(f);
        }
        let path = self.attr_path()?;
        if self.peek() == Some('[') {
            if inner {
                return Err(self.err("an operator (value filters do not nest)"));
            }
            if path.sub.is_some() {
                return Err(self.err("an operator (no value filter after a sub-attribute)"));
            }
            self.pos += 1;
            self.enter()?;
            let f = self.or_expr(true)?;
            self.depth -= 1;
            self.ws();
            if self.peek() != Some(']') {
                return Err(self.err("`]`"));
            }
            self.pos += 1;
            return Ok(Filter::ValuePath(path, Box::new(f)));
        }
        self.ws();
        let op_start = self.pos;
        let op = self.word().to_owned();
        if op.eq_ignore_ascii_case("pr") {
            self.pos += 2;
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(&op) else {
            return Err(self.err("an operator (eq ne co sw ew gt ge lt le pr)"));
        };
        self.pos = op_start + 2;
        match self.peek() {
            Some(' ' | '\t') => {}
            _ => return Err(self.err("a space after the operator")),
        }
        self.ws();
        let value = self.comp_value()?;
        Ok(Filter::Compare(path, op, value))
    }

    fn group(&mut self, inner: bool) -> Result<Filter, ScimError> {
        // at '('
        self.pos += 1;
        let f = self.or_expr(inner)?;
        self.ws();
        if self.peek() != Some(')') {
            return Err(self.err("`)`"));
        }
        self.pos += 1;
        Ok(f)
    }

    fn name(&mut self) -> Result<String, ScimError> {
        let rest = &self.src[self.pos..];
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let ok = if i == 0 {
                c.is_ascii_alphabetic() || c == '$'
            } else {
                c.is_ascii_alphanumeric() || c == '_' || c == '-'
            };
            if !ok {
                break;
            }
            end = i + c.len_utf8();
        }
        if end == 0 {
            return Err(self.err("an attribute name"));
        }
        self.pos += end;
        Ok(rest[..end].to_owned())
    }

    fn attr_path(&mut self) -> Result<AttrPath, ScimError> {
        self.ws();
        let rest = &self.src[self.pos..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-$:.".contains(c)))
            .unwrap_or(rest.len());
        let token = &rest[..end];
        if token.is_empty() {
            return Err(self.err("an attribute path"));
        }
        let (uri, local) = if token.to_ascii_lowercase().starts_with("urn:") {
            match token.rfind(':') {
                Some(i) if i + 1 < token.len() => (Some(token[..i].to_owned()), &token[i + 1..]),
                _ => return Err(self.err("an attribute after the schema URN")),
            }
        } else {
            (None, token)
        };
        let (name, sub) = match local.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (local, None),
        };
        let valid = |s: &str| {
            let mut cs = s.chars();
            matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !valid(name) || sub.is_some_and(|s| !valid(s)) {
            return Err(self.err("an attribute path (`name`, `name.sub` or `urn:…:name`)"));
        }
        self.pos += end;
        Ok(AttrPath {
            uri,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    fn comp_value(&mut self) -> Result<CompValue, ScimError> {
        match self.peek() {
            Some('"') => {
                // Find the closing quote, honouring escapes, and let serde_json decode.
                let bytes = self.src.as_bytes();
                let mut i = self.pos + 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                if i >= bytes.len() {
                    return Err(self.err("a closing `\"`"));
                }
                let text = &self.src[self.pos..=i];
                let s: String =
                    serde_json::from_str(text).map_err(|_| self.err("a valid JSON string"))?;
                self.pos = i + 1;
                Ok(CompValue::String(s))
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let rest = &self.src[self.pos..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                    .unwrap_or(rest.len());
                let n: serde_json::Number =
                    serde_json::from_str(&rest[..end]).map_err(|_| self.err("a number"))?;
                self.pos += end;
                Ok(CompValue::Number(n))
            }
            _ => {
                let w = self.word().to_ascii_lowercase();
                let v = match w.as_str() {
                    "true" => CompValue::Bool(true),
                    "false" => CompValue::Bool(false),
                    "null" => CompValue::Null,
                    _ => return Err(self.err("a value (a string, number, true, false or null)")),
                };
                self.pos += w.len();
                Ok(v)
            }
        }
    }
}

/// Looks up `path` in `obj` (case-insensitive attribute names).
fn get_ci<'v>(obj: &'v Value, name: &str) -> Option<&'v Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values a path reaches in `obj` (a multi-valued attribute gives one per element).
fn values_at<'v>(obj: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    let base = match &path.uri {
        Some(u) => match get_ci(obj, u) {
            Some(ext) => get_ci(ext, &path.name),
            // The core schema's URN prefixes attributes at the top level.
            None => get_ci(obj, &path.name),
        },
        None => get_ci(obj, &path.name),
    };
    let Some(base) = base else { return vec![] };
    let items: Vec<&Value> = match base {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    match &path.sub {
        None => items
            .into_iter()
            .map(|v| {
                // A complex multi-valued attribute compared as a whole compares its `value`.
                if v.is_object() {
                    get_ci(v, "value").unwrap_or(v)
                } else {
                    v
                }
            })
            .collect(),
        Some(s) => items.into_iter().filter_map(|v| get_ci(v, s)).collect(),
    }
}

fn compare_one(v: &Value, op: CompareOp, want: &CompValue, exact: bool) -> bool {
    use std::cmp::Ordering;
    let fold = |s: &str| {
        if exact {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    match (v, want) {
        (Value::String(a), CompValue::String(b)) => {
            let (a, b) = (fold(a), fold(b));
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            }
        }
        (Value::Bool(a), CompValue::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Value::Number(a), CompValue::Number(b)) => {
            let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) else {
                return false;
            };
            let o = a.partial_cmp(&b);
            match op {
                CompareOp::Eq => o == Some(Ordering::Equal),
                CompareOp::Ne => o != Some(Ordering::Equal),
                CompareOp::Gt => o == Some(Ordering::Greater),
                CompareOp::Ge => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
                CompareOp::Lt => o == Some(Ordering::Less),
                CompareOp::Le => matches!(o, Some(Ordering::Less | Ordering::Equal)),
                _ => false,
            }
        }
        (Value::Null, CompValue::Null) => op == CompareOp::Eq,
        (_, CompValue::Null) => op == CompareOp::Ne,
        _ => op == CompareOp::Ne,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Whether `obj` matches `filter`. `case_exact` says whether a path's
/// string values compare with case (from the schema).
pub fn matches(filter: &Filter, obj: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
    match filter {
        Filter::Compare(path, op, want) => {
            let vals = values_at(obj, path);
            let exact = case_exact(path);
            if vals.is_empty() {
                return matches!(
                    (op, want),
                    (CompareOp::Eq, CompValue::Null) | (CompareOp::Ne, _)
                ) && !matches!((op, want), (CompareOp::Ne, CompValue::Null));
            }
            vals.into_iter().any(|v| compare_one(v, *op, want, exact))
        }
        Filter::Present(path) => values_at(obj, path).into_iter().any(present),
        Filter::And(a, b) => matches(a, obj, case_exact) && matches(b, obj, case_exact),
        Filter::Or(a, b) => matches(a, obj, case_exact) || matches(b, obj, case_exact),
        Filter::Not(a) => !matches(a, obj, case_exact),
        Filter::ValuePath(path, inner) => {
            let base = match &path.uri {
                Some(u) => get_ci(obj, u).and_then(|e| get_ci(e, &path.name)),
                None => get_ci(obj, &path.name),
            };
            let parent = path.clone();
            let exact = |p: &AttrPath| {
                case_exact(&AttrPath {
                    uri: parent.uri.clone(),
                    name: parent.name.clone(),
                    sub: Some(p.name.clone()),
                })
            };
            match base {
                Some(Value::Array(items)) => items.iter().any(|i| matches(inner, i, &exact)),
                Some(v @ Value::Object(_)) => matches(inner, v, &exact),
                _ => false,
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare(p, op, v) => {
                let op = format!("{op:?}").to_ascii_lowercase();
                write!(f, "{p} {op} {}", v.to_json())
            }
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::And(a, b) => write!(f, "({a} and {b})"),
            Filter::Or(a, b) => write!(f, "({a} or {b})"),
            Filter::Not(a) => write!(f, "not ({a})"),
            Filter::ValuePath(p, inner) => write!(f, "{p}[{inner}]"),
        }
    }
}
