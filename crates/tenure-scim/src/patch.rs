//! PATCH (RFC 7644 §3.5.2): parsing a PatchOp request and applying its
//! operations to one stored resource.
//!
//! `add`, `replace` and `remove`, with or without a path; paths name an
//! attribute, a sub-attribute, an extension attribute (its URN, `:`, the
//! attribute) or the values of a multi-valued attribute chosen by a value
//! filter, optionally followed by a sub-attribute
//! (`emails[type eq "work"].value`). Operation names are case-insensitive
//! because Microsoft Entra ID sends `"Replace"`. An `add` or `replace`
//! through a value filter that matches nothing adds a value made from the
//! filter's `eq` comparisons (what Entra expects when it sets a work e-mail
//! on a user that has none).
//!
//! The result is validated again as a whole ([`crate::resource::normalize`])
//! by the caller; this module refuses paths to unknown or read-only
//! attributes (`invalidPath`, `mutability`) and never half-applies: it works
//! on a copy.

use crate::error::{ScimError, ScimType};
use crate::filter::{self, CompValue, CompareOp, Filter, PatchPath};
use crate::resource::case_exact;
use crate::schema::{self, Mutability, Resolved, ResourceKind};
use serde_json::{Map, Value};

/// The PatchOp message schema URN.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// An operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `remove`.
    Remove,
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: OpKind,
    /// Where (none: the resource itself).
    pub path: Option<PatchPath>,
    /// The path as sent, for messages.
    pub path_text: Option<String>,
    /// The value (none for most removes).
    pub value: Option<Value>,
}

fn get_ci<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(k))
        .map(|(_, v)| v)
}

/// Parses a PATCH request body.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::syntax("the PATCH body must be a JSON object"));
    };
    let schemas_ok = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(ScimError::syntax(format!(
            "a PATCH body's `schemas` must be [{PATCH_SCHEMA:?}]"
        )));
    }
    let Some(Value::Array(ops)) = get_ci(obj, "Operations") else {
        return Err(ScimError::syntax("a PATCH body needs an `Operations` list"));
    };
    if ops.is_empty() {
        return Err(ScimError::syntax("`Operations` is empty"));
    }
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Value::Object(o) = op else {
            return Err(ScimError::syntax(format!(
                "Operations[{i}] is not an object"
            )));
        };
        let kind = match get_ci(o, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => OpKind::Add,
            Some("replace") => OpKind::Replace,
            Some("remove") => OpKind::Remove,
            other => {
                return Err(ScimError::syntax(format!(
                    "Operations[{i}].op must be add, replace or remove, not {other:?}"
                )));
            }
        };
        let path_text = match get_ci(o, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ScimError::path(format!(
                    "Operations[{i}].path must be a string"
                )));
            }
        };
        let path = path_text.as_deref().map(filter::parse_path).transpose()?;
        let value = get_ci(o, "value").cloned();
        if kind == OpKind::Remove && path.is_none() {
            return Err(ScimError::bad(
                ScimType::NoTarget,
                format!("Operations[{i}]: remove needs a path"),
            ));
        }
        if kind != OpKind::Remove && value.is_none() {
            return Err(ScimError::value(format!(
                "Operations[{i}]: {kind:?} needs a value"
            )));
        }
        out.push(PatchOp {
            op: kind,
            path,
            path_text,
            value,
        });
    }
    Ok(out)
}

/// Applies `ops` to `resource` (the stored form) and returns the result, not
/// yet validated as a whole.
pub fn apply(kind: ResourceKind, resource: &Value, ops: &[PatchOp]) -> Result<Value, ScimError> {
    let mut obj = match resource {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    for op in ops {
        apply_one(kind, &mut obj, op)?;
    }
    Ok(Value::Object(obj))
}

/// Where an attribute lives: the resource itself or an extension's object.
fn container<'m>(
    obj: &'m mut Map<String, Value>,
    r: &Resolved,
    create: bool,
) -> Option<&'m mut Map<String, Value>> {
    match r.extension() {
        None => Some(obj),
        Some(ext) => {
            if create && !obj.contains_key(ext) {
                obj.insert(ext.to_owned(), Value::Object(Map::new()));
            }
            match obj.get_mut(ext) {
                Some(Value::Object(e)) => Some(e),
                _ => None,
            }
        }
    }
}

