//! Resources as JSON: validating what a client sends against the schemas,
//! and shaping what is returned (`returned`, `attributes`,
//! `excludedAttributes`).
//!
//! [`normalize`] turns a client's resource into the stored form: attribute
//! names in canonical case, values of the declared types, read-only
//! attributes dropped (RFC 7643 §2.2: the server ignores them), nulls and
//! empty values removed (RFC 7643 §2.5: unassigned). It refuses unknown
//! attributes, wrong types and missing required attributes. One leniency,
//! for Microsoft Entra ID: booleans written as the strings `"True"` and
//! `"False"` (any case) are read as booleans; any other string is refused.

use crate::error::ScimError;
use crate::schema::{self, AttrType, Attribute, Mutability, ResourceKind, Returned};
use serde_json::{Map, Value};

/// Reads `v` as a boolean, accepting Entra's `"True"` / `"False"`.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Checks and converts one value of `attr` (not a list). `Ok(None)`: drop it.
fn scalar(attr: &Attribute, v: Value, at: &str) -> Result<Option<Value>, ScimError> {
    if attr.mutability == Mutability::ReadOnly {
        return Ok(None);
    }
    let wrong = |what: &str| {
        ScimError::value(format!(
            "{at} must be {what} (the schema declares it {}), not {v}",
            attr.kind.as_str()
        ))
    };
    let out = match attr.kind {
        AttrType::String | AttrType::Reference | AttrType::Binary => match &v {
            Value::String(_) => v,
            _ => return Err(wrong("a string")),
        },
        AttrType::DateTime => match &v {
            Value::String(s)
                if chrono::DateTime::parse_from_rfc3339(s).is_ok()
                    || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() =>
            {
                v
            }
            _ => return Err(wrong("an RFC 3339 date and time")),
        },
        AttrType::Boolean => match as_bool(&v) {
            Some(b) => Value::Bool(b),
            None => return Err(wrong("true or false")),
        },
        AttrType::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v,
            _ => return Err(wrong("an integer")),
        },
        AttrType::Decimal => match &v {
            Value::Number(_) => v,
            _ => return Err(wrong("a number")),
        },
        AttrType::Complex => {
            let Value::Object(o) = v else {
                return Err(wrong("an object"));
            };
            let mut out = Map::new();
            for (k, sv) in o {
                let Some(sub) = attr.sub(&k) else {
                    return Err(ScimError::syntax(format!(
                        "{at} has no sub-attribute {k:?}"
                    )));
                };
                if is_empty(&sv) {
                    continue;
                }
                if let Some(sv) = scalar(sub, sv, &format!("{at}.{}", sub.name))? {
                    out.insert(sub.name.to_owned(), sv);
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
    };
    Ok(Some(out))
}

/// Checks and converts `attr`'s value (a list when multi-valued). `Ok(None)`: drop it.
pub fn attribute_value(attr: &Attribute, v: Value, at: &str) -> Result<Option<Value>, ScimError> {
    if is_empty(&v) || attr.mutability == Mutability::ReadOnly {
        return Ok(None);
    }
    if attr.multi_valued {
        let items = match v {
            Value::Array(a) => a,
            one => vec![one],
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if is_empty(&item) {
                continue;
            }
            if let Some(x) = scalar(attr, item, &format!("{at}[{i}]"))? {
                out.push(x);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Value::Array(out)));
    }
    if v.is_array() {
        return Err(ScimError::value(format!(
            "{at} is single-valued; a list was given"
        )));
    }
    scalar(attr, v, at)
}

/// Validates a resource sent by a client (POST, PUT) and returns its stored form.
pub fn normalize(kind: ResourceKind, body: Value) -> Result<Value, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::syntax("the request body must be a JSON object"));
    };
    let core = kind.core();
    let mut schemas: Vec<String> = Vec::new();
    match obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")) {
        Some((_, Value::Array(list))) => {
            for s in list {
                let Some(s) = s.as_str() else {
                    return Err(ScimError::syntax("`schemas` must be a list of URNs"));
                };
                if s.eq_ignore_ascii_case(core.id) {
                    schemas.push(core.id.to_owned());
                } else if let Some(ext) = kind
                    .extensions()
                    .iter()
                    .find(|e| e.id.eq_ignore_ascii_case(s))
                {
                    schemas.push(ext.id.to_owned());
                } else {
                    return Err(ScimError::syntax(format!(
                        "unknown schema {s:?} in `schemas` for a {}",
                        kind.name()
                    )));
                }
            }
        }
        _ => {
            return Err(ScimError::syntax(format!(
                "the resource has no `schemas` list; a {} needs {:?}",
                kind.name(),
                core.id
            )));
        }
    }
    if !schemas.iter().any(|s| s == core.id) {
        return Err(ScimError::syntax(format!(
            "`schemas` must hold {:?} for a {}",
            core.id,
            kind.name()
        )));
    }
    let mut out = Map::new();
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = kind
            .extensions()
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(&k))
        {
            let Value::Object(eo) = v else {
                if v.is_null() {
                    continue;
                }
                return Err(ScimError::syntax(format!("{} must be an object", ext.id)));
            };
            let mut eout = Map::new();
            for (ek, ev) in eo {
                // Some clients (scim2-models) repeat `schemas` inside an extension.
                if ek.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let Some(attr) = ext.attribute(&ek) else {
                    return Err(ScimError::syntax(format!(
                        "unknown attribute {ek:?} in {}",
                        ext.id
                    )));
                };
                if let Some(val) = attribute_value(attr, ev, &format!("{}:{}", ext.id, attr.name))?
                {
                    eout.insert(attr.name.to_owned(), val);
                }
            }
            if !eout.is_empty() {
                if !schemas.iter().any(|s| s == ext.id) {
                    schemas.push(ext.id.to_owned());
                }
                out.insert(ext.id.to_owned(), Value::Object(eout));
            }
            continue;
        }
        if k.eq_ignore_ascii_case("id") || k.eq_ignore_ascii_case("meta") {
            continue;
        }
        if k.eq_ignore_ascii_case("externalId") {
            match v {
                Value::String(s) if !s.is_empty() => {
                    out.insert("externalId".into(), Value::String(s));
                }
                Value::Null => {}
                Value::String(_) => {}
                other => {
                    return Err(ScimError::value(format!(
                        "externalId must be a string, not {other}"
                    )));
                }
            }
            continue;
        }
        let Some(attr) = core.attribute(&k) else {
            return Err(ScimError::syntax(format!(
                "unknown attribute {k:?} for a {} (see /Schemas/{})",
                kind.name(),
                core.id
            )));
        };
        if let Some(val) = attribute_value(attr, v, attr.name)? {
            out.insert(attr.name.to_owned(), val);
        }
    }
    // Extensions listed but without values are dropped from `schemas`.
    schemas.retain(|s| s == core.id || out.contains_key(s));
    check_required(kind, &out)?;
    out.insert(
        "schemas".into(),
        Value::Array(schemas.into_iter().map(Value::String).collect()),
    );
    Ok(Value::Object(out))
}

