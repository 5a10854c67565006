//! Property tests: the fuzz targets of the two parsers of untrusted input
//! (filters and PATCH requests) and of the PATCH applier. They run with the
//! test suite (`cargo test -p tenure-scim`); raise `PROPTEST_CASES` to fuzz
//! longer.

use proptest::prelude::*;
use serde_json::{Value, json};
use tenure_scim::filter::{self, AttrPath, CompValue, CompareOp, Filter};
use tenure_scim::patch;
use tenure_scim::resource;
use tenure_scim::schema::ResourceKind;

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "pr", "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "true",
    "false", "null",
];

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,6}".prop_filter("not a keyword", |s| {
        !KEYWORDS.contains(&s.to_ascii_lowercase().as_str())
    })
}

fn path(sub: bool) -> impl Strategy<Value = AttrPath> {
    let uri = prop_oneof![
        Just(None),
        Just(Some(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()
        ))
    ];
    (uri, name(), proptest::option::of(name())).prop_map(move |(uri, name, s)| AttrPath {
        uri,
        name,
        sub: if sub { s } else { None },
    })
}

fn value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i32>().prop_map(|n| CompValue::Number(n.into())),
        ".{0,12}".prop_map(CompValue::String),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

fn simple(inner: bool) -> BoxedStrategy<Filter> {
    let p = if inner {
        path(false)
            .prop_map(|mut p| {
                p.uri = None;
                p
            })
            .boxed()
    } else {
        path(true).boxed()
    };
    prop_oneof![
        (p.clone(), op(), value()).prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
        p.prop_map(Filter::Present),
    ]
    .boxed()
}

fn tree(inner: bool) -> BoxedStrategy<Filter> {
    simple(inner)
        .prop_recursive(4, 24, 2, move |f| {
            prop_oneof![
                (f.clone(), f.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (f.clone(), f.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                f.prop_map(|a| Filter::Not(Box::new(a))),
            ]
        })
        .boxed()
}

fn full() -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => tree(false),
        1 => (path(false), tree(true)).prop_map(|(p, f)| Filter::ValuePath(p, Box::new(f))),
    ]
}

proptest! {
    /// Fuzz target: the filter parser never panics, whatever it is given.
    #[test]
    fn filter_parser_never_panics(s in "\\PC{0,80}") {
        let _ = filter::parse(&s);
        let _ = filter::parse_path(&s);
    }

    /// Fuzz target on the grammar's own alphabet (more inputs get deep).
    #[test]
    fn filter_parser_never_panics_on_grammar_soup(parts in proptest::collection::vec(prop_oneof![
        Just("("), Just(")"), Just("["), Just("]"), Just(" and "), Just(" or "), Just("not "), Just(" eq "),
        Just(" pr"), Just("\"x\""), Just("emails"), Just(".value"), Just("urn:a:b:c"), Just(":"), Just("12"),
        Just("true"), Just("\\"), Just("\""),
    ], 0..40)) {
        let s: String = parts.concat();
        let _ = filter::parse(&s);
        let _ = filter::parse_path(&s);
    }

    /// What is printed parses back to the same filter.
    #[test]
    fn filters_round_trip(f in full()) {
        let text = f.to_string();
        let back = filter::parse(&text);
        prop_assert_eq!(back.as_ref().ok(), Some(&f), "{}", text);
    }

    /// Fuzz target: the PATCH parser and applier never panic, and the
    /// applier's result is either a valid resource or a SCIM error.
    #[test]
    fn patch_never_panics(ops in proptest::collection::vec((
        prop_oneof![Just("add"), Just("Replace"), Just("remove"), Just("bogus")],
        proptest::option::of(prop_oneof![
            Just("userName".to_owned()), Just("name.givenName".to_owned()), Just("emails".to_owned()),
            Just("emails[type eq \"work\"].value".to_owned()), Just("emails[type eq \"work\" or primary eq true]".to_owned()),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value".to_owned()),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
            Just("active".to_owned()), Just("groups".to_owned()), Just("id".to_owned()), Just("addresses[type eq \"work\"].locality".to_owned()),
            "\\PC{0,30}",
        ]),
        json_value(),
    ), 1..6)) {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops.iter().map(|(o, p, v)| json!({"op": o, "path": p, "value": v})).collect::<Vec<_>>(),
        });
        let start = resource::normalize(ResourceKind::User, sample()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Ok(parsed) = patch::parse_request(&body)
            && let Ok(patched) = patch::apply(ResourceKind::User, &start, &parsed)
        {
            let _ = resource::normalize(ResourceKind::User, patched);
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i16>().prop_map(|n| json!(n)),
        ".{0,10}".prop_map(Value::String),
        Just(json!("False")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("value".to_owned()),
                    Just("type".to_owned()),
                    Just("primary".to_owned()),
                    Just("givenName".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn sample() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": "ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"type": "work", "value": "ada@example.com", "primary": true}, {"type": "home", "value": "ada@home.org"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "manager": {"value": "m1"}},
    })
}

#[test]
fn patch_semantics() -> Result<(), Box<dyn std::error::Error>> {
    let start = resource::normalize(ResourceKind::User, sample())?;
    let apply = |ops: Value| -> Result<Value, Box<dyn std::error::Error>> {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        let parsed = patch::parse_request(&body)?;
        Ok(resource::normalize(
            ResourceKind::User,
            patch::apply(ResourceKind::User, &start, &parsed)?,
        )?)
    };
    // Replace through a value filter changes only the matching value.
    let r = apply(
        json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@b.c"}]),
    )?;
    assert_eq!(
        r["emails"],
        json!([{"type": "work", "value": "a@b.c", "primary": true}, {"type": "home", "value": "ada@home.org"}])
    );
    // Remove through a value filter removes the matching value only.
    let r = apply(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]))?;
    assert_eq!(r["emails"].as_array().map(Vec::len), Some(1));
    // Add to a multi-valued attribute appends.
    let r = apply(
        json!([{"op": "add", "path": "emails", "value": [{"type": "other", "value": "x@y.z"}]}]),
    )?;
    assert_eq!(r["emails"].as_array().map(Vec::len), Some(3));
    // Add through a filter that matches nothing makes the value (Entra).
    let r = apply(
        json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+33 6"}]),
    )?;
    assert_eq!(
        r["phoneNumbers"],
        json!([{"type": "mobile", "value": "+33 6"}])
    );
    // A sub-attribute and an extension attribute.
    let r = apply(json!([
        {"op": "replace", "path": "name.givenName", "value": "Augusta"},
        {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}
    ]))?;
    assert_eq!(
        r["name"],
        json!({"givenName": "Augusta", "familyName": "Lovelace"})
    );
    assert_eq!(
        r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        json!({"manager": {"value": "m1"}})
    );
    // No path: a set of attributes (Okta).
    let r = apply(json!([{"op": "replace", "value": {"active": false, "displayName": "A"}}]))?;
    assert_eq!(
        (r["active"].clone(), r["displayName"].clone()),
        (json!(false), json!("A"))
    );
    // Read-only attributes cannot be patched; unknown ones are invalid paths.
    for (path, scim_type) in [
        ("id", "mutability"),
        ("groups", "mutability"),
        ("meta.created", "mutability"),
        ("shoeSize", "invalidPath"),
    ] {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": path, "value": "x"}]});
        let e = patch::apply(ResourceKind::User, &start, &patch::parse_request(&body)?)
            .err()
            .ok_or("accepted")?;
        assert_eq!(
            e.scim_type.map(|t| t.as_str()),
            Some(scim_type),
            "{path}: {e}"
        );
    }
    Ok(())
}
