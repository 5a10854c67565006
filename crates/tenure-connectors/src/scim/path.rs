//! SCIM attribute paths (RFC 7644 §3.5.2 `attrPath` / `valuePath`), the
//! subset an attribute mapping may name, and filter literals.
//!
//! A mapped path is one of:
//! - `displayName`, `name.givenName` — a core attribute or a sub-attribute;
//! - `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`
//!   (and `…:manager.value`) — an attribute of a schema extension;
//! - `emails[type eq "work"].value` — the sub-attribute of the value of a
//!   multi-valued attribute that a `type` (or any sub-attribute) selects;
//!   without `.sub`, the value's `value` is meant.
//!
//! This module reads values out of resources, writes them into resources
//! (for POST and PUT bodies) and renders PATCH paths. Attribute names are
//! compared without case, as RFC 7643 §2.1 says. Every string put into a
//! filter goes through [`quote`]. It does not parse general filters: Tenure
//! only ever builds them.

use serde_json::{Map, Value};
use std::fmt;

/// A string as a SCIM filter literal: a JSON string, so that `"` and `\`
/// (and control characters) are escaped and cannot end the literal early.
pub(crate) fn quote(s: &str) -> String {
    // Serialising a &str to JSON cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The value a value filter compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    /// A string (`type eq "work"`).
    Str(String),
    /// A boolean (`primary eq true`).
    Bool(bool),
}

impl Literal {
    fn json(&self) -> Value {
        match self {
            Literal::Str(s) => Value::String(s.clone()),
            Literal::Bool(b) => Value::Bool(*b),
        }
    }

    /// Whether a value in a resource matches (strings without case, as
    /// `type` values are compared).
    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Literal::Str(a), Value::String(b)) => a.to_lowercase() == b.to_lowercase(),
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::Bool(a), Value::String(b)) => b.eq_ignore_ascii_case(&a.to_string()),
            _ => false,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => f.write_str(&quote(s)),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `[attr eq literal]`: which value of a multi-valued attribute is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueFilter {
    pub(crate) attr: String,
    pub(crate) value: Literal,
}

/// A parsed attribute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttrPath {
    /// The schema extension's URN, for an extension attribute.
    pub(crate) urn: Option<String>,
    /// The attribute.
    pub(crate) attr: String,
    /// For a multi-valued attribute: which value.
    pub(crate) filter: Option<ValueFilter>,
    /// The sub-attribute (always set when `filter` is).
    pub(crate) sub: Option<String>,
}

/// Attributes a mapping may not write: the service owns them, or Tenure
/// manages them through other operations.
const RESERVED: &[(&str, &str)] = &[
    ("id", "the service assigns it"),
    ("meta", "the service maintains it"),
    ("schemas", "Tenure sets it"),
    (
        "active",
        "Tenure manages it through enable and disable operations",
    ),
    (
        "groups",
        "it is read-only; memberships are entitlements, changed on the Group",
    ),
    (
        "password",
        "a password is never read back, so Tenure could not keep it in sync",
    ),
];

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