fn add_values(slot: &mut Value, new: Value, multi: bool) {
    if multi {
        let new_items = match new {
            Value::Array(a) => a,
            one => vec![one],
        };
        let items = match slot {
            Value::Array(a) => a,
            other => {
                *other = Value::Array(Vec::new());
                match other {
                    Value::Array(a) => a,
                    _ => return,
                }
            }
        };
        for n in new_items {
            if !items.contains(&n) {
                items.push(n);
            }
        }
    } else {
        match (slot, new) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    a.insert(k, v);
                }
            }
            (slot, new) => *slot = new,
        }
    }
}

fn attr_value_op(
    kind: ResourceKind,
    obj: &mut Map<String, Value>,
    op: OpKind,
    r: &Resolved,
    value: Option<Value>,
) {
    let name = r.attr.name;
    let Some(c) = container(obj, r, op != OpKind::Remove) else {
        return;
    };
    match (op, r.sub) {
        (OpKind::Remove, None) => {
            c.remove(name);
        }
        (OpKind::Remove, Some(sub)) => match c.get_mut(name) {
            Some(Value::Object(o)) => {
                o.remove(sub.name);
            }
            Some(Value::Array(items)) => {
                for i in items {
                    if let Value::Object(o) = i {
                        o.remove(sub.name);
                    }
                }
            }
            _ => {}
        },
        (OpKind::Add, None) => {
            let slot = c.entry(name.to_owned()).or_insert(Value::Null);
            add_values(slot, value.unwrap_or(Value::Null), r.attr.multi_valued);
        }
        (OpKind::Replace, None) => {
            let v = value.unwrap_or(Value::Null);
            match (c.get_mut(name), v) {
                // Replacing a complex single value replaces the sub-attributes given.
                (Some(Value::Object(a)), Value::Object(b)) if !r.attr.multi_valued => {
                    for (k, v) in b {
                        a.insert(k, v);
                    }
                }
                (_, v) => {
                    c.insert(name.to_owned(), v);
                }
            }
        }
        (_, Some(sub)) => {
            let v = value.unwrap_or(Value::Null);
            let slot = c
                .entry(name.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Array(items) => {
                    for i in items {
                        if let Value::Object(o) = i {
                            o.insert(sub.name.to_owned(), v.clone());
                        }
                    }
                }
                Value::Object(o) => {
                    o.insert(sub.name.to_owned(), v);
                }
                other => {
                    *other = Value::Object([(sub.name.to_owned(), v)].into_iter().collect());
                }
            }
        }
    }
    let _ = kind;
}

/// The `sub eq value` comparisons of a filter made only of `and`ed `eq`s.
fn eq_parts(f: &Filter, out: &mut Map<String, Value>) -> bool {
    match f {
        Filter::Compare(p, CompareOp::Eq, v) if p.sub.is_none() && p.uri.is_none() => {
            if *v != CompValue::Null {
                out.insert(p.name.clone(), v.to_json());
            }
            true
        }
        Filter::And(a, b) => eq_parts(a, out) && eq_parts(b, out),
        _ => false,
    }
}

fn canonical_sub(r: &Resolved, name: &str) -> Result<&'static str, ScimError> {
    r.attr
        .sub(name)
        .map(|s| s.name)
        .ok_or_else(|| ScimError::path(format!("{} has no sub-attribute {name:?}", r.attr.name)))
}

