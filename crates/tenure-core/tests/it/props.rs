//! Properties: plans are deterministic, applying a plan converges, and any
//! tampering with the audit chain is detected.

use crate::common::*;
use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tenure_core::audit::{AuditEvent, AuditRecord, GENESIS, seal, verify};
use tenure_core::plan::{Diff, DiffInput, OrphanPolicy, Reason, SystemInfo, diff};
use tenure_core::state::{
    Account, ActualState, Capabilities, Desired, DesiredAccount, DesiredIdentity, DesiredState,
};
use tenure_core::{Identity, Link, SystemId};

// ---------------------------------------------------------------------------
// Arbitrary desired and actual states.

const SYSTEMS: [&str; 2] = ["s0", "s1"];
const IDENTITIES: usize = 4;
/// e0..e2 are declared on every system; e3 is not (Tenure must leave it alone).
const ENTITLEMENTS: [&str; 4] = ["e0", "e1", "e2", "e3"];

fn ents(mask: u8) -> impl Iterator<Item = &'static str> {
    ENTITLEMENTS
        .into_iter()
        .enumerate()
        .filter(move |(n, _)| mask & (1 << n) != 0)
        .map(|(_, e)| e)
}

fn attrs() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        prop_oneof![Just("a0".to_owned()), Just("a1".to_owned())],
        prop_oneof![Just("v0".to_owned()), Just("v1".to_owned())],
        0..=2,
    )
}

#[derive(Debug, Clone)]
enum DesiredSpec {
    Nothing,
    Account {
        key: u8,
        attrs: BTreeMap<String, String>,
        ents: u8,
    },
    Restricted(bool),
    Absent,
}

fn desired_spec() -> impl Strategy<Value = DesiredSpec> {
    prop_oneof![
        1 => Just(DesiredSpec::Nothing),
        3 => (0..2u8, attrs(), 0..16u8).prop_map(|(key, attrs, ents)| DesiredSpec::Account { key, attrs, ents }),
        1 => any::<bool>().prop_map(DesiredSpec::Restricted),
        1 => Just(DesiredSpec::Absent),
    ]
}

/// An account of one identity on one system. Keys 0 and 1 are keys policy may
/// give the identity; 2 is an old key it never gives.
#[derive(Debug, Clone)]
struct AccountSpec {
    key: u8,
    enabled: bool,
    attrs: BTreeMap<String, String>,
    ents: u8,
    linked: bool,
}

fn account_spec() -> impl Strategy<Value = AccountSpec> {
    (
        0..3u8,
        any::<bool>(),
        attrs(),
        0..16u8,
        prop::bool::weighted(0.7),
    )
        .prop_map(|(key, enabled, attrs, ents, linked)| AccountSpec {
            key,
            enabled,
            attrs,
            ents,
            linked,
        })
}

#[derive(Debug, Clone)]
struct IdentitySpec {
    /// 0: evaluated, 1: evaluation failed (skipped), 2: no longer in the store.
    presence: u8,
    desired: Vec<DesiredSpec>,
    accounts: Vec<Vec<AccountSpec>>,
    /// A stored link to an account that is not there (key 0 or 1).
    stale: Vec<Option<u8>>,
}

fn identity_spec() -> impl Strategy<Value = IdentitySpec> {
    let n = SYSTEMS.len();
    (
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        proptest::collection::vec(desired_spec(), n),
        proptest::collection::vec(proptest::collection::vec(account_spec(), 0..3), n),
        proptest::collection::vec(proptest::option::weighted(0.2, 0..2u8), n),
    )
        .prop_map(|(presence, desired, accounts, stale)| IdentitySpec {
            presence,
            desired,
            accounts,
            stale,
        })
}

#[derive(Debug, Clone)]
struct SystemSpec {
    caps: Capabilities,
    orphans: OrphanPolicy,
    /// Accounts of nobody: (enabled, entitlements, linked to someone the store forgot).
    orphan_accounts: Vec<(bool, u8, bool)>,
}

