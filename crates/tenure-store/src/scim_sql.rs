//! SCIM filters and sort orders as SQL over the `scim_*` tables.
//!
//! A filter becomes a WHERE clause: indexed columns for `id`, `userName`,
//! `externalId`, `displayName`, `active` and `meta.created` /
//! `meta.lastModified`; EXISTS subqueries over `scim_user_values` for
//! multi-valued attributes (a value filter such as `emails[type eq "work"
//! and value co "@x"]` holds for one and the same value), over
//! `scim_group_members` for `groups` and `members`; JSON extraction
//! (`json_extract` on SQLite, `jsonb_extract_path_text` on PostgreSQL) for
//! the other attributes. Case-exactness is the schema's, per attribute.
//!
//! Every value — including JSON paths — is bound as a parameter; only fixed
//! SQL text and placeholders are formatted into the statement.

use crate::store::Dialect;
use tenure_scim::ScimError;
use tenure_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use tenure_scim::schema::{self, AttrType, ResourceKind};

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// A WHERE clause under construction.
pub(crate) struct Sql {
    pub dialect: Dialect,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            binds: Vec::new(),
        }
    }

    /// A placeholder for a new bound value.
    pub fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }
}

/// What a path is in SQL: an expression and how to compare it.
#[derive(Debug, Clone)]
enum Target {
    /// A text column or expression; `lower` holds an already lower-cased copy.
    Text { expr: String, exact: bool },
    /// A 0/1 integer column.
    Bool(String),
    /// A unix-microseconds column (meta.created, meta.lastModified).
    Micros(String),
}

fn json_expr(sql: &mut Sql, column: &str, keys: &[&str]) -> String {
    match sql.dialect {
        Dialect::Sqlite => {
            let path = keys
                .iter()
                .map(|k| format!(".\"{}\"", k.replace('"', "")))
                .collect::<String>();
            let p = sql.bind(Bind::Text(format!("${path}")));
            format!("json_extract({column}, {p})")
        }
        Dialect::Postgres => {
            let ps: Vec<String> = keys
                .iter()
                .map(|k| {
                    let p = sql.bind(Bind::Text((*k).to_owned()));
                    format!("{p}::text")
                })
                .collect();
            format!(
                "jsonb_extract_path_text(({column})::jsonb, {})",
                ps.join(", ")
            )
        }
    }
}

fn unsupported(p: &AttrPath, why: &str) -> ScimError {
    ScimError::filter(format!("{p}: {why}"))
}

/// The SQL for a single-valued path on the main table (alias `r`).
fn target(sql: &mut Sql, kind: ResourceKind, p: &AttrPath) -> Result<Target, ScimError> {
    let r =
        schema::resolve(kind, &p.to_string()).ok_or_else(|| unsupported(p, "no such attribute"))?;
    let leaf = r.leaf();
    let name = r.attr.name;
    let col = |c: &str| c.to_owned();
    Ok(
        match (kind, r.schema.is_none(), name, r.sub.map(|s| s.name)) {
            (_, true, "id", None) => Target::Text {
                expr: col("r.id"),
                exact: true,
            },
            (_, true, "externalId", None) => Target::Text {
                expr: col("r.external_id"),
                exact: true,
            },
            (_, true, "meta", Some("created")) => Target::Micros(col("r.created")),
            (_, true, "meta", Some("lastModified")) => Target::Micros(col("r.modified")),
            (_, true, "meta", Some("resourceType")) => {
                let p = sql.bind(Bind::Text(kind.name().to_owned()));
                Target::Text {
                    expr: p,
                    exact: true,
                }
            }
            (_, true, "meta", _) => {
                return Err(unsupported(p, "this meta attribute cannot be filtered on"));
            }
            (ResourceKind::User, false, "userName", None) => Target::Text {
                expr: col("r.user_name_lower"),
                exact: false,
            },
            (ResourceKind::User, false, "displayName", None) => Target::Text {
                expr: col("r.display_name"),
                exact: false,
            },
            (ResourceKind::User, false, "active", None) => Target::Bool(col("r.active")),
            (ResourceKind::Group, false, "displayName", None) => Target::Text {
                expr: col("r.display_name_lower"),
                exact: false,
            },
            _ => {
                if r.attr.multi_valued {
                    return Err(unsupported(p, "multi-valued (internal: not a column)"));
                }
                let mut keys: Vec<&str> = Vec::new();
                if let Some(ext) = r.extension() {
                    keys.push(ext);
                }
                keys.push(name);
                if let Some(s) = r.sub {
                    keys.push(s.name);
                }
                if r.sub.is_none() && leaf.kind == AttrType::Complex {
                    return Err(unsupported(
                        p,
                        "a complex attribute is compared through its sub-attributes",
                    ));
                }
                let e = json_expr(sql, "r.resource", &keys);
                match leaf.kind {
                    AttrType::Boolean => match sql.dialect {
                        Dialect::Sqlite => Target::Bool(e),
                        Dialect::Postgres => Target::Bool(format!(
                            "(CASE {e} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
                        )),
                    },
                    _ => Target::Text {
                        expr: e,
                        exact: leaf.case_exact,
                    },
                }
            }
        },
    )
}

