//! What a service says about itself (RFC 7644 §4): `/ServiceProviderConfig`
//! (PATCH, filter, ETag, bulk, RFC 9865 cursor pagination), `/ResourceTypes`
//! (the endpoints of User and Group and the User's schema extensions) and
//! `/Schemas` (each attribute's type and mutability).
//!
//! Parsing only: the connector fetches the documents once, on `check` or on
//! first use. A service that does not publish `/ResourceTypes` or `/Schemas`
//! gets the RFC's defaults (`/Users`, `/Groups`, every value a string); one
//! without `/ServiceProviderConfig` is assumed to support PATCH and filters,
//! which every service that matters does.

use super::path::{AttrPath, get_ci};
use serde_json::Value;
use std::collections::HashMap;

/// The core User schema.
pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The type of an attribute (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrType {
    String,
    Boolean,
    Integer,
    Decimal,
    Complex,
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct AttrInfo {
    pub(crate) ty: AttrType,
    pub(crate) read_only: bool,
    pub(crate) subs: HashMap<String, AttrInfo>,
}

/// What the service supports.
#[derive(Debug, Clone)]
pub(crate) struct Discovered {
    pub(crate) patch: bool,
    pub(crate) filter: bool,
    pub(crate) etag: bool,
    pub(crate) cursor: bool,
    pub(crate) max_page_size: Option<u32>,
    pub(crate) users: String,
    pub(crate) groups: String,
    /// The User's schema extensions (lower case), when `/ResourceTypes` said.
    pub(crate) extensions: Option<Vec<String>>,
    /// Schema URN (lower case) → attribute name (lower case) → what it is.
    pub(crate) schemas: HashMap<String, HashMap<String, AttrInfo>>,
}

impl Default for Discovered {
    fn default() -> Self {
        Discovered {
            patch: true,
            filter: true,
            etag: false,
            cursor: false,
            max_page_size: None,
            users: "/Users".to_owned(),
            groups: "/Groups".to_owned(),
            extensions: None,
            schemas: HashMap::new(),
        }
    }
}

fn supported(spc: &Value, feature: &str) -> Option<bool> {
    let o = spc.as_object()?;
    let f = get_ci(o, feature)?.as_object()?;
    match get_ci(f, "supported")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    }
}

impl Discovered {
    /// Reads `/ServiceProviderConfig`.
    pub(crate) fn apply_config(&mut self, spc: &Value) {
        self.patch = supported(spc, "patch").unwrap_or(true);
        self.filter = supported(spc, "filter").unwrap_or(true);
        self.etag = supported(spc, "etag").unwrap_or(false);
        let pagination = spc
            .as_object()
            .and_then(|o| get_ci(o, "pagination"))
            .and_then(Value::as_object);
        if let Some(p) = pagination {
            self.cursor = get_ci(p, "cursor")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            self.max_page_size = get_ci(p, "maxPageSize")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0);
        }
    }

    /// Reads `/ResourceTypes` (a ListResponse, or a bare array as some services send).
    pub(crate) fn apply_resource_types(&mut self, doc: &Value) {
        let list = doc
            .as_object()
            .and_then(|o| get_ci(o, "Resources"))
            .or(Some(doc))
            .and_then(Value::as_array);
        for rt in list.into_iter().flatten() {
            let Some(o) = rt.as_object() else { continue };
            let name = get_ci(o, "name").and_then(Value::as_str).unwrap_or("");
            let endpoint = get_ci(o, "endpoint").and_then(Value::as_str);
            let schema = get_ci(o, "schema").and_then(Value::as_str).unwrap_or("");
            let is_user =
                name.eq_ignore_ascii_case("User") || schema.eq_ignore_ascii_case(USER_SCHEMA);
            let is_group = name.eq_ignore_ascii_case("Group")
                || schema.eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:Group");
            if let Some(ep) = endpoint.filter(|e| !e.trim().is_empty()) {
                if is_user {
                    self.users = ep.to_owned();
                } else if is_group {
                    self.groups = ep.to_owned();
                }
            }
            if is_user {
                let ext = get_ci(o, "schemaExtensions")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| {
                                e.as_object()
                                    .and_then(|e| get_ci(e, "schema"))
                                    .and_then(Value::as_str)
                            })
                            .map(str::to_ascii_lowercase)
                            .collect()
                    })
                    .unwrap_or_default();
                self.extensions = Some(ext);
            }
        }
    }

    /// Reads `/Schemas`.
    pub(crate) fn apply_schemas(&mut self, doc: &Value) {
        let list = doc
            .as_object()
            .and_then(|o| get_ci(o, "Resources"))
            .or(Some(doc))
            .and_then(Value::as_array);
        for s in list.into_iter().flatten() {
            let Some(o) = s.as_object() else { continue };
            let Some(id) = get_ci(o, "id").and_then(Value::as_str) else {
                continue;
            };
            let attrs = get_ci(o, "attributes")
                .and_then(Value::as_array)
                .map(|a| attr_map(a))
                .unwrap_or_default();
            self.schemas.insert(id.to_ascii_lowercase(), attrs);
        }
    }

    /// What the schema says about a path's attribute, when known.
    pub(crate) fn info(&self, path: &AttrPath) -> Option<&AttrInfo> {
        let schema = path
            .urn
            .as_deref()
            .unwrap_or(USER_SCHEMA)
            .to_ascii_lowercase();
        let attr = self
            .schemas
            .get(&schema)?
            .get(&path.attr.to_ascii_lowercase())?;
        match &path.sub {
            Some(sub) => attr.subs.get(&sub.to_ascii_lowercase()),
            None => Some(attr),
        }
    }

    /// An account attribute's text as the JSON value the schema's type asks
    /// for (strings when unknown, or when the text is not of that type: the
    /// service then says what is wrong).
    pub(crate) fn typed(&self, path: &AttrPath, text: &str) -> Value {
        match self.info(path).map(|i| i.ty) {
            Some(AttrType::Boolean) => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text.to_owned()),
            },
            Some(AttrType::Integer) => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.to_owned())),
            Some(AttrType::Decimal) => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.to_owned())),
            _ => Value::String(text.to_owned()),
        }
    }

    /// Problems of the attribute mapping against `/ResourceTypes` and
    /// `/Schemas` (nothing is said about what the service did not publish).
    pub(crate) fn mapping_problems<'a>(
        &self,
        mapping: impl Iterator<Item = (&'a String, &'a AttrPath)>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, path) in mapping {
            let schema = path
                .urn
                .as_deref()
                .unwrap_or(USER_SCHEMA)
                .to_ascii_lowercase();
            if let (Some(urn), Some(ext)) = (&path.urn, &self.extensions)
                && !ext.contains(&urn.to_ascii_lowercase())
            {
                problems.push(format!(
                    "settings.attributes.{name}: the service's User resource type has no schema extension {urn}"
                ));
                continue;
            }
            let Some(attrs) = self.schemas.get(&schema) else {
                continue;
            };
            let Some(attr) = attrs.get(&path.attr.to_ascii_lowercase()) else {
                problems.push(format!(
                    "settings.attributes.{name}: the service's schema {schema} has no attribute {:?}",
                    path.attr
                ));
                continue;
            };
            let target = match &path.sub {
                Some(sub) => match attr.subs.get(&sub.to_ascii_lowercase()) {
                    Some(s) => s,
                    None if attr.subs.is_empty() => continue,
                    None => {
                        problems.push(format!(
                            "settings.attributes.{name}: attribute {:?} of the service has no sub-attribute {sub:?}",
                            path.attr
                        ));
                        continue;
                    }
                },
                None => attr,
            };
            if target.read_only || attr.read_only {
                problems.push(format!(
                    "settings.attributes.{name}: {path} is read-only on the service"
                ));
            }
            if target.ty == AttrType::Complex {
                problems.push(format!(
                    "settings.attributes.{name}: {path} is a complex attribute; map one of its sub-attributes ({}.…)",
                    path
                ));
            }
        }
        problems
    }
}

