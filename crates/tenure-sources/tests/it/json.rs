use super::*;
use tenure_core::EmploymentType;
use tenure_sources::Field;

fn json(text: &str) -> Result<Vec<IdentityRecord>, SourceError> {
    tenure_sources::parse(&source(SourceFormat::Json), "hr.json", text.as_bytes())
}

fn jsonl(text: &str) -> Result<Vec<IdentityRecord>, SourceError> {
    tenure_sources::parse(&source(SourceFormat::Jsonl), "hr.jsonl", text.as_bytes())
}

#[test]
fn array_of_objects() {
    let recs = json(
        r#"[
  {"id": "E1", "type": "FT", "manager": null, "start": "2026-01-05", "name": " Ada ", "dept": 42, "extra": [1, {"x": 2}]},
  {"id": 1002, "type": "contractor", "manager": "E1", "end": "2026-12-31", "name": true, "dept": 1.5},
  {"id": "E3", "name": false}
]"#,
    )
    .unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].id.as_str(), "E1");
    assert_eq!(recs[0].attribute("name"), "Ada");
    assert_eq!(recs[0].attribute("dept"), "42", "numbers are stringified");
    assert_eq!(recs[0].manager, None, "null is empty");
    assert_eq!(recs[0].start_date, Some(d("2026-01-05")));
    assert_eq!(recs[1].id.as_str(), "1002");
    assert_eq!(recs[1].employment_type, EmploymentType::Contractor);
    assert_eq!(
        recs[1].attribute("name"),
        "true",
        "booleans are stringified"
    );
    assert_eq!(recs[1].attribute("dept"), "1.5");
    assert_eq!(recs[1].end_date, Some(d("2026-12-31")));
    assert_eq!(recs[2].attribute("name"), "false");
    assert_eq!(
        recs[2].attributes.get("dept").map(String::as_str),
        Some(""),
        "absent keys are empty"
    );
    assert_eq!(recs[2].employment_type, EmploymentType::Employee);
}

#[test]
fn empty_inputs() {
    assert!(json("").unwrap().is_empty());
    assert!(json(" \n ").unwrap().is_empty());
    assert!(json("[]").unwrap().is_empty());
    assert!(json("\u{feff}[ \n ]\n").unwrap().is_empty());
    assert!(jsonl("").unwrap().is_empty());
    assert!(jsonl("\n\n  \n").unwrap().is_empty());
}

#[test]
fn bom_is_tolerated() {
    assert_eq!(
        json("\u{feff}[{\"id\":\"E1\",\"name\":\"A\"}]")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        jsonl("\u{feff}{\"id\":\"E1\",\"name\":\"A\"}\n")
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn syntax_errors_have_line_and_column() {
    let e = json("[\n  {\"id\": \"E1\", \"name\": \"A\"},\n  {\"id\": \"E2\" \"name\": \"B\"}\n]")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:3:15: JSON syntax error: expected `,` or `}`"
    );
    let p = &e.problems()[0];
    assert_eq!((p.line, p.column), (Some(3), Some(15)));

    let e = json("[{\"id\": \"E1\", \"name\": \"A\"} {\"id\": \"E2\"}]").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:1:28: JSON syntax error: expected `,` or `]` after record 1"
    );
    let e = json("[{\"id\": \"E1\", \"name\": \"A\"},\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:2:1: the file ends inside the array: expected a record and `]`"
    );
    let e = json("[{\"id\": \"E1\", \"name\": \"A\"}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:1:27: the file ends inside the array: expected `,` or `]` after record 1"
    );
    let e = json("[{\"id\": \"E1\", \"name\": \"A\"},]").unwrap_err();
    assert_eq!(e.problems()[0].line, Some(1));
    assert!(
        e.to_string()
            .starts_with("hr.json:1:28: JSON syntax error: expected value"),
        "{e}"
    );
    let e = json("[]\n{}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:2:1: JSON syntax error: unexpected text after the closing `]` of the array"
    );
    let e = json("  {\"id\": \"E1\"}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:1:3: the file holds a single JSON object; a json source must be an array of objects (for one object per line, use format = \"jsonl\")"
    );
    let e = json("\"E1\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:1:1: expected a JSON array of objects, starting with `[`"
    );
}