/// Refuses a resource without its required attributes.
pub fn check_required(kind: ResourceKind, obj: &Map<String, Value>) -> Result<(), ScimError> {
    for a in kind.core().attributes.iter().filter(|a| a.required) {
        match obj.get(a.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(v) if !v.is_string() && !is_empty(v) => {}
            _ => {
                return Err(ScimError::value(format!(
                    "{} is required for a {}",
                    a.name,
                    kind.name()
                )));
            }
        }
    }
    Ok(())
}

/// Which attributes a response carries (`attributes` / `excludedAttributes`).
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Only these (and those returned always).
    pub attributes: Vec<String>,
    /// Not these (unless returned always).
    pub excluded: Vec<String>,
}

impl Projection {
    /// Parses the comma-separated query parameters.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        let split = |s: Option<&str>| {
            s.map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        Self {
            attributes: split(attributes),
            excluded: split(excluded),
        }
    }
}

/// The top-level key of a resolved path (the attribute, or the extension URN).
fn top_key(r: &schema::Resolved) -> (&'static str, Option<&'static str>) {
    match r.extension() {
        Some(ext) => (ext, Some(r.attr.name)),
        None => (r.attr.name, None),
    }
}

/// Shapes a stored resource for a response: leaves out what is never
/// returned, and applies the projection.
pub fn project(kind: ResourceKind, resource: &Value, p: &Projection) -> Value {
    let Value::Object(obj) = resource else {
        return resource.clone();
    };
    let mut out = obj.clone();
    // returned = never (password), and `request` attributes unless asked for.
    for s in std::iter::once(kind.core()).chain(kind.extensions()) {
        for a in &s.attributes {
            let hidden = a.returned == Returned::Never
                || (a.returned == Returned::Request
                    && !p.attributes.iter().any(|x| x.eq_ignore_ascii_case(a.name)));
            if hidden {
                if s.id == kind.core().id {
                    out.remove(a.name);
                } else if let Some(Value::Object(e)) = out.get_mut(s.id) {
                    e.remove(a.name);
                }
            }
        }
    }
    if !p.attributes.is_empty() {
        let mut kept = Map::new();
        for key in ["schemas", "id"] {
            if let Some(v) = out.get(key) {
                kept.insert(key.to_owned(), v.clone());
            }
        }
        for path in &p.attributes {
            let Some(r) = schema::resolve(kind, path) else {
                continue;
            };
            let (top, inner) = top_key(&r);
            let Some(v) = out.get(top) else { continue };
            match (inner, r.sub) {
                (None, None) => {
                    kept.insert(top.to_owned(), v.clone());
                }
                (None, Some(sub)) => {
                    let picked = pick_sub(v, sub.name);
                    if let Some(picked) = picked {
                        merge(kept.entry(top.to_owned()).or_insert(Value::Null), picked);
                    }
                }
                (Some(attr), sub) => {
                    let Some(av) = v.get(attr) else { continue };
                    let piece = match sub {
                        None => Some(av.clone()),
                        Some(sub) => pick_sub(av, sub.name),
                    };
                    if let Some(piece) = piece {
                        let e = kept
                            .entry(top.to_owned())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(e) = e {
                            merge(e.entry(attr.to_owned()).or_insert(Value::Null), piece);
                        }
                    }
                }
            }
        }
        out = kept;
    }
    for path in &p.excluded {
        let Some(r) = schema::resolve(kind, path) else {
            continue;
        };
        if r.leaf().returned == Returned::Always {
            continue;
        }
        let (top, inner) = top_key(&r);
        match (inner, r.sub) {
            (None, None) => {
                out.remove(top);
            }
            (None, Some(sub)) => {
                if let Some(v) = out.get_mut(top) {
                    remove_sub(v, sub.name);
                }
            }
            (Some(attr), sub) => {
                if let Some(Value::Object(e)) = out.get_mut(top) {
                    match sub {
                        None => {
                            e.remove(attr);
                        }
                        Some(sub) => {
                            if let Some(v) = e.get_mut(attr) {
                                remove_sub(v, sub.name);
                            }
                        }
                    }
                }
            }
        }
    }
    Value::Object(out)
}

fn pick_sub(v: &Value, sub: &str) -> Option<Value> {
    match v {
        Value::Object(o) => o
            .get(sub)
            .map(|x| Value::Object([(sub.to_owned(), x.clone())].into_iter().collect())),
        Value::Array(items) => {
            let picked: Vec<Value> = items.iter().filter_map(|i| pick_sub(i, sub)).collect();
            (!picked.is_empty()).then_some(Value::Array(picked))
        }
        _ => None,
    }
}

fn merge(into: &mut Value, piece: Value) {
    match (into, piece) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                a.insert(k, v);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                merge(x, y);
            }
        }
        (slot, piece) => *slot = piece,
    }
}

fn remove_sub(v: &mut Value, sub: &str) {
    match v {
        Value::Object(o) => {
            o.remove(sub);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| remove_sub(i, sub)),
        _ => {}
    }
}

/// Whether a path's string values compare with case, from the schema (unknown: no).
pub fn case_exact(kind: ResourceKind, path: &crate::filter::AttrPath) -> bool {
    schema::resolve(kind, &path.to_string()).is_some_and(|r| r.leaf().case_exact)
}