fn attr_map(list: &[Value]) -> HashMap<String, AttrInfo> {
    let mut out = HashMap::new();
    for a in list {
        let Some(o) = a.as_object() else { continue };
        let Some(name) = get_ci(o, "name").and_then(Value::as_str) else {
            continue;
        };
        let ty = match get_ci(o, "type")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("string") | Some("reference") | Some("binary") | Some("datetime") => {
                AttrType::String
            }
            Some("boolean") => AttrType::Boolean,
            Some("integer") => AttrType::Integer,
            Some("decimal") => AttrType::Decimal,
            Some("complex") => AttrType::Complex,
            _ => AttrType::Other,
        };
        let read_only = get_ci(o, "mutability")
            .and_then(Value::as_str)
            .is_some_and(|m| m.eq_ignore_ascii_case("readOnly"));
        let subs = get_ci(o, "subAttributes")
            .and_then(Value::as_array)
            .map(|s| attr_map(s))
            .unwrap_or_default();
        out.insert(
            name.to_ascii_lowercase(),
            AttrInfo {
                ty,
                read_only,
                subs,
            },
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_service_provider_config() {
        let mut d = Discovered::default();
        d.apply_config(&json!({
            "patch": {"supported": false}, "filter": {"supported": true, "maxResults": 200},
            "etag": {"supported": true}, "bulk": {"supported": true},
            "pagination": {"cursor": true, "index": true, "maxPageSize": 50}
        }));
        assert!(!d.patch && d.filter && d.etag && d.cursor);
        assert_eq!(d.max_page_size, Some(50));
        let mut d = Discovered::default();
        d.apply_config(&json!({}));
        assert!(d.patch && d.filter && !d.cursor);
    }

    #[test]
    fn checks_the_mapping_against_schemas() {
        let mut d = Discovered::default();
        d.apply_resource_types(&json!({"Resources": [
            {"name": "User", "endpoint": "/people", "schema": USER_SCHEMA, "schemaExtensions": []},
            {"name": "Group", "endpoint": "/teams", "schema": "urn:ietf:params:scim:schemas:core:2.0:Group"}
        ]}));
        assert_eq!((d.users.as_str(), d.groups.as_str()), ("/people", "/teams"));
        d.apply_schemas(&json!([{ "id": USER_SCHEMA, "attributes": [
            {"name": "displayName", "type": "string"},
            {"name": "id", "type": "string", "mutability": "readOnly"},
            {"name": "score", "type": "integer"},
            {"name": "name", "type": "complex", "subAttributes": [{"name": "givenName", "type": "string"}]}
        ]}]));
        let mapping: Vec<(String, AttrPath)> = [
            ("a", "displayName"),
            ("b", "nickName"),
            ("c", "name.middle"),
            (
                "d",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            ),
            ("e", "name"),
        ]
        .iter()
        .map(|(n, p)| (n.to_string(), AttrPath::parse(p).unwrap()))
        .collect();
        let problems = d.mapping_problems(mapping.iter().map(|(n, p)| (n, p)));
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("nickName"));
        assert!(problems[1].contains("middle"));
        assert!(problems[2].contains("enterprise"));
        assert!(problems[3].contains("complex"));
        let score = AttrPath::parse("score").unwrap();
        assert_eq!(d.typed(&score, "42"), json!(42));
        assert_eq!(d.typed(&score, "x"), json!("x"));
    }
}