fn like_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == '_' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn compare_text(sql: &mut Sql, expr: &str, exact: bool, op: CompareOp, v: &str) -> String {
    // Columns named `*_lower` hold a copy lower-cased in Rust (Unicode); other
    // expressions are lower-cased by the database on both sides, so that the
    // two sides always fold alike (SQLite's lower() folds ASCII only).
    let prelowered = expr.ends_with("_lower");
    let (e, v, wrap) = if exact {
        (expr.to_owned(), v.to_owned(), false)
    } else if prelowered {
        (expr.to_owned(), v.to_lowercase(), false)
    } else {
        (format!("lower({expr})"), v.to_owned(), true)
    };
    let fold = |p: String| if wrap { format!("lower({p})") } else { p };
    let sym = match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "<>",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            if exact {
                let a = sql.bind(Bind::Text(v.clone()));
                return match op {
                    CompareOp::Co => match sql.dialect {
                        Dialect::Sqlite => format!("instr({e}, {a}) > 0"),
                        Dialect::Postgres => format!("strpos({e}, {a}) > 0"),
                    },
                    CompareOp::Sw => {
                        let b = sql.bind(Bind::Text(v));
                        format!("substr({e}, 1, length({a})) = {b}")
                    }
                    _ => {
                        let b = sql.bind(Bind::Text(v));
                        format!(
                            "(length({e}) >= length({a}) AND substr({e}, length({e}) - length({a}) + 1) = {b})"
                        )
                    }
                };
            }
            let pat = match op {
                CompareOp::Co => format!("%{}%", like_escape(&v)),
                CompareOp::Sw => format!("{}%", like_escape(&v)),
                _ => format!("%{}", like_escape(&v)),
            };
            let a = fold(sql.bind(Bind::Text(pat)));
            return format!("{e} LIKE {a} ESCAPE '\\'");
        }
    };
    let a = fold(sql.bind(Bind::Text(v)));
    if op == CompareOp::Ne {
        format!("({e} IS NULL OR {e} {sym} {a})")
    } else {
        format!("{e} {sym} {a}")
    }
}

fn compare(
    sql: &mut Sql,
    t: &Target,
    op: CompareOp,
    v: &CompValue,
    p: &AttrPath,
) -> Result<String, ScimError> {
    let expr = match t {
        Target::Text { expr, .. } | Target::Bool(expr) | Target::Micros(expr) => expr.clone(),
    };
    match (v, op) {
        (CompValue::Null, CompareOp::Eq) => return Ok(format!("{expr} IS NULL")),
        (CompValue::Null, CompareOp::Ne) => return Ok(format!("{expr} IS NOT NULL")),
        (CompValue::Null, _) => {
            return Err(unsupported(p, "null can only be compared with eq or ne"));
        }
        _ => {}
    }
    match (t, v) {
        (Target::Text { expr, exact }, CompValue::String(s)) => {
            Ok(compare_text(sql, expr, *exact, op, s))
        }
        (Target::Text { expr, exact }, CompValue::Number(n)) => {
            Ok(compare_text(sql, expr, *exact, op, &n.to_string()))
        }
        (Target::Bool(expr), CompValue::Bool(b)) => {
            let a = sql.bind(Bind::Int(i64::from(*b)));
            match op {
                CompareOp::Eq => Ok(format!("{expr} = {a}")),
                CompareOp::Ne => Ok(format!("({expr} IS NULL OR {expr} <> {a})")),
                _ => Err(unsupported(p, "booleans compare only with eq and ne")),
            }
        }
        (Target::Micros(expr), CompValue::String(s)) => {
            let at = chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| unsupported(p, "the value must be an RFC 3339 date and time"))?;
            let a = sql.bind(Bind::Int(at.with_timezone(&chrono::Utc).timestamp_micros()));
            let sym = match op {
                CompareOp::Eq => "=",
                CompareOp::Ne => "<>",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                _ => return Err(unsupported(p, "dates compare with eq ne gt ge lt le")),
            };
            Ok(format!("{expr} {sym} {a}"))
        }
        _ => Err(unsupported(
            p,
            "the value's type does not match the attribute's",
        )),
    }
}

