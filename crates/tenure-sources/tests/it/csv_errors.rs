use super::*;
use tenure_sources::{Field, MAX_PROBLEMS};

#[test]
fn the_documented_example() {
    // Line 14 is the 13th person of a synthetic export.
    let today = d("2026-11-24");
    let text = tenure_sources::synthetic::generate_csv(20, 7, today);
    let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
    let row = &mut rows[13];
    let hire = row.split(',').nth(10).unwrap().to_owned();
    *row = row.replace(&format!(",{hire},"), ",2026-13-01,");
    let src = tenure_sources::synthetic::synthetic_source_config(SourceId::new("hr").unwrap());
    let e = tenure_sources::parse(&src, "hr-2026-11.csv", rows.join("\n").as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr-2026-11.csv:14: column \"hire_date\": \"2026-13-01\" is not a date in the format %Y-%m-%d"
    );
    let p = &e.problems()[0];
    assert_eq!(p.file, "hr-2026-11.csv");
    assert_eq!(p.line, Some(14));
    assert_eq!(p.column, None);
    assert_eq!(p.field, Some(Field::Column("hire_date".into())));
}

#[test]
fn missing_columns_are_named_with_the_header() {
    let e = err_csv("id,kind,manager,start,name\nE1,,,,A\nE2,,,nope,B\n");
    assert_eq!(
        lines(&e),
        [
            "hr.csv:1: column \"type\": is not in the header, but the source maps it to \
             employment_type; the header's columns are: \"id\", \"kind\", \"manager\", \"start\", \"name\"",
            "hr.csv:1: column \"end\": is not in the header, but the source maps it to end_date; \
             the header's columns are: \"id\", \"kind\", \"manager\", \"start\", \"name\"",
            "hr.csv:1: column \"dept\": is not in the header, but the source maps it to attribute \
             \"dept\"; the header's columns are: \"id\", \"kind\", \"manager\", \"start\", \"name\"",
            // the rows are still checked, with the columns that are there
            "hr.csv:3: column \"start\": \"nope\" is not a date in the format %Y-%m-%d",
        ]
    );
}

#[test]
fn missing_id_column_is_reported_once() {
    let e = err_csv("ID,type,manager,start,end,name,dept\nE1,,,,,A,\nE2,,,,,B,\n");
    assert_eq!(e.total(), 1, "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("hr.csv:1: column \"id\": is not in the header, but the source maps it to id (did you mean \"ID\"?)"), "{msg}");
}

#[test]
fn duplicated_header_column() {
    let e = err_csv("id,type,manager,start,end,name,dept,name\nE1,,,,,A,,B\n");
    assert_eq!(
        e.to_string(),
        "hr.csv:1: column \"name\": appears more than once in the header (columns 6 and 8), so it is ambiguous"
    );
}

#[test]
fn wrong_number_of_fields() {
    let e = err_csv(&format!("{HEADER}E1,,,,,A,\nE2,,,,,B\nE3,,,,,Smith, C,\n"));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:3: the record has 6 fields but the header has 7",
            "hr.csv:4: the record has 8 fields but the header has 7 (a value containing the delimiter must be quoted)",
        ]
    );
}

#[test]
fn invalid_utf8_in_a_mapped_column() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"E1,,,,,A,\nE2,,,,,Jos\xe9,\n");
    let e = tenure_sources::parse(&source(SourceFormat::Csv), "hr.csv", &bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.csv:3: column \"name\": \"Jos\u{fffd}\" is not valid UTF-8 (bad byte at offset 3 of the value); the file must be UTF-8 encoded"
    );
}

#[test]
fn empty_and_invalid_ids() {
    let e = err_csv(&format!(
        "{HEADER} ,,,,,A,\n\"E\u{7}2\",,,,,B,\n{},,,,,C,\n",
        "x".repeat(300)
    ));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:2: column \"id\": the id is empty; every record needs an identity id",
            "hr.csv:3: column \"id\": \"E\\u{7}2\" is not a valid identity id: identity id \"E\\u{7}2\" contains '\\u{7}', which is not allowed here",
            "hr.csv:4: column \"id\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"… is not a valid identity id: identity id is 300 bytes long; the limit is 256",
        ]
    );
}

#[test]
fn duplicated_ids_name_both_lines() {
    let e = err_csv(&format!(
        "{HEADER}E1,,,,,A,\nE2,,,,,\"B\nB\",\n E1 ,,,,,C,\nE1,,,,,D,\n"
    ));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:5: column \"id\": id \"E1\" is already used by the record on line 2",
            "hr.csv:6: column \"id\": id \"E1\" is already used by the record on line 2",
        ]
    );
}

#[test]
fn bad_dates_name_value_and_format() {
    let e = err_csv(&format!("{HEADER}E1,,,2026-02-30,31/12/2026,A,\n"));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:2: column \"start\": \"2026-02-30\" is not a date in the format %Y-%m-%d",
            "hr.csv:2: column \"end\": \"31/12/2026\" is not a date in the format %Y-%m-%d",
        ]
    );
}

#[test]
fn unknown_employment_type_lists_accepted_values() {
    let e = err_csv(&format!("{HEADER}E1,Intern,,,,A,\n"));
    assert_eq!(
        e.to_string(),
        "hr.csv:2: column \"type\": \"Intern\" is not a known employment type; expected one of \
         \"Contractor\", \"FT\" (from employment_types) or a type name: employee, contractor, \
         vendor, temp, service_owner"
    );
    let mut src = source(SourceFormat::Csv);
    src.employment_types.clear();
    let e = tenure_sources::parse(&src, "hr.csv", format!("{HEADER}E1,FT,,,,A,\n").as_bytes())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.csv:2: column \"type\": \"FT\" is not a known employment type; expected one of \
         employee, contractor, vendor, temp, service_owner"
    );
}

