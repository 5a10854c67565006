use super::*;
use proptest::prelude::*;
use tenure_core::IdentityId;

/// A source with id, manager and three attributes, for round trips.
fn rt_source(format: SourceFormat, delimiter: char) -> SourceConfig {
    let mut s = source(format);
    s.delimiter = delimiter;
    s.columns.employment_type = None;
    s.columns.start_date = None;
    s.columns.end_date = None;
    s.required.clear();
    s.attributes = BTreeMap::from([
        ("a".into(), "col a".into()),
        ("b".into(), "b".into()),
        ("c".into(), "c".into()),
    ]);
    s
}

#[derive(Debug, Clone)]
struct Row {
    id: String,
    manager: String,
    a: String,
    b: String,
    c: String,
}

fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,;|\t\"'\n\r\\\\éß日本🙂\u{feff}]{0,12}"
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            "[A-Za-z0-9][A-Za-z0-9 _.,\"é日-]{0,10}",
            prop_oneof![Just(String::new()), "[A-Za-z0-9 ,\"é]{1,8}"],
            value(),
            value(),
            value(),
        ),
        0..20,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (id, manager, a, b, c))| Row {
                id: format!("{i}:{id}"), // unique: the index ends at the first colon
                manager,
                a,
                b,
                c,
            })
            .collect()
    })
}

fn expected(rows: &[Row]) -> Vec<IdentityRecord> {
    rows.iter()
        .map(|r| IdentityRecord {
            id: IdentityId::new(r.id.trim()).unwrap(),
            employment_type: tenure_core::EmploymentType::Employee,
            manager: (!r.manager.trim().is_empty())
                .then(|| IdentityId::new(r.manager.trim()).unwrap()),
            start_date: None,
            end_date: None,
            attributes: BTreeMap::from([
                ("a".into(), r.a.trim().to_owned()),
                ("b".into(), r.b.trim().to_owned()),
                ("c".into(), r.c.trim().to_owned()),
            ]),
            groups: Default::default(),
        })
        .collect()
}

proptest! {
    // 256 cases each by default; set PROPTEST_CASES for a longer run.

    #[test]
    fn csv_round_trips(rows in rows(), delim in prop::sample::select(vec![',', ';', '\t', '|'])) {
        let mut w = csv::WriterBuilder::new()
            .delimiter(u8::try_from(delim).unwrap())
            .from_writer(Vec::new());
        w.write_record(["c", "id", "col a", "manager", "b"]).unwrap();
        for r in &rows {
            w.write_record([&r.c, &r.id, &r.a, &r.manager, &r.b]).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let got = tenure_sources::parse(&rt_source(SourceFormat::Csv, delim), "p.csv", &bytes);
        let got = got.map_err(|e| e.to_string());
        prop_assert_eq!(got, Ok(expected(&rows)));
    }

    #[test]
    fn json_round_trips(rows in rows(), lines in any::<bool>()) {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "manager": r.manager, "col a": r.a, "b": r.b, "c": r.c, "other": [1]}))
            .collect();
        let (format, text) = if lines {
            let mut t = String::new();
            for o in &objects {
                t.push_str(&o.to_string());
                t.push('\n');
            }
            (SourceFormat::Jsonl, t)
        } else {
            (SourceFormat::Json, serde_json::to_string_pretty(&objects).unwrap())
        };
        let got = tenure_sources::parse(&rt_source(format, ','), "p.json", text.as_bytes());
        let got = got.map_err(|e| e.to_string());
        prop_assert_eq!(got, Ok(expected(&rows)));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [SourceFormat::Csv, SourceFormat::Json, SourceFormat::Jsonl] {
            check_no_panic(format, &bytes);
        }
    }

    #[test]
    fn never_panics_on_structured_noise(
        bytes in proptest::collection::vec(
            prop::sample::select(b"{}[]\",:;\n\r \\ab1-eE.0idnametypestart\xff\xc3\xa9".to_vec()),
            0..400,
        )
    ) {
        for format in [SourceFormat::Csv, SourceFormat::Json, SourceFormat::Jsonl] {
            check_no_panic(format, &bytes);
            let mut framed = b"[".to_vec();
            framed.extend_from_slice(&bytes);
            check_no_panic(format, &framed);
            let mut with_header = HEADER.as_bytes().to_vec();
            with_header.extend_from_slice(&bytes);
            check_no_panic(format, &with_header);
        }
    }
}

/// Parses, and checks that an error always has at least one problem and
/// that every problem has the file name and a sensible line.
fn check_no_panic(format: SourceFormat, bytes: &[u8]) {
    match tenure_sources::parse(&source(format), "noise", bytes) {
        Ok(recs) => {
            let ids: std::collections::BTreeSet<_> = recs.iter().map(|r| &r.id).collect();
            assert_eq!(ids.len(), recs.len(), "no duplicated ids in a success");
        }
        Err(e) => {
            assert!(e.total() >= 1);
            let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
            for p in e.problems() {
                assert_eq!(p.file, "noise");
                let line = p.line.unwrap();
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {p}");
                assert!(!p.message.is_empty());
            }
            let _ = e.to_string();
        }
    }
}
