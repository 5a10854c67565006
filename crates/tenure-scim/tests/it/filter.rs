//! The filter parser on the RFC 7644 §3.4.2.2 examples, and its errors.

use tenure_scim::filter::{self, CompValue, CompareOp, Filter};

const RFC_EXAMPLES: &[&str] = &[
    r#"userName Eq "john""#,
    r#"Username eq "john""#,
    r#"userName eq "bjensen""#,
    r#"name.familyName co "O'Malley""#,
    r#"userName sw "J""#,
    r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
    r#"title pr"#,
    r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
    r#"title pr and userType eq "Employee""#,
    r#"title pr or userType eq "Intern""#,
    r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
    r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
    r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
    r#"userType eq "Employee" and (emails.type eq "work")"#,
    r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
    r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
    r#"active eq true"#,
    r#"x eq 12.5e3"#,
    r#"x eq null"#,
];

#[test]
fn every_rfc_example_parses() {
    for f in RFC_EXAMPLES {
        assert!(filter::parse(f).is_ok(), "{f}: {:?}", filter::parse(f));
    }
}

#[test]
fn precedence_is_not_then_and_then_or() -> Result<(), Box<dyn std::error::Error>> {
    let f = filter::parse(r#"a eq "1" or b eq "2" and not (c pr)"#)?;
    let Filter::Or(left, right) = f else {
        return Err(format!("expected or at the top: {f:?}").into());
    };
    assert!(matches!(
        *left,
        Filter::Compare(_, CompareOp::Eq, CompValue::String(_))
    ));
    assert!(matches!(*right, Filter::And(_, ref b) if matches!(**b, Filter::Not(_))));
    Ok(())
}

#[test]
fn errors_say_where() -> Result<(), Box<dyn std::error::Error>> {
    for (f, at) in [
        (r#"userName eq"#, "character 12"),
        (r#"userName xx "a""#, "character 10"),
        (r#"(userName eq "a""#, "character 17"),
        (r#"userName eq "a" and"#, "character 20"),
        (r#"emails[type eq "work""#, "character 22"),
        (r#"userName eq 'a'"#, "character 13"),
    ] {
        match filter::parse(f) {
            Ok(p) => return Err(format!("{f} parsed as {p:?}").into()),
            Err(e) => {
                assert_eq!(e.status, 400);
                assert!(e.detail.contains(at), "{f}: {}", e.detail);
            }
        }
    }
    Ok(())
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let f = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(filter::parse(&f).is_err());
}