#[test]
fn required_attribute_empty() {
    let e = err_csv(&format!("{HEADER}E1,,,,,  ,\n"));
    assert_eq!(
        e.to_string(),
        "hr.csv:2: column \"name\": \"name\" is required, but the value is empty"
    );
}

#[test]
fn invalid_manager_id() {
    let e = err_csv(&format!("{HEADER}E1,,\"M\n1\",,,A,\n"));
    assert_eq!(
        e.to_string(),
        "hr.csv:2: column \"manager\": \"M\\n1\" is not a valid manager id: identity id \"M\\n1\" contains '\\n', which is not allowed here"
    );
}

#[test]
fn unclosed_quote_is_not_silently_swallowed() {
    let e = err_csv(&format!("{HEADER}E1,,,,,\"Smith,\nE2,,,,,B,\nE3,,,,,C,\n"));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:2: the record has 6 fields but the header has 7",
            "hr.csv:2: column \"name\": a quoted value starts in this record and its closing quote is missing, so the rest of the file was read as part of it",
        ]
    );
    // even when the swallowed text happens to give the right number of fields
    let e = err_csv(&format!("{HEADER}E1,,,,,A,\"x\nE2,,,,,B,\n"));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:2: column \"dept\": a quoted value starts in this record and its closing quote is missing, so the rest of the file was read as part of it"
        ]
    );
}

#[test]
fn every_problem_of_a_file_at_once() {
    let e = err_csv(concat!(
        "id,type,manager,start,end,name,dept\n",
        "E1,FT,,2026-01-01,,Ann,\n",
        ",Boss,E1,2026-13-01,,,\n",
        "E1,,bad\tid,,yesterday,Cy,\n",
    ));
    assert_eq!(
        lines(&e),
        [
            "hr.csv:3: column \"id\": the id is empty; every record needs an identity id",
            "hr.csv:3: column \"type\": \"Boss\" is not a known employment type; expected one of \"Contractor\", \"FT\" (from employment_types) or a type name: employee, contractor, vendor, temp, service_owner",
            "hr.csv:3: column \"start\": \"2026-13-01\" is not a date in the format %Y-%m-%d",
            "hr.csv:3: column \"name\": \"name\" is required, but the value is empty",
            "hr.csv:4: column \"id\": id \"E1\" is already used by the record on line 2",
            "hr.csv:4: column \"manager\": \"bad\\tid\" is not a valid manager id: identity id \"bad\\tid\" contains '\\t', which is not allowed here",
            "hr.csv:4: column \"end\": \"yesterday\" is not a date in the format %Y-%m-%d",
        ]
    );
    assert_eq!(e.total(), 7);
    assert_eq!(e.omitted(), 0);
    assert_eq!(e.file(), "hr.csv");
}

#[test]
fn problems_are_capped_and_counted() {
    let mut text = HEADER.to_owned();
    for i in 0..120 {
        text.push_str(&format!("E{i},,,never,,A,\n"));
    }
    let e = err_csv(&text);
    assert_eq!(e.problems().len(), MAX_PROBLEMS);
    assert_eq!(e.omitted(), 70);
    assert_eq!(e.total(), 120);
    let l = lines(&e);
    assert_eq!(l.len(), MAX_PROBLEMS + 1);
    assert_eq!(
        l[0],
        "hr.csv:2: column \"start\": \"never\" is not a date in the format %Y-%m-%d"
    );
    assert_eq!(
        l[MAX_PROBLEMS],
        "hr.csv: … and 70 more problems not shown (120 in all)"
    );
}

#[test]
fn configuration_problems() {
    let mut src = source(SourceFormat::Csv);
    src.employment_types.insert("Staff".into(), "staff".into());
    src.default_employment_type = "person".into();
    src.attributes.insert("status".into(), "status".into());
    src.required.push("nickname".into());
    src.required.push("id".into());
    src.date_format = "%Q".into();
    let text = "id,type,manager,start,end,name,dept,status\nE1,,,,,A,,x\n";
    let e = tenure_sources::parse(&src, "hr.csv", text.as_bytes()).unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "hr.csv: source \"hr\": attribute \"status\" uses a reserved name; attributes may not be called id, employment_type, status, manager, start_date, end_date, groups, source",
            "hr.csv: source \"hr\": `required` lists \"nickname\", which is not an attribute of this source (its attributes are: dept, name, status)",
            "hr.csv: source \"hr\": employment_types maps \"Staff\" to \"staff\", which is not an employment type; expected one of employee, contractor, vendor, temp, service_owner",
            "hr.csv: source \"hr\": default_employment_type \"person\" is not an employment type; expected one of employee, contractor, vendor, temp, service_owner",
            "hr.csv: source \"hr\": date_format \"%Q\" is not a valid chrono format",
        ]
    );
    assert!(e.problems().iter().all(|p| p.line.is_none()));

    let mut src = source(SourceFormat::Csv);
    src.delimiter = '→';
    let e = tenure_sources::parse(&src, "hr.csv", b"id\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.csv: source \"hr\": the delimiter '→' cannot be used; it must be a single ASCII character other than a quote or a line break"
    );

    let mut src = source(SourceFormat::Csv);
    src.columns.manager = None;
    src.required = vec!["manager".into()];
    let e = tenure_sources::parse(&src, "hr.csv", b"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "hr.csv: source \"hr\": `required` lists \"manager\", but columns.manager is not set"
    );
}