fn present(t: &Target) -> String {
    match t {
        Target::Text { expr, .. } => format!("({expr} IS NOT NULL AND {expr} <> '')"),
        Target::Bool(e) | Target::Micros(e) => format!("{e} IS NOT NULL"),
    }
}

/// A condition on one row of a value table (alias `v`), for a sub-attribute.
fn value_target(
    sql: &mut Sql,
    kind: ResourceKind,
    parent: &AttrPath,
    sub: &str,
) -> Result<Target, ScimError> {
    let full = AttrPath {
        uri: parent.uri.clone(),
        name: parent.name.clone(),
        sub: Some(sub.to_owned()),
    };
    let r = schema::resolve(kind, &full.to_string())
        .ok_or_else(|| unsupported(&full, "no such sub-attribute"))?;
    let leaf = r.leaf();
    let is_members = (kind == ResourceKind::Group && r.attr.name == "members")
        || (kind == ResourceKind::User && r.attr.name == "groups");
    if is_members {
        return Ok(match (kind, leaf.name) {
            (ResourceKind::Group, "value") => Target::Text {
                expr: "v.member_id".into(),
                exact: true,
            },
            (ResourceKind::Group, "type") => Target::Text {
                expr: "v.member_type".into(),
                exact: false,
            },
            (ResourceKind::User, "value") => Target::Text {
                expr: "v.group_id".into(),
                exact: true,
            },
            (ResourceKind::User, "display") => Target::Text {
                expr: "(SELECT g.display_name FROM scim_groups g WHERE g.id = v.group_id)".into(),
                exact: false,
            },
            (ResourceKind::User, "type") => {
                let p = sql.bind(Bind::Text("direct".into()));
                Target::Text {
                    expr: p,
                    exact: false,
                }
            }
            _ => return Err(unsupported(&full, "cannot be filtered on")),
        });
    }
    Ok(match leaf.name {
        "value" if leaf.case_exact => Target::Text {
            expr: "v.value".into(),
            exact: true,
        },
        "value" => Target::Text {
            expr: "v.value_lower".into(),
            exact: false,
        },
        "type" => Target::Text {
            expr: "v.type_lower".into(),
            exact: false,
        },
        "display" => Target::Text {
            expr: "v.display".into(),
            exact: leaf.case_exact,
        },
        "primary" => Target::Bool("v.primary_value".into()),
        other => {
            let e = json_expr(sql, "v.item", &[other]);
            if leaf.kind == AttrType::Boolean {
                match sql.dialect {
                    Dialect::Sqlite => Target::Bool(e),
                    Dialect::Postgres => Target::Bool(format!(
                        "(CASE {e} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
                    )),
                }
            } else {
                Target::Text {
                    expr: e,
                    exact: leaf.case_exact,
                }
            }
        }
    })
}

/// `EXISTS (SELECT 1 FROM <values of parent> v WHERE … AND cond)`.
fn exists(
    sql: &mut Sql,
    kind: ResourceKind,
    parent: &AttrPath,
    cond: &str,
) -> Result<String, ScimError> {
    let r = schema::resolve(kind, &parent.attr_text())
        .ok_or_else(|| unsupported(parent, "no such attribute"))?;
    Ok(match (kind, r.attr.name) {
        (ResourceKind::Group, "members") => {
            format!(
                "EXISTS (SELECT 1 FROM scim_group_members v WHERE v.group_id = r.id AND {cond})"
            )
        }
        (ResourceKind::User, "groups") => {
            format!(
                "EXISTS (SELECT 1 FROM scim_group_members v WHERE v.member_id = r.id AND {cond})"
            )
        }
        (ResourceKind::User, name) if r.attr.multi_valued => {
            let a = sql.bind(Bind::Text(name.to_owned()));
            format!(
                "EXISTS (SELECT 1 FROM scim_user_values v WHERE v.user_id = r.id AND v.attr = {a} AND {cond})"
            )
        }
        _ => return Err(unsupported(parent, "is not multi-valued")),
    })
}

fn is_multi(kind: ResourceKind, p: &AttrPath) -> bool {
    schema::resolve(kind, &p.attr_text()).is_some_and(|r| r.attr.multi_valued)
}