impl AttrPath {
    /// Parses a path; the error says what is wrong with it.
    pub(crate) fn parse(s: &str) -> Result<AttrPath, String> {
        let s = s.trim();
        let (urn, rest) = if s.len() > 4 && s[..4].eq_ignore_ascii_case("urn:") {
            // The attribute follows the URN's last colon (the URN's own
            // parts are separated by colons too).
            let Some(i) = s.rfind(':') else {
                return Err("an extension path is the schema URN, a colon and an attribute".into());
            };
            let urn = &s[..i];
            let rest = &s[i + 1..];
            if urn.split(':').count() < 3 || rest.is_empty() {
                return Err("an extension path is the schema URN, a colon and an attribute (urn:…:User:department)".into());
            }
            (Some(urn.to_owned()), rest)
        } else {
            (None, s)
        };
        let (attr, after) = match rest.find(['[', '.']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !is_name(attr) {
            return Err(format!(
                "{attr:?} is not an attribute name (letters, digits, _, - and $, starting with a letter)"
            ));
        }
        let (filter, after) = if let Some(inner) = after.strip_prefix('[') {
            let Some(end) = inner.rfind(']') else {
                return Err("a value filter [...] is not closed".into());
            };
            (Some(parse_filter(&inner[..end])?), &inner[end + 1..])
        } else {
            (None, after)
        };
        let sub = match after {
            "" => None,
            s => match s.strip_prefix('.') {
                Some(sub) if is_name(sub) => Some(sub.to_owned()),
                _ => {
                    return Err(format!(
                        "{s:?} after the attribute is not a sub-attribute (.name)"
                    ));
                }
            },
        };
        let sub = match (&filter, sub) {
            (Some(_), None) => Some("value".to_owned()),
            (_, sub) => sub,
        };
        if urn.is_none()
            && let Some((_, why)) = RESERVED.iter().find(|(r, _)| r.eq_ignore_ascii_case(attr))
        {
            return Err(format!("{attr:?} cannot be mapped: {why}"));
        }
        Ok(AttrPath {
            urn,
            attr: attr.to_owned(),
            filter,
            sub,
        })
    }

    /// A path for a top-level core attribute (the key attribute).
    pub(crate) fn simple(attr: &str) -> AttrPath {
        AttrPath {
            urn: None,
            attr: attr.to_owned(),
            filter: None,
            sub: None,
        }
    }

    /// The attribute's path without the value filter and sub-attribute
    /// (`emails`, `urn:…:User:manager`).
    pub(crate) fn attr_path(&self) -> String {
        match &self.urn {
            Some(u) => format!("{u}:{}", self.attr),
            None => self.attr.clone(),
        }
    }

    /// The path to the whole selected value of a multi-valued attribute
    /// (`emails[type eq "work"]`), or the attribute itself.
    fn value_path(&self) -> String {
        match &self.filter {
            Some(f) => format!("{}[{} eq {}]", self.attr_path(), f.attr, f.value),
            None => self.attr_path(),
        }
    }

    /// Whether the path selects one value of a multi-valued attribute.
    pub(crate) fn is_filtered(&self) -> bool {
        self.filter.is_some()
    }

    /// The container object of the attribute in a resource (the resource
    /// itself, or the extension's object).
    fn container<'v>(&self, resource: &'v Value) -> Option<&'v Map<String, Value>> {
        let obj = resource.as_object()?;
        match &self.urn {
            None => Some(obj),
            Some(u) => get_ci(obj, u)?.as_object(),
        }
    }

    /// Reads the path's value from a resource as text: strings as they
    /// are, numbers and booleans in JSON notation; absent, null and empty
    /// values are `None`.
    pub(crate) fn get(&self, resource: &Value) -> Option<String> {
        let attr = get_ci(self.container(resource)?, &self.attr)?;
        let v = match (&self.filter, &self.sub) {
            (Some(f), sub) => {
                let elem = attr.as_array()?.iter().find(|e| {
                    e.as_object()
                        .and_then(|o| get_ci(o, &f.attr))
                        .is_some_and(|v| f.value.matches(v))
                })?;
                match sub {
                    Some(sub) => get_ci(elem.as_object()?, sub)?,
                    None => elem,
                }
            }
            (None, Some(sub)) => get_ci(attr.as_object()?, sub)?,
            (None, None) => attr,
        };
        text(v)
    }

    /// Writes a value into a resource (for POST and PUT bodies), adding the
    /// extension's URN to `schemas` when needed.
    pub(crate) fn set(&self, resource: &mut Value, value: Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        let container = match &self.urn {
            None => obj,
            Some(u) => {
                add_schema(obj, u);
                let key = key_ci(obj, u).unwrap_or_else(|| u.clone());
                let ext = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if !ext.is_object() {
                    *ext = Value::Object(Map::new());
                }
                match ext.as_object_mut() {
                    Some(e) => e,
                    None => return,
                }
            }
        };
        let attr_key = key_ci(container, &self.attr).unwrap_or_else(|| self.attr.clone());
        match (&self.filter, &self.sub) {
            (Some(f), sub) => {
                let sub = sub.as_deref().unwrap_or("value");
                let list = container
                    .entry(attr_key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                let Some(items) = list.as_array_mut() else {
                    return;
                };
                let found = items.iter_mut().find(|e| {
                    e.as_object()
                        .and_then(|o| get_ci(o, &f.attr))
                        .is_some_and(|v| f.value.matches(v))
                });
                match found.and_then(|e| e.as_object_mut()) {
                    Some(o) => {
                        let k = key_ci(o, sub).unwrap_or_else(|| sub.to_owned());
                        o.insert(k, value);
                    }
                    None => {
                        let mut o = Map::new();
                        o.insert(f.attr.clone(), f.value.json());
                        o.insert(sub.to_owned(), value);
                        items.push(Value::Object(o));
                    }
                }
            }
            (None, Some(sub)) => {
                let parent = container
                    .entry(attr_key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !parent.is_object() {
                    *parent = Value::Object(Map::new());
                }
                if let Some(p) = parent.as_object_mut() {
                    let k = key_ci(p, sub).unwrap_or_else(|| sub.clone());
                    p.insert(k, value);
                }
            }
            (None, None) => {
                container.insert(attr_key, value);
            }
        }
    }

    /// Removes the path's value from a resource (for PUT bodies): a
    /// filtered `value` removes the whole selected value.
    pub(crate) fn remove(&self, resource: &mut Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        let container = match &self.urn {
            None => Some(obj),
            Some(u) => key_ci(obj, u)
                .and_then(|k| obj.get_mut(&k))
                .and_then(Value::as_object_mut),
        };
        let Some(container) = container else {
            return;
        };
        let Some(attr_key) = key_ci(container, &self.attr) else {
            return;
        };
        match (&self.filter, &self.sub) {
            (Some(f), sub) => {
                let Some(items) = container.get_mut(&attr_key).and_then(Value::as_array_mut) else {
                    return;
                };
                let sel = |e: &Value| {
                    e.as_object()
                        .and_then(|o| get_ci(o, &f.attr))
                        .is_some_and(|v| f.value.matches(v))
                };
                match sub.as_deref() {
                    None | Some("value") => items.retain(|e| !sel(e)),
                    Some(sub) => {
                        for e in items.iter_mut().filter(|e| sel(e)) {
                            if let Some(o) = e.as_object_mut()
                                && let Some(k) = key_ci(o, sub)
                            {
                                o.remove(&k);
                            }
                        }
                    }
                }
            }
            (None, Some(sub)) => {
                if let Some(p) = container.get_mut(&attr_key).and_then(Value::as_object_mut)
                    && let Some(k) = key_ci(p, sub)
                {
                    p.remove(&k);
                }
            }
            (None, None) => {
                container.remove(&attr_key);
            }
        }
    }

    /// The PATCH operation that sets this path to `value`. `present` says
    /// whether the resource holds a value there now: a filtered path that
    /// selects nothing cannot be replaced (RFC 7644 §3.5.2.3 `noTarget`),
    /// so its value is added instead.
    pub(crate) fn patch_set(&self, value: Value, present: bool) -> Value {
        match (&self.filter, self.sub.as_deref()) {
            (Some(f), sub) if !present => {
                let mut o = Map::new();
                o.insert(f.attr.clone(), f.value.json());
                o.insert(sub.unwrap_or("value").to_owned(), value);
                serde_json::json!({
                    "op": "add",
                    "path": self.attr_path(),
                    "value": [Value::Object(o)],
                })
            }
            _ => serde_json::json!({"op": "replace", "path": self.to_string(), "value": value}),
        }
    }

    /// The PATCH operation that removes this path's value (a filtered
    /// `value` removes the whole selected value).
    pub(crate) fn patch_remove(&self) -> Value {
        let path = match (&self.filter, self.sub.as_deref()) {
            (Some(_), None | Some("value")) => self.value_path(),
            _ => self.to_string(),
        };
        serde_json::json!({"op": "remove", "path": path})
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value_path())?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

fn parse_filter(s: &str) -> Result<ValueFilter, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "value filter [{s}] is not supported: write [subAttribute eq \"text\"] or [subAttribute eq true]"
        )
    };
    let mut parts = s.splitn(3, ' ');
    let (Some(attr), Some(op), Some(lit)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if !is_name(attr) || !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let lit = lit.trim();
    let value = if lit.eq_ignore_ascii_case("true") {
        Literal::Bool(true)
    } else if lit.eq_ignore_ascii_case("false") {
        Literal::Bool(false)
    } else if lit.starts_with('"') {
        Literal::Str(serde_json::from_str::<String>(lit).map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    Ok(ValueFilter {
        attr: attr.to_owned(),
        value,
    })
}

/// A member of an object, its name compared without case.
pub(crate) fn get_ci<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn key_ci(obj: &Map<String, Value>, name: &str) -> Option<String> {
    if obj.contains_key(name) {
        return Some(name.to_owned());
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn add_schema(obj: &mut Map<String, Value>, urn: &str) {
    let schemas = obj
        .entry("schemas")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = schemas.as_array_mut()
        && !list
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
    {
        list.push(Value::String(urn.to_owned()));
    }
}

/// A JSON value as account attribute text; empty and null are absent.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            quote("x\" or userName pr or \"y"),
            r#""x\" or userName pr or \"y""#
        );
        assert_eq!(quote("é ü 名"), "\"é ü 名\"");
    }

    #[test]
    fn parses_the_mapping_forms() {
        let p = AttrPath::parse("displayName").unwrap();
        assert_eq!((p.attr.as_str(), p.sub.as_deref()), ("displayName", None));
        let p = AttrPath::parse("name.givenName").unwrap();
        assert_eq!(p.sub.as_deref(), Some("givenName"));
        let p = AttrPath::parse(&format!("{ENT}:department")).unwrap();
        assert_eq!(p.urn.as_deref(), Some(ENT));
        assert_eq!(p.attr, "department");
        assert_eq!(p.to_string(), format!("{ENT}:department"));
        let p = AttrPath::parse(&format!("{ENT}:manager.value")).unwrap();
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = AttrPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            p.filter,
            Some(ValueFilter {
                attr: "type".into(),
                value: Literal::Str("work".into())
            })
        );
        assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);
        let p = AttrPath::parse(r#"phoneNumbers[type eq "mobile"]"#).unwrap();
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = AttrPath::parse("emails[primary eq true].value").unwrap();
        assert_eq!(p.filter.unwrap().value, Literal::Bool(true));
    }

    #[test]
    fn refuses_what_cannot_be_mapped() {
        for bad in [
            "",
            "1abc",
            "emails[type co \"w\"].value",
            "emails[type eq work].value",
            "emails[type eq \"work\"",
            "name.",
            "name..x",
            "id",
            "active",
            "meta.created",
            "password",
            "groups",
            "urn:x",
        ] {
            assert!(AttrPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn get_set_remove_round_trip() {
        let paths = [
            "displayName",
            "name.givenName",
            r#"emails[type eq "work"].value"#,
            &format!("{ENT}:department"),
            &format!("{ENT}:manager.value"),
        ];
        let mut r =
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"});
        for (i, p) in paths.iter().enumerate() {
            let p = AttrPath::parse(p).unwrap();
            assert_eq!(p.get(&r), None);
            p.set(&mut r, Value::String(format!("v{i}")));
            assert_eq!(p.get(&r), Some(format!("v{i}")), "{p}");
        }
        assert!(r["schemas"].as_array().unwrap().contains(&json!(ENT)));
        // A second work e-mail is not added: the selected value is changed.
        let email = AttrPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        email.set(&mut r, json!("new@x"));
        assert_eq!(r["emails"].as_array().unwrap().len(), 1);
        for p in paths {
            let p = AttrPath::parse(p).unwrap();
            p.remove(&mut r);
            assert_eq!(p.get(&r), None, "{p}");
        }
        assert_eq!(r["emails"], json!([]));
    }

    #[test]
    fn reads_without_case_and_typed_values() {
        let r = json!({"DisplayName": "D", "Emails": [{"Type": "Work", "Value": "w@x"}, {"type": "home", "value": "h@x"}], "x": true, "n": 4, "e": ""});
        assert_eq!(
            AttrPath::parse("displayName").unwrap().get(&r),
            Some("D".into())
        );
        assert_eq!(
            AttrPath::parse(r#"emails[type eq "work"].value"#)
                .unwrap()
                .get(&r),
            Some("w@x".into())
        );
        assert_eq!(AttrPath::parse("x").unwrap().get(&r), Some("true".into()));
        assert_eq!(AttrPath::parse("n").unwrap().get(&r), Some("4".into()));
        assert_eq!(AttrPath::parse("e").unwrap().get(&r), None);
    }

    #[test]
    fn patch_operations() {
        let p = AttrPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            p.patch_set(json!("a@x"), true),
            json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@x"})
        );
        assert_eq!(
            p.patch_set(json!("a@x"), false),
            json!({"op": "add", "path": "emails", "value": [{"type": "work", "value": "a@x"}]})
        );
        assert_eq!(
            p.patch_remove(),
            json!({"op": "remove", "path": "emails[type eq \"work\"]"})
        );
        let p = AttrPath::parse("name.givenName").unwrap();
        assert_eq!(
            p.patch_remove(),
            json!({"op": "remove", "path": "name.givenName"})
        );
    }
}