fn system_spec() -> impl Strategy<Value = SystemSpec> {
    (
        proptest::array::uniform5(prop::bool::weighted(0.8)),
        prop_oneof![
            Just(OrphanPolicy::Report),
            Just(OrphanPolicy::Disable),
            Just(OrphanPolicy::Delete)
        ],
        proptest::collection::vec((any::<bool>(), 0..16u8, any::<bool>()), 0..3),
    )
        .prop_map(
            |([create, update, disable, delete, memberships], orphans, orphan_accounts)| {
                SystemSpec {
                    caps: Capabilities {
                        read: true,
                        create,
                        update,
                        disable,
                        delete,
                        memberships,
                        last_login: false,
                        archive: false,
                        archive_to_manager: false,
                    },
                    orphans,
                    orphan_accounts,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct World2 {
    infos: BTreeMap<SystemId, SystemInfo>,
    desired: DesiredState,
    actual: ActualState,
    links: Vec<Link>,
}

fn world() -> impl Strategy<Value = (Vec<SystemSpec>, Vec<IdentitySpec>)> {
    (
        proptest::collection::vec(system_spec(), SYSTEMS.len()),
        proptest::collection::vec(identity_spec(), IDENTITIES),
    )
}

fn reason() -> Vec<Reason> {
    vec![Reason::Mapping]
}

/// Builds the states. With `correlated`, an identity's unlinked accounts never
/// hold a key policy gives it: that is what correlation guarantees, since such
/// an account is linked (or reported as ambiguous, which `correlated` excludes).
fn build(systems: &[SystemSpec], identities: &[IdentitySpec], correlated: bool) -> World2 {
    let declared: BTreeSet<_> = ENTITLEMENTS[..3].iter().map(|e| ent(e)).collect();
    let infos = SYSTEMS
        .iter()
        .zip(systems)
        .map(|(s, spec)| {
            (
                sys(s),
                SystemInfo {
                    capabilities: spec.caps,
                    orphans: spec.orphans,
                    entitlements: declared.clone(),
                },
            )
        })
        .collect();
    let mut desired = DesiredState::default();
    let mut actual = ActualState::default();
    let mut links = Vec::new();
    for (si, s) in SYSTEMS.iter().enumerate() {
        let accounts = &mut actual.systems.entry(sys(s)).or_default().accounts;
        for (n, (enabled, mask, ghost)) in systems[si].orphan_accounts.iter().enumerate() {
            let k = format!("orphan{n}");
            accounts.insert(
                key(&k),
                Account {
                    key: key(&k),
                    attributes: BTreeMap::new(),
                    enabled: *enabled,
                    entitlements: ents(*mask).map(ent).collect(),
                    archived: false,
                },
            );
            if *ghost {
                links.push(link(s, &k, "forgotten"));
            }
        }
    }
    for (ii, spec) in identities.iter().enumerate() {
        let id = format!("i{ii}");
        let key_of = |k: u8| {
            if k == 2 {
                format!("{id}-old")
            } else {
                format!("{id}-k{k}")
            }
        };
        match spec.presence {
            0 => {
                let mut di = DesiredIdentity::default();
                for (si, d) in spec.desired.iter().enumerate() {
                    let d = match d {
                        DesiredSpec::Nothing => continue,
                        DesiredSpec::Account {
                            key: k,
                            attrs,
                            ents: mask,
                        } => Desired::Account(DesiredAccount {
                            key: key(&key_of(*k)),
                            attributes: attrs.clone(),
                            entitlements: ents(*mask).map(|e| (ent(e), reason())).collect(),
                            reasons: reason(),
                        }),
                        DesiredSpec::Restricted(keep) => Desired::Restricted {
                            keep_entitlements: *keep,
                            reasons: reason(),
                        },
                        DesiredSpec::Absent => Desired::Absent { reasons: reason() },
                    };
                    di.systems.insert(sys(SYSTEMS[si]), d);
                }
                desired.identities.insert(iid(&id), di);
            }
            1 => {
                desired.skipped.insert(iid(&id));
            }
            _ => {}
        }
        for (si, s) in SYSTEMS.iter().enumerate() {
            let accounts = &mut actual.systems.entry(sys(s)).or_default().accounts;
            let mut linked = false;
            for a in &spec.accounts[si] {
                let link_it = a.linked && !linked;
                let k = if correlated && !link_it {
                    key_of(2)
                } else {
                    key_of(a.key)
                };
                if accounts.contains_key(&key(&k)) {
                    continue;
                }
                accounts.insert(
                    key(&k),
                    Account {
                        key: key(&k),
                        attributes: a.attrs.clone(),
                        enabled: a.enabled,
                        entitlements: ents(a.ents).map(ent).collect(),
                        archived: false,
                    },
                );
                if link_it {
                    linked = true;
                    links.push(link(s, &k, &id));
                }
            }
            if let (false, Some(k)) = (linked, spec.stale[si]) {
                let k = key_of(k);
                if !accounts.contains_key(&key(&k)) {
                    links.push(link(s, &k, &id));
                }
            }
        }
    }
    World2 {
        infos,
        desired,
        actual,
        links,
    }
}

fn plan(w: &World2, actual: &ActualState, links: &[Link]) -> Diff {
    diff(&DiffInput {
        systems: &w.infos,
        desired: &w.desired,
        actual,
        links,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The same inputs give the same plan, whatever the order of the links.
    #[test]
    fn diff_is_deterministic((systems, identities) in world(), seed in any::<u64>()) {
        let w = build(&systems, &identities, false);
        let first = plan(&w, &w.actual, &w.links);
        prop_assert_eq!(&first, &plan(&w, &w.actual, &w.links));
        let mut shuffled = w.links.clone();
        // a cheap deterministic shuffle driven by the seed
        let n = shuffled.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&first, &plan(&w, &w.actual, &shuffled));
        shuffled.reverse();
        prop_assert_eq!(&first, &plan(&w, &w.actual, &shuffled));
    }

    /// Planned a slice of identities at a time (as full plans are, to hold
    /// one slice's desired state only), the plan is the same, in the same
    /// order, whatever the slices.
    #[test]
    fn diff_in_slices_is_diff_at_once((systems, identities) in world(), size in 1usize..5) {
        let w = build(&systems, &identities, false);
        let whole = plan(&w, &w.actual, &w.links);
        let mut differ = tenure_core::plan::Differ::new(&w.infos, &w.actual, &w.links);
        let ids: Vec<_> = w.desired.identities.keys().cloned().collect();
        for chunk in ids.chunks(size) {
            let mut slice = tenure_core::state::DesiredState::default();
            for id in chunk {
                if let Some(d) = w.desired.identities.get(id) {
                    slice.identities.insert(id.clone(), d.clone());
                }
            }
            differ.add(&slice, &w.desired);
        }
        let mut skipped = tenure_core::state::DesiredState::default();
        skipped.skipped = w.desired.skipped.clone();
        differ.add(&skipped, &w.desired);
        prop_assert_eq!(&whole, &differ.finish());
    }

    /// Applying a plan to a correlated state leaves nothing to do.
    #[test]
    fn applying_a_plan_converges((systems, identities) in world()) {
        let w = build(&systems, &identities, true);
        let first = plan(&w, &w.actual, &w.links);
        let (actual, links) = simulate(&w.actual, &w.links, &first.operations);
        let second = plan(&w, &actual, &links);
        prop_assert!(
            second.operations.is_empty(),
            "left to do after applying {:?}:\n{:#?}",
            briefs(&first.operations),
            briefs(&second.operations)
        );
        // and the applied state agrees with policy wherever the system allows it
        check_applied(&w, &actual, &links);
    }

    /// On any state, every planned operation can be carried out (no create of an
    /// existing account, nothing on a missing one), and a fixed point is
    /// reached: accounts that correlation left unattributed may take one more
    /// round (an orphan deleted by policy frees its key for the identity).
    #[test]
    fn plans_are_always_executable_and_settle((systems, identities) in world()) {
        let w = build(&systems, &identities, false);
        let (mut actual, mut links) = (w.actual.clone(), w.links.clone());
        let mut rounds = 0;
        loop {
            let d = plan(&w, &actual, &links);
            if d.operations.is_empty() {
                break;
            }
            rounds += 1;
            prop_assert!(rounds <= 2, "no fixed point after 2 rounds: {:?}", briefs(&d.operations));
            (actual, links) = simulate(&actual, &links, &d.operations);
        }
    }
}

/// After convergence: every evaluated identity's linked account matches its
/// desired state as far as the system's capabilities go.
fn check_applied(w: &World2, actual: &ActualState, links: &[Link]) {
    for (id, di) in &w.desired.identities {
        for (system, info) in &w.infos {
            let caps = info.capabilities;
            let accounts = &actual.systems[system].accounts;
            let mine: Vec<&Account> = links
                .iter()
                .filter(|l| &l.system == system && &l.identity == id)
                .filter_map(|l| accounts.get(&l.account))
                .collect();
            match di.on(system).as_ref() {
                Desired::Account(d) => {
                    if let Some(a) = mine.first() {
                        if caps.disable {
                            assert!(a.enabled, "{id} on {system}: {a:?}");
                        }
                        if caps.memberships {
                            for e in d.entitlements.keys() {
                                assert!(a.entitlements.contains(e), "{id} on {system} lacks {e}");
                            }
                            for e in &a.entitlements {
                                assert!(
                                    d.entitlements.contains_key(e)
                                        || !info.entitlements.contains(e),
                                    "{id} on {system} still has {e}"
                                );
                            }
                        }
                        if caps.update {
                            for (k, v) in &d.attributes {
                                assert_eq!(a.attributes.get(k), Some(v), "{id} on {system}");
                            }
                        }
                    }
                }
                Desired::Restricted {
                    keep_entitlements, ..
                } => {
                    for a in &mine {
                        if caps.disable {
                            assert!(!a.enabled, "{id} on {system}: {a:?}");
                        } else if caps.delete {
                            panic!("{id} on {system}: should have been deleted: {a:?}");
                        }
                        if !keep_entitlements && caps.memberships {
                            assert!(
                                a.entitlements
                                    .iter()
                                    .all(|e| !info.entitlements.contains(e))
                            );
                        }
                    }
                }
                Desired::Absent { .. } => {
                    if caps.delete {
                        assert!(mine.is_empty(), "{id} on {system}: {mine:?}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Determinism through policy evaluation: the order people are given in does
// not matter.

fn people() -> impl Strategy<Value = Vec<Identity>> {
    let one = (
        0..4usize,
        0..3usize,
        proptest::option::of(-40i64..5),
        proptest::option::of(-5i64..5),
        any::<bool>(),
        prop::bool::weighted(0.1),
    );
    proptest::collection::vec(one, 1..8).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(n, (dept, title, end, start, contractor, suspended))| {
                let dept = ["Sales", "Engineering", "Finance", ""][dept];
                let title = ["Sales Manager", "Engineer", "Analyst"][title];
                let mut p = person(&format!("E{n:04}"), &format!("P{n}"), "Test", dept, title);
                if let Some(d) = end {
                    p.record.end_date = Some(today() + Duration::days(d));
                }
                if let Some(d) = start {
                    p.record.start_date = Some(today() + Duration::days(d));
                }
                if contractor {
                    p = p.contractor();
                }
                if suspended {
                    p = p.suspended();
                }
                p.build()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn plans_do_not_depend_on_the_order_of_people(people in people(), rotate in 0..8usize) {
        let w = World::new();
        let mut other = people.clone();
        other.reverse();
        let r = rotate % other.len();
        other.rotate_left(r);
        let a = w.desired(&people, &[], now());
        let b = w.desired(&other, &[], now());
        prop_assert_eq!(&a, &b);
        // and the plans from the same actual state are equal
        let mut w2 = World::new();
        w2.apply(&people, now() - Duration::days(3));
        let p1 = w2.plan(&people, now());
        let p2 = w2.plan(&other, now());
        prop_assert_eq!(p1, p2);
        // applying converges for real policy output too
        w2.apply(&people, now());
        prop_assert!(w2.plan(&other, now()).operations.is_empty());
    }
}

// ---------------------------------------------------------------------------
// The audit chain.

fn text() -> impl Strategy<Value = String> {
    "[a-z:._ 0-9]{0,12}"
}

fn events() -> impl Strategy<Value = Vec<AuditEvent>> {
    proptest::collection::vec(
        (
            0i64..2_000_000_000_000_000,
            text(),
            text(),
            text(),
            text(),
            text(),
        ),
        1..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(
                |(micros, actor, action, subject, reason, detail)| AuditEvent {
                    at: Utc.timestamp_micros(micros).single().unwrap(),
                    actor,
                    action,
                    subject,
                    reason,
                    detail,
                },
            )
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Tamper {
    Edit { record: usize, field: u8 },
    Delete { record: usize },
    Swap { a: usize, b: usize },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 0..9u8).prop_map(|(record, field)| Tamper::Edit { record, field }),
        any::<usize>().prop_map(|record| Tamper::Delete { record }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap { a, b }),
    ]
}

fn edit(r: &mut AuditRecord, field: u8) {
    let flip = |s: &mut String| {
        // change the last character (or add one)
        match s.pop() {
            Some('0') => s.push('1'),
            Some(_) => s.push('0'),
            None => s.push('x'),
        }
    };
    match field {
        0 => r.seq += 1,
        1 => r.event.at += Duration::milliseconds(1),
        2 => flip(&mut r.event.actor),
        3 => flip(&mut r.event.action),
        4 => flip(&mut r.event.subject),
        5 => flip(&mut r.event.reason),
        6 => flip(&mut r.event.detail),
        7 => flip(&mut r.prev_hash),
        _ => flip(&mut r.hash),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_sealed_chain_verifies(events in events(), more in events()) {
        let n = events.len() as u64;
        let log = seal(0, GENESIS, events);
        let v = verify(&log);
        prop_assert!(v.problems.is_empty(), "{:?}", v.problems);
        prop_assert_eq!(v.records, n);
        prop_assert_eq!(v.head, log.last().map(|r| (r.seq, r.hash.clone())));
        // appending continues it
        let head = log.last().map(|r| r.hash.clone()).unwrap();
        let tail = seal(n, &head, more);
        let all: Vec<AuditRecord> = log.into_iter().chain(tail).collect();
        prop_assert!(verify(&all).problems.is_empty());
    }

    #[test]
    fn any_tampering_is_detected(events in events(), t in tamper()) {
        let log = seal(0, GENESIS, events);
        let n = log.len();
        let head = verify(&log).head;
        let mut bad = log.clone();
        match t {
            Tamper::Edit { record, field } => edit(&mut bad[record % n], field),
            Tamper::Delete { record } => {
                let i = record % n;
                bad.remove(i);
                if i == n - 1 {
                    // removing the newest record leaves a valid, shorter chain:
                    // only the head kept elsewhere shows it
                    prop_assert!(verify(&bad).problems.is_empty());
                    prop_assert_ne!(verify(&bad).head, head);
                    return Ok(());
                }
            }
            Tamper::Swap { a, b } => {
                let (a, b) = (a % n, b % n);
                prop_assume!(a != b);
                bad.swap(a, b);
            }
        }
        prop_assert_ne!(&bad, &log);
        let v = verify(&bad);
        prop_assert!(!v.problems.is_empty(), "undetected: {:?}", t);
    }
}