/// A condition inside a value filter: paths are sub-attributes of `parent`.
fn sub_where(
    sql: &mut Sql,
    kind: ResourceKind,
    parent: &AttrPath,
    f: &Filter,
) -> Result<String, ScimError> {
    Ok(match f {
        Filter::Compare(p, op, v) => {
            let t = value_target(sql, kind, parent, &p.name)?;
            compare(sql, &t, *op, v, p)?
        }
        Filter::Present(p) => {
            let t = value_target(sql, kind, parent, &p.name)?;
            present(&t)
        }
        Filter::And(a, b) => format!(
            "({} AND {})",
            sub_where(sql, kind, parent, a)?,
            sub_where(sql, kind, parent, b)?
        ),
        Filter::Or(a, b) => format!(
            "({} OR {})",
            sub_where(sql, kind, parent, a)?,
            sub_where(sql, kind, parent, b)?
        ),
        Filter::Not(a) => format!("NOT ({})", sub_where(sql, kind, parent, a)?),
        Filter::ValuePath(p, _) => return Err(unsupported(p, "value filters do not nest")),
    })
}

/// The WHERE condition for a filter on the main table (alias `r`).
pub(crate) fn where_clause(
    sql: &mut Sql,
    kind: ResourceKind,
    f: &Filter,
) -> Result<String, ScimError> {
    Ok(match f {
        Filter::Compare(p, op, v) if is_multi(kind, p) => {
            let sub = p.sub.clone().unwrap_or_else(|| "value".into());
            let t = value_target(sql, kind, p, &sub)?;
            let cond = compare(sql, &t, *op, v, p)?;
            exists(sql, kind, p, &cond)?
        }
        Filter::Present(p) if is_multi(kind, p) => {
            let cond = match &p.sub {
                Some(s) => present(&value_target(sql, kind, p, s)?),
                None => "1 = 1".into(),
            };
            exists(sql, kind, p, &cond)?
        }
        Filter::Compare(p, op, v) => {
            let t = target(sql, kind, p)?;
            compare(sql, &t, *op, v, p)?
        }
        Filter::Present(p) => {
            let r = schema::resolve(kind, &p.to_string())
                .ok_or_else(|| unsupported(p, "no such attribute"))?;
            if r.sub.is_none() && r.attr.kind == AttrType::Complex {
                let mut keys: Vec<&str> = Vec::new();
                if let Some(ext) = r.extension() {
                    keys.push(ext);
                }
                keys.push(r.attr.name);
                let e = json_expr(sql, "r.resource", &keys);
                format!("{e} IS NOT NULL")
            } else {
                present(&target(sql, kind, p)?)
            }
        }
        Filter::And(a, b) => format!(
            "({} AND {})",
            where_clause(sql, kind, a)?,
            where_clause(sql, kind, b)?
        ),
        Filter::Or(a, b) => format!(
            "({} OR {})",
            where_clause(sql, kind, a)?,
            where_clause(sql, kind, b)?
        ),
        Filter::Not(a) => format!("NOT ({})", where_clause(sql, kind, a)?),
        Filter::ValuePath(p, inner) => {
            let cond = sub_where(sql, kind, p, inner)?;
            exists(sql, kind, p, &cond)?
        }
    })
}

/// The ORDER BY expression for `sortBy` (single-valued attributes; a
/// multi-valued one sorts by its primary, else first, value).
pub(crate) fn order_expr(
    sql: &mut Sql,
    kind: ResourceKind,
    sort_by: &str,
) -> Result<String, ScimError> {
    let p = tenure_scim::filter::parse_path(sort_by)
        .map_err(|e| ScimError::value(format!("sortBy: {}", e.detail)))?;
    if p.filter.is_some() {
        return Err(ScimError::value("sortBy cannot hold a value filter"));
    }
    let path = p.attr;
    if is_multi(kind, &path) {
        if kind != ResourceKind::User || path.name.eq_ignore_ascii_case("groups") {
            return Err(ScimError::value(format!("cannot sort by {path}")));
        }
        let sub = path.sub.clone().unwrap_or_else(|| "value".into());
        let t = value_target(sql, kind, &path, &sub)?;
        let e = match t {
            Target::Text { expr, .. } | Target::Bool(expr) | Target::Micros(expr) => expr,
        };
        let r = schema::resolve(kind, &path.attr_text())
            .map(|r| r.attr.name)
            .unwrap_or("");
        let a = sql.bind(Bind::Text(r.to_owned()));
        return Ok(format!(
            "(SELECT {e} FROM scim_user_values v WHERE v.user_id = r.id AND v.attr = {a} ORDER BY v.primary_value DESC, v.pos LIMIT 1)"
        ));
    }
    let t =
        target(sql, kind, &path).map_err(|e| ScimError::value(format!("sortBy: {}", e.detail)))?;
    Ok(match t {
        Target::Text { expr, exact: false } => format!("lower({expr})"),
        Target::Text { expr, .. } | Target::Bool(expr) | Target::Micros(expr) => expr,
    })
}
