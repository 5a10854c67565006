use super::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tenure_core::EmploymentType;
use tenure_core::config::Config;
use tenure_sources::synthetic::{
    HEADER as SYNTH_HEADER, SYNTHETIC_SOURCE_TOML, generate_csv, mutate_csv,
    synthetic_source_config,
};

fn hr() -> SourceConfig {
    synthetic_source_config(SourceId::new("hr").unwrap())
}

fn today() -> chrono::NaiveDate {
    d("2026-11-24")
}

fn parse(text: &str) -> Vec<IdentityRecord> {
    tenure_sources::parse(&hr(), "hr.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn toml_constant_matches_the_config() {
    let cfg = Config::parse(vec![("hr.toml".into(), SYNTHETIC_SOURCE_TOML.into())]).unwrap();
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.sources[0].item, hr());
}

#[test]
fn deterministic() {
    let a = generate_csv(500, 42, today());
    assert_eq!(a, generate_csv(500, 42, today()));
    assert_ne!(a, generate_csv(500, 43, today()));
    assert!(a.starts_with(&format!("{SYNTH_HEADER}\n")));
    assert_eq!(
        SYNTH_HEADER,
        "employee_id,first_name,last_name,email,department,title,location,cost_center,worker_type,manager_id,hire_date,termination_date"
    );
    assert_eq!(generate_csv(0, 1, today()), format!("{SYNTH_HEADER}\n"));
    assert_eq!(
        mutate_csv(500, 42, today(), 5.0),
        mutate_csv(500, 42, today(), 5.0)
    );
    assert_eq!(mutate_csv(500, 42, today(), 0.0), a);
    assert_eq!(mutate_csv(500, 42, today(), f64::NAN), a);
}

#[test]
fn realistic_population() {
    let n = 5_000;
    let recs = parse(&generate_csv(n, 7, today()));
    assert_eq!(recs.len(), n);

    // managers form a tree over earlier rows
    let index: HashMap<&str, usize> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    assert_eq!(recs[0].manager, None);
    for (i, r) in recs.iter().enumerate().skip(1) {
        let m = r
            .manager
            .as_ref()
            .expect("everyone but the first has a manager");
        let mi = index[m.as_str()];
        assert!(mi < i, "row {i} reports to later row {mi}");
        let boss = &recs[mi];
        assert_eq!(boss.employment_type, EmploymentType::Employee);
        assert!(boss.start_date.unwrap() <= today());
    }

    // unique, well-formed e-mails
    let emails: BTreeSet<&str> = recs.iter().map(|r| r.attribute("email")).collect();
    assert_eq!(emails.len(), n);
    for (i, r) in recs.iter().enumerate() {
        let e = r.attribute("email");
        assert!(e.ends_with(&format!("{}@acme.example", i + 1)), "{e}");
        assert!(e.is_ascii() && e.contains('.'), "{e}");
    }

    // worker types ~85/10/5
    let mut types: BTreeMap<EmploymentType, usize> = BTreeMap::new();
    for r in &recs {
        *types.entry(r.employment_type).or_default() += 1;
    }
    let share = |t| types.get(&t).copied().unwrap_or(0) * 100 / n;
    assert!(
        (82..=88).contains(&share(EmploymentType::Employee)),
        "{types:?}"
    );
    assert!(
        (8..=12).contains(&share(EmploymentType::Contractor)),
        "{types:?}"
    );
    assert!((3..=7).contains(&share(EmploymentType::Temp)), "{types:?}");

    // contractors and temps have a contract end in the future; employees none
    for r in &recs {
        match r.employment_type {
            EmploymentType::Employee => assert_eq!(r.end_date, None),
            _ => assert!(r.end_date.unwrap() > today()),
        }
        assert!(r.start_date.is_some());
    }
    // hire dates in the past, a small share in the future
    let future = recs
        .iter()
        .filter(|r| r.start_date.unwrap() > today())
        .count();
    assert!((1..=n * 4 / 100).contains(&future), "{future}");

    let departments: BTreeSet<&str> = recs.iter().map(|r| r.attribute("department")).collect();
    assert_eq!(
        departments.into_iter().collect::<Vec<_>>(),
        [
            "Design",
            "Engineering",
            "Finance",
            "HR",
            "IT",
            "Legal",
            "Marketing",
            "Operations",
            "Product",
            "Sales",
            "Security",
            "Support"
        ]
    );
    let titles: BTreeSet<&str> = recs.iter().map(|r| r.attribute("title")).collect();
    assert!(titles.contains("Chief Executive Officer"));
    assert!(
        titles.contains("Director, Finance"),
        "a title that needs quoting"
    );
    assert!(titles.len() > 40, "{titles:?}");
    let locations: BTreeSet<&str> = recs.iter().map(|r| r.attribute("location")).collect();
    assert_eq!(locations.len(), 5);
}

#[test]
fn small_populations() {
    for n in 0..20 {
        assert_eq!(parse(&generate_csv(n, 1, today())).len(), n);
        assert!(parse(&mutate_csv(n, 1, today(), 50.0)).len() >= n);
    }
}

#[test]
fn mutation_changes_about_the_given_share() {
    let n = 2_000;
    let before = parse(&generate_csv(n, 9, today()));
    let after = parse(&mutate_csv(n, 9, today(), 10.0));
    // c = 200: 100 movers, 60 leavers, 40 joiners
    assert_eq!(after.len(), n + 40);
    let mut moved = 0;
    let mut left = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.id, b.id);
        if a == b {
            continue;
        }
        if a.end_date == Some(today()) && a.attributes == b.attributes {
            left += 1;
        } else {
            moved += 1;
            assert_ne!(a.attribute("department"), b.attribute("department"));
            assert_ne!(a.attribute("cost_center"), b.attribute("cost_center"));
            assert_eq!(a.end_date, b.end_date);
        }
    }
    assert_eq!((moved, left), (100, 60));
    for (i, j) in after.iter().enumerate().skip(n) {
        assert_eq!(j.id.as_str(), format!("E{:06}", i + 1));
        let start = j.start_date.unwrap();
        assert!(start >= today() && start < today() + chrono::Days::new(30));
    }
    // managers still name earlier rows
    let index: HashMap<&str, usize> = after
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    for (i, r) in after.iter().enumerate().skip(1) {
        assert!(index[r.manager.as_ref().unwrap().as_str()] < i);
    }
}

#[test]
fn hundred_thousand_rows_parse() {
    let text = generate_csv(100_000, 2026, today());
    let recs = parse(&text);
    assert_eq!(recs.len(), 100_000);
}