#[test]
fn invalid_utf8() {
    let e = tenure_sources::parse(
        &source(SourceFormat::Json),
        "hr.json",
        b"[\n {\"id\": \"E1\", \"name\": \"Jos\xe9\"}]",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.json:2:27: the file is not valid UTF-8 here; a JSON export must be UTF-8 encoded"
    );
}

#[test]
fn records_must_be_objects() {
    let e = json("[\n  {\"id\": \"E1\", \"name\": \"A\"},\n  \"E2\",\n  [1]\n]").unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "hr.json:3:3: record 2 is a string, not an object; expected an object with the source's fields",
            "hr.json:4:3: record 3 is an array, not an object; expected an object with the source's fields",
        ]
    );
}

#[test]
fn field_problems_point_at_the_key() {
    let text = r#"[
  {
    "id": "E1",
    "name": "A",
    "start": "2026-13-01"
  },
  {"id": "E2", "name": ["B"], "dept": {"x": 1}},
  {"name": "C"},
  {
    "id": "E1",
    "name": "D"
  }
]"#;
    let e = json(text).unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "hr.json:5:5: field \"start\": \"2026-13-01\" is not a date in the format %Y-%m-%d",
            // in the mapping's order: id, Tenure's fields, attributes by name
            "hr.json:7:31: field \"dept\": an object is not allowed here; expected a string, number, boolean or null",
            "hr.json:7:16: field \"name\": an array is not allowed here; expected a string, number, boolean or null",
            "hr.json:8:3: field \"id\": the record has no such field (or it is null); every record needs an identity id",
            "hr.json:10:5: field \"id\": id \"E1\" is already used by the record on line 2",
        ]
    );
    assert_eq!(e.problems()[0].field, Some(Field::Key("start".into())));
}

#[test]
fn json_lines() {
    let recs = jsonl(
        "{\"id\": \"E1\", \"name\": \"A\", \"dept\": 7}\r\n\n   \n{\"id\": \"E2\", \"name\": \"B\", \"type\": \"FT\", \"manager\": \"E1\"}\n",
    )
    .unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].attribute("dept"), "7");
    assert_eq!(recs[1].manager.as_ref().map(|m| m.as_str()), Some("E1"));
}

#[test]
fn json_lines_problems_go_on_to_the_next_line() {
    let mut bytes = b"{\"id\": \"E1\", \"name\": \"A\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"id\": \"E2\", \"name\": \"B\"\n");
    bytes.extend_from_slice(b"\n[1, 2]\n");
    bytes.extend_from_slice(b"{\"id\": \"E3\", \"name\": \"\xff\"}\n");
    bytes.extend_from_slice(b"  {\"id\": \"E1\", \"name\": \"D\", \"start\": \"soon\"}\n");
    bytes.extend_from_slice(b"{\"id\": \"E5\"} {\"id\": \"E6\"}\n");
    let e = tenure_sources::parse(&source(SourceFormat::Jsonl), "hr.jsonl", &bytes).unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "hr.jsonl:2:24: JSON syntax error: EOF while parsing an object",
            "hr.jsonl:4:1: the line holds an array, not an object; expected one object with the source's fields per line",
            "hr.jsonl:5:23: the line is not valid UTF-8 here; a JSON-lines export must be UTF-8 encoded",
            "hr.jsonl:6:4: field \"id\": id \"E1\" is already used by the record on line 1",
            "hr.jsonl:6:29: field \"start\": \"soon\" is not a date in the format %Y-%m-%d",
            "hr.jsonl:7:14: JSON syntax error: trailing characters",
        ]
    );
}