fn apply_one(
    kind: ResourceKind,
    obj: &mut Map<String, Value>,
    op: &PatchOp,
) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        // No path: the value is a set of attributes (possibly extension objects).
        let Some(Value::Object(vals)) = op.value.clone() else {
            return Err(ScimError::value(
                "an operation without a path needs an object of attributes as its value",
            ));
        };
        for (k, v) in vals {
            if ["schemas", "id", "meta"]
                .iter()
                .any(|x| k.eq_ignore_ascii_case(x))
            {
                continue;
            }
            if let Some(ext) = kind
                .extensions()
                .iter()
                .find(|e| e.id.eq_ignore_ascii_case(&k))
            {
                let Value::Object(ev) = v else {
                    return Err(ScimError::value(format!("{} must be an object", ext.id)));
                };
                for (ek, evv) in ev {
                    if ek.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let r =
                        schema::resolve(kind, &format!("{}:{ek}", ext.id)).ok_or_else(|| {
                            ScimError::syntax(format!("unknown attribute {ek:?} in {}", ext.id))
                        })?;
                    check_mutable(&r, &format!("{}:{ek}", ext.id))?;
                    attr_value_op(kind, obj, op.op, &r, Some(evv));
                }
                continue;
            }
            let r = schema::resolve(kind, &k).ok_or_else(|| {
                ScimError::syntax(format!("unknown attribute {k:?} for a {}", kind.name()))
            })?;
            check_mutable(&r, &k)?;
            attr_value_op(kind, obj, op.op, &r, Some(v));
        }
        return Ok(());
    };
    let text = op.path_text.clone().unwrap_or_default();
    // A path that is an extension's URN alone: its attributes, as without a path.
    if path.filter.is_none()
        && let Some(ext) = kind
            .extensions()
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(&text))
    {
        if op.op == OpKind::Remove {
            obj.remove(ext.id);
            return Ok(());
        }
        let wrapped = PatchOp {
            op: op.op,
            path: None,
            path_text: None,
            value: Some(Value::Object(
                [(ext.id.to_owned(), op.value.clone().unwrap_or(Value::Null))]
                    .into_iter()
                    .collect(),
            )),
        };
        return apply_one(kind, obj, &wrapped);
    }
    let r = schema::resolve(kind, &path.attr.to_string()).ok_or_else(|| {
        ScimError::path(format!("{text:?} names no attribute of a {}", kind.name()))
    })?;
    check_mutable(&r, &text)?;
    let Some(vf) = &path.filter else {
        if path.sub.is_some() {
            return Err(ScimError::path(format!("invalid path {text:?}")));
        }
        attr_value_op(kind, obj, op.op, &r, op.value.clone());
        return Ok(());
    };
    if !r.attr.multi_valued || r.sub.is_some() {
        return Err(ScimError::path(format!(
            "{text:?}: a value filter needs a multi-valued attribute"
        )));
    }
    let sub = path
        .sub
        .as_deref()
        .map(|s| canonical_sub(&r, s))
        .transpose()?;
    if let Some(s) = sub.and_then(|s| r.attr.sub(s))
        && s.mutability == Mutability::ReadOnly
    {
        return Err(ScimError::mutability(format!("{text:?} is read-only")));
    }
    let parent = path.attr.clone();
    let exact = |p: &filter::AttrPath| {
        case_exact(
            kind,
            &filter::AttrPath {
                uri: parent.uri.clone(),
                name: parent.name.clone(),
                sub: Some(p.name.clone()),
            },
        )
    };
    let name = r.attr.name;
    let Some(c) = container(obj, &r, op.op != OpKind::Remove) else {
        return Ok(());
    };
    let items = match c.get_mut(name) {
        Some(Value::Array(a)) => std::mem::take(a),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(items.len() + 1);
    let mut matched = false;
    for mut item in items {
        if !filter::matches(vf, &item, &exact) {
            out.push(item);
            continue;
        }
        matched = true;
        match (op.op, sub) {
            (OpKind::Remove, None) => {}
            (OpKind::Remove, Some(s)) => {
                if let Value::Object(o) = &mut item {
                    o.remove(s);
                }
                out.push(item);
            }
            (_, Some(s)) => {
                if let Value::Object(o) = &mut item {
                    o.insert(s.to_owned(), op.value.clone().unwrap_or(Value::Null));
                }
                out.push(item);
            }
            (_, None) => {
                match (&mut item, op.value.clone()) {
                    (Value::Object(o), Some(Value::Object(v))) => {
                        for (k, x) in v {
                            o.insert(k, x);
                        }
                    }
                    (_, Some(v)) => item = v,
                    (_, None) => {}
                }
                out.push(item);
            }
        }
    }
    if !matched && op.op != OpKind::Remove {
        let mut fresh = Map::new();
        if !eq_parts(vf, &mut fresh) {
            return Err(ScimError::bad(
                ScimType::NoTarget,
                format!("{text:?} matches no value, and its filter does not say how to make one"),
            ));
        }
        let fresh: Map<String, Value> = fresh
            .into_iter()
            .map(|(k, v)| (r.attr.sub(&k).map_or(k, |s| s.name.to_owned()), v))
            .collect();
        let mut fresh = fresh;
        match (sub, op.value.clone()) {
            (Some(s), Some(v)) => {
                fresh.insert(s.to_owned(), v);
            }
            (None, Some(Value::Object(v))) => fresh.extend(v),
            _ => {}
        }
        out.push(Value::Object(fresh));
    }
    if out.is_empty() {
        c.remove(name);
    } else {
        c.insert(name.to_owned(), Value::Array(out));
    }
    Ok(())
}

fn check_mutable(r: &Resolved, text: &str) -> Result<(), ScimError> {
    let m = r.leaf().mutability;
    if m == Mutability::ReadOnly || r.attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "{text:?} is read-only and cannot be changed"
        )));
    }
    Ok(())
}
