use super::*;
use tenure_core::{EmploymentType, IdentityId};

#[test]
fn maps_every_field() {
    let recs = ok_csv(concat!(
        "id,type,manager,start,end,name,dept\n",
        " E1 , FT ,, 2026-01-05 ,, Ada Lovelace ,R&D\n",
        "E2,ft,E1,,2026-12-31,Bob,\n",
        "E3,vendor,E1,2025-02-01,,Cy,Ops\n",
        "E4,,E2,,,Di,Ops\n",
        "E5,Contractor,E2,,2027-01-01,Ed,Ops\n",
    ));
    assert_eq!(recs.len(), 5);
    let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["E1", "E2", "E3", "E4", "E5"], "file order, trimmed");

    let e1 = &recs[0];
    assert_eq!(e1.employment_type, EmploymentType::Employee);
    assert_eq!(e1.manager, None);
    assert_eq!(e1.start_date, Some(d("2026-01-05")));
    assert_eq!(e1.end_date, None);
    assert_eq!(e1.attribute("name"), "Ada Lovelace");
    assert_eq!(e1.attribute("dept"), "R&D");
    assert!(e1.groups.is_empty());

    let e2 = &recs[1];
    assert_eq!(
        e2.employment_type,
        EmploymentType::Employee,
        "case-insensitive lookup"
    );
    assert_eq!(e2.manager, Some(IdentityId::new("E1").unwrap()));
    assert_eq!(e2.end_date, Some(d("2026-12-31")));
    assert_eq!(
        e2.attributes.get("dept").map(String::as_str),
        Some(""),
        "declared attributes are always present"
    );
    assert_eq!(
        recs[2].employment_type,
        EmploymentType::Vendor,
        "canonical name"
    );
    assert_eq!(recs[3].employment_type, EmploymentType::Employee, "default");
    assert_eq!(recs[4].employment_type, EmploymentType::Contractor);
}

#[test]
fn exact_mapping_wins_over_canonical_names() {
    let mut src = source(SourceFormat::Csv);
    src.employment_types
        .insert("temp".into(), "contractor".into());
    src.default_employment_type = "temp".into();
    let recs = tenure_sources::parse(
        &src,
        "x.csv",
        format!("{HEADER}E1,temp,,,,A,\nE2,,,,,B,\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(recs[0].employment_type, EmploymentType::Contractor);
    assert_eq!(recs[1].employment_type, EmploymentType::Temp);
}

#[test]
fn quoting_commas_quotes_and_newlines() {
    let text = concat!(
        "id,type,manager,start,end,name,dept\n",
        "E1,,,,,\"Smith, John\",\"Sales, \"\"EMEA\"\"\"\n",
        "E2,,,,,\"two\nlines\",\"x\r\ny\"\n",
        "E3,,,,,Zoë 日本,\n",
    );
    let recs = ok_csv(text);
    assert_eq!(recs[0].attribute("name"), "Smith, John");
    assert_eq!(recs[0].attribute("dept"), "Sales, \"EMEA\"");
    assert_eq!(recs[1].attribute("name"), "two\nlines");
    assert_eq!(recs[1].attribute("dept"), "x\r\ny");
    assert_eq!(recs[2].attribute("name"), "Zoë 日本");

    // A record after multi-line values is on its physical line.
    let bad = format!("{text}E4,,,bad,,D,\n");
    let e = err_csv(&bad);
    assert_eq!(e.problems()[0].line, Some(7));
}

#[test]
fn bom_is_tolerated() {
    let recs = ok_csv(&format!("\u{feff}{HEADER}E1,,,,,A,\n"));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].id.as_str(), "E1");
    assert!(ok_csv("\u{feff}").is_empty());
}

#[test]
fn empty_header_only_and_blank_lines() {
    assert!(ok_csv("").is_empty());
    assert!(ok_csv("\n\n").is_empty());
    assert!(ok_csv("  \r\n\t\n").is_empty());
    assert_eq!(ok_csv(&format!("\n  \n{HEADER}E1,,,,,A,\n")).len(), 1);
    let e = err_csv(&format!("\n  \n{HEADER}E1,,,,,A,\nE2,,,,,,\n"));
    assert_eq!(e.problems()[0].line, Some(5), "lines count the blank ones");
    assert!(ok_csv(HEADER).is_empty());
    assert!(ok_csv("id,type,manager,start,end,name,dept").is_empty());
    let recs = ok_csv(&format!("{HEADER}\nE1,,,,,A,\n\n   \n,,,,,,\nE2,,,,,B,"));
    assert_eq!(recs.len(), 2);
}

#[test]
fn crlf_and_other_delimiters() {
    let recs = ok_csv("id,type,manager,start,end,name,dept\r\nE1,,,,,A,\r\nE2,,,,,B,\r\n");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].attribute("name"), "B");

    for delim in [';', '\t', '|'] {
        let mut src = source(SourceFormat::Csv);
        src.delimiter = delim;
        let text =
            format!("{HEADER}E1,,,,,\"A{delim}B\",\"x, y\"\n").replace(',', &delim.to_string());
        let recs = tenure_sources::parse(&src, "x.csv", text.as_bytes()).unwrap();
        assert_eq!(recs[0].attribute("name"), format!("A{delim}B"));
        assert_eq!(recs[0].attribute("dept"), format!("x{delim} y"));
    }
}

#[test]
fn header_names_are_trimmed_and_order_is_free() {
    let recs = ok_csv("dept , name,end,start,manager,type, id, extra\nD,N,,,,,E1,whatever\n");
    assert_eq!(recs[0].id.as_str(), "E1");
    assert_eq!(recs[0].attribute("dept"), "D");
    assert!(!recs[0].attributes.contains_key("extra"));
}

#[test]
fn unmapped_columns_may_hold_anything() {
    let mut bytes = b"id,type,manager,start,end,name,dept,junk\nE1,,,,,A,,".to_vec();
    bytes.extend_from_slice(b"\xff\xfe\n");
    let recs = tenure_sources::parse(&source(SourceFormat::Csv), "x.csv", &bytes).unwrap();
    assert_eq!(recs.len(), 1);
}

#[test]
fn other_date_formats() {
    let mut src = source(SourceFormat::Csv);
    src.date_format = "%d/%m/%Y".into();
    let recs = tenure_sources::parse(
        &src,
        "x.csv",
        format!("{HEADER}E1,,,05/01/2026,,A,\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(recs[0].start_date, Some(d("2026-01-05")));
}

#[test]
fn required_may_name_mapped_tenure_fields() {
    let mut src = source(SourceFormat::Csv);
    src.required.push("start_date".into());
    let e = tenure_sources::parse(&src, "x.csv", format!("{HEADER}E1,,,,,A,\n").as_bytes())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.csv:2: column \"start\": \"start_date\" is required, but the value is empty"
    );
}
