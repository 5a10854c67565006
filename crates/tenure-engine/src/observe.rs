//! Observation: everything a plan or a report is made from, read once.
//!
//! Reads the identities and links from the store and the actual state from
//! every system (concurrently), evaluates desired state and correlates
//! accounts. A system that cannot be read is left out, with a finding that
//! says why; the others carry on.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::progress::Progress;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tenure_connectors::ConnectorError;
use tenure_core::correlate::correlate;
use tenure_core::plan::{Diff, Differ, Finding, SystemInfo};
use tenure_core::policy::Grant;
use tenure_core::state::{
    AccountQuery, ActualState, Capabilities, Desired, DesiredState, SystemAccounts,
};
use tenure_core::{AccountKey, Identity, IdentityId, Link, SystemId};

/// What Tenure knows and sees at one moment.
pub struct Observation {
    /// Every stored identity, in id order.
    pub identities: Vec<Identity>,
    index: HashMap<IdentityId, usize>,
    /// What each readable system holds.
    pub actual: ActualState,
    /// What each system can do.
    pub capabilities: BTreeMap<SystemId, Capabilities>,
    /// What policy says.
    pub desired: DesiredState,
    /// Links in force after correlation.
    pub links: Vec<Link>,
    /// Links correlation found now.
    pub new_links: Vec<Link>,
    /// Stored links whose account is gone.
    pub stale_links: Vec<(SystemId, AccountKey)>,
    /// Unreadable systems, failed evaluations, ambiguous correlations.
    pub findings: Vec<Finding>,
    /// Why each unreadable system could not be read (the connector's error).
    pub unreadable: BTreeMap<SystemId, String>,
    /// Whether only some identities (and their accounts) were read.
    pub partial: bool,
    /// The observed identities' grants that still count (or are yet to start).
    pub grants: BTreeMap<IdentityId, Vec<Grant>>,
}

/// The identities under a legal hold.
async fn held(engine: &Engine) -> Result<std::collections::BTreeSet<IdentityId>, EngineError> {
    Ok(engine
        .store
        .legal_holds()
        .await?
        .into_iter()
        .map(|h| h.identity)
        .collect())
}

/// A person's display name from the usual attributes.
pub fn label(i: &Identity) -> String {
    let r = &i.record;
    let full = format!(
        "{} {}",
        r.attribute("given_name"),
        r.attribute("family_name")
    );
    let full = full.trim();
    if !full.is_empty() {
        return full.to_owned();
    }
    r.attribute("display_name").to_owned()
}

impl Observation {
    /// Reads everything.
    pub async fn read(
        engine: &Engine,
        progress: &dyn Progress,
    ) -> Result<Observation, EngineError> {
        Observation::read_systems(engine, None, progress).await
    }

    /// Reads the identities and links and, of the systems, only `only`
    /// (every system when `None`); links of systems not read are kept as stored.
    pub async fn read_systems(
        engine: &Engine,
        only: Option<&SystemId>,
        progress: &dyn Progress,
    ) -> Result<Observation, EngineError> {
        let now = engine.clock.now();
        let (identities, stored_links, seen) = read_all(engine, only, progress).await?;
        progress.start("evaluating policy", Some(identities.len() as u64));
        let (desired, evaluation, grants) = evaluate(engine, &identities, false, now).await?;
        progress.advance(identities.len() as u64);
        progress.finish();
        let mut obs = assemble(
            engine,
            identities,
            stored_links,
            desired,
            evaluation,
            seen,
            Vec::new(),
            false,
        );
        obs.grants = grants;
        Ok(obs)
    }

    /// Reads everything, like [`Observation::read_systems`], and makes the
    /// plan's diff a slice of identities at a time ([`Differ`]), so that only
    /// one slice's desired state is held at once, however many people there
    /// are (a full plan's desired state would be the biggest thing in
    /// memory). The observation returned has no desired state.
    ///
    /// Correlation needs the keys everyone's accounts would get only where a
    /// system holds an account that is not linked yet: then a first pass
    /// evaluates everyone for those keys alone.
    pub async fn read_and_diff(
        engine: &Engine,
        only: Option<&SystemId>,
        progress: &dyn Progress,
    ) -> Result<(Observation, Diff), EngineError> {
        let now = engine.clock.now();
        let (identities, stored_links, seen) = read_all(engine, only, progress).await?;
        let grants = live_grants(engine, None, now).await?;
        let held = held(engine).await?;
        let policy = &engine.policy;

        // Keys for correlation, where a system has accounts not linked yet.
        let unlinked: Vec<&SystemId> = seen
            .actual
            .systems
            .iter()
            .filter(|(s, a)| tenure_core::correlate::needs_keys(s, a, &stored_links))
            .map(|(s, _)| s)
            .collect();
        let mut keys: BTreeMap<SystemId, Vec<(IdentityId, AccountKey)>> = BTreeMap::new();
        if !unlinked.is_empty() {
            progress.start(
                "evaluating policy for correlation",
                Some(identities.len() as u64),
            );
            for slice in identities.chunks(SLICE) {
                let (desired, _) = policy.evaluate_all(slice, &grants, now);
                for (id, d) in desired.identities {
                    for system in &unlinked {
                        if let Some(Desired::Account(a)) = d.systems.get(*system) {
                            keys.entry((*system).clone())
                                .or_default()
                                .push((id.clone(), a.key.clone()));
                        }
                    }
                }
                progress.advance(slice.len() as u64);
            }
            progress.finish();
        }
        let Seen {
            actual,
            capabilities,
            mut findings,
            unreadable,
        } = seen;
        let mut links = Vec::new();
        let mut new_links = Vec::new();
        let mut stale_links = Vec::new();
        for (system, accounts) in &actual.systems {
            let system_keys: Vec<(&IdentityId, &AccountKey)> = keys
                .get(system)
                .into_iter()
                .flatten()
                .map(|(i, k)| (i, k))
                .collect();
            let c = tenure_core::correlate::correlate_keys(
                system,
                accounts,
                &stored_links,
                &identities,
                &system_keys,
                policy.correlation(system),
            );
            links.extend(c.links);
            new_links.extend(c.add);
            stale_links.extend(c.remove);
            findings.extend(c.findings);
        }
        drop(keys);
        // Unreadable systems (and systems not read) keep their stored links untouched.
        links.extend(
            stored_links
                .into_iter()
                .filter(|l| !actual.systems.contains_key(&l.system)),
        );
        links.sort();
        let index: HashMap<IdentityId, usize> = identities
            .iter()
            .enumerate()
            .map(|(n, i)| (i.id().clone(), n))
            .collect();
        let by_identity = by_identity(grants.iter().cloned());

        // The diff, a slice at a time.
        let systems: BTreeMap<SystemId, SystemInfo> = policy
            .system_infos(&capabilities)
            .into_iter()
            .filter(|(id, _)| actual.systems.contains_key(id))
            .collect();
        progress.start("evaluating policy", Some(identities.len() as u64));
        // Slices are evaluated on a thread of their own while the slice
        // before is diffed here: the two halves of the work use both cores.
        let identities = Arc::new(identities);
        let grants = Arc::new(grants);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let producer = {
            let (policy, identities, grants) = (
                Arc::clone(&engine.policy),
                Arc::clone(&identities),
                Arc::clone(&grants),
            );
            tokio::task::spawn_blocking(move || {
                for slice in identities.chunks(SLICE) {
                    let evaluated = policy.evaluate_all(slice, &grants, now);
                    if tx.blocking_send((slice.len(), evaluated)).is_err() {
                        return;
                    }
                }
            })
        };
        let mut differ = Differ::new(&systems, &actual, &links);
        while let Some((n, (mut desired, errors))) = rx.recv().await {
            desired.hold(&held);
            findings.extend(errors.into_iter().map(evaluation_failed));
            // A leaver's manager outside the slice, whose account may receive the data.
            let mut context = DesiredState::default();
            let managers: Vec<&IdentityId> = desired
                .identities
                .values()
                .flat_map(|d| d.archive.values())
                .filter_map(|r| r.manager.as_ref())
                .filter(|m| !desired.identities.contains_key(*m))
                .collect();
            for m in managers {
                let Some(manager) = index.get(m).and_then(|n| identities.get(*n)) else {
                    continue;
                };
                let theirs: Vec<&Grant> = by_identity.get(m).into_iter().flatten().collect();
                if let Ok(d) = policy.evaluate(manager, &theirs, now) {
                    context.identities.insert(m.clone(), d);
                }
            }
            context.hold(&held);
            differ.add(&desired, &context);
            progress.advance(n as u64);
        }
        producer.await.map_err(|e| EngineError::Internal {
            what: format!("evaluating policy for everyone: {e}"),
        })?;
        let identities = Arc::try_unwrap(identities).unwrap_or_else(|shared| (*shared).clone());
        let d = differ.finish();
        progress.finish();
        let obs = Observation {
            identities,
            index,
            actual,
            capabilities,
            desired: DesiredState::default(),
            links,
            new_links,
            stale_links,
            findings,
            unreadable,
            partial: false,
            grants: by_identity,
        };
        Ok((obs, d))
    }

    /// Reads what a plan for these identities alone needs: their links and,
    /// of each system, only the accounts that can concern them (the accounts
    /// linked to them, the keys their desired accounts would have, and on
    /// systems that correlate by an attribute the accounts holding one of
    /// their values). Accounts linked to anyone else are left out, and
    /// accounts that turn out to be nobody's are not looked at: finding
    /// orphans is a full reconciliation's job.
    pub async fn read_for(
        engine: &Engine,
        identities: Vec<Identity>,
        progress: &dyn Progress,
    ) -> Result<Observation, EngineError> {
        let now = engine.clock.now();
        let ids: Vec<IdentityId> = identities.iter().map(|i| i.id().clone()).collect();
        let stored_links = engine.store.links_of_identities(&ids).await?;
        progress.start("evaluating policy", Some(identities.len() as u64));
        let (desired, evaluation, grants) = evaluate(engine, &identities, true, now).await?;
        progress.advance(identities.len() as u64);
        progress.finish();
        let mut queries: BTreeMap<&SystemId, AccountQuery> = engine
            .connectors
            .keys()
            .map(|s| (s, AccountQuery::default()))
            .collect();
        for l in &stored_links {
            if let Some(q) = queries.get_mut(&l.system) {
                q.keys.insert(l.account.clone());
            }
        }
        for d in desired.identities.values() {
            for (system, want) in &d.systems {
                if let (Some(q), Desired::Account(a)) = (queries.get_mut(system), want) {
                    q.keys.insert(a.key.clone());
                }
            }
        }
        for (system, q) in &mut queries {
            if let Some(rule) = engine.policy.correlation(system) {
                let values = identities
                    .iter()
                    .map(|i| {
                        if rule.identity == "id" {
                            i.id().as_str()
                        } else {
                            i.record.attribute(&rule.identity)
                        }
                    })
                    .filter(|v| !v.trim().is_empty())
                    .map(str::to_owned)
                    .collect();
                q.attribute = Some((rule.account.clone(), values));
            }
        }
        progress.start("reading accounts", Some(queries.len() as u64));
        let reads = futures::future::join_all(queries.into_iter().filter_map(|(id, q)| {
            let c = engine.connectors.get(id)?;
            Some(async move {
                let r = c.read_accounts_matching(&q).await;
                (id.clone(), c.capabilities(), r)
            })
        }))
        .await;
        progress.finish();
        let mine: HashSet<&IdentityId> = ids.iter().collect();
        let mut others: Vec<Link> = Vec::new();
        // Leavers whose data goes to their manager: the manager's accounts
        // are named by their links, which this plan must know.
        let mut managers: Vec<IdentityId> = desired
            .identities
            .values()
            .flat_map(|d| d.archive.values())
            .filter_map(|r| r.manager.clone())
            .filter(|m| !mine.contains(m))
            .collect();
        managers.sort();
        managers.dedup();
        if !managers.is_empty() {
            others.extend(engine.store.links_of_identities(&managers).await?);
        }
        let mut seen = Seen::default();
        for (id, caps, r) in reads {
            match r {
                Ok(mut accounts) => {
                    // Accounts someone else holds are not this plan's business.
                    let keys: Vec<&AccountKey> = accounts.accounts.keys().collect();
                    let owners = engine.store.links_of_accounts(&id, &keys).await?;
                    for l in owners {
                        if !mine.contains(&l.identity) {
                            // Known as held, so that nobody here is given its key.
                            accounts.accounts.remove(&l.account);
                            others.push(l);
                        }
                    }
                    seen.read(id, caps, accounts);
                }
                Err(e) => seen.unreadable(id, caps, &e),
            }
        }
        let mut obs = assemble(
            engine,
            identities,
            stored_links,
            desired,
            evaluation,
            seen,
            others,
            true,
        );
        obs.grants = grants;
        Ok(obs)
    }

    /// Looks an identity up.
    pub fn identity(&self, id: &IdentityId) -> Option<&Identity> {
        self.index.get(id).and_then(|n| self.identities.get(*n))
    }
}

/// Every identity and stored link, and every system's accounts (only
/// `only`'s when given), read concurrently.
async fn read_all(
    engine: &Engine,
    only: Option<&SystemId>,
    progress: &dyn Progress,
) -> Result<(Vec<Identity>, Vec<Link>, Seen), EngineError> {
    progress.start("reading identities", None);
    let identities = engine.store.identities().await?;
    let stored_links = engine.store.links().await?;
    progress.finish();
    let connectors: Vec<_> = engine
        .connectors
        .iter()
        .filter(|(id, _)| only.is_none_or(|o| o == *id))
        .collect();
    progress.start("reading systems", Some(connectors.len() as u64));
    let reads = futures::future::join_all(connectors.into_iter().map(|(id, c)| async move {
        let r = c.read_accounts().await;
        (id.clone(), c.capabilities(), r)
    }))
    .await;
    progress.finish();
    let mut seen = Seen::default();
    for (id, caps, r) in reads {
        match r {
            Ok(accounts) => seen.read(id, caps, accounts),
            Err(e) => seen.unreadable(id, caps, &e),
        }
    }
    Ok((identities, stored_links, seen))
}

/// What the systems answered: their accounts, or why they could not be read.
#[derive(Default)]
struct Seen {
    actual: ActualState,
    capabilities: BTreeMap<SystemId, Capabilities>,
    findings: Vec<Finding>,
    unreadable: BTreeMap<SystemId, String>,
}

impl Seen {
    fn read(&mut self, id: SystemId, caps: Capabilities, accounts: SystemAccounts) {
        self.capabilities.insert(id.clone(), caps);
        self.actual.systems.insert(id, accounts);
    }

    fn unreadable(&mut self, id: SystemId, caps: Capabilities, e: &ConnectorError) {
        self.capabilities.insert(id.clone(), caps);
        self.findings.push(Finding::Unsupported {
            system: id.clone(),
            message: format!("could not be read, so it is left out: {e}"),
        });
        self.unreadable.insert(id, e.to_string());
    }
}

/// Policy for these identities (`some`: not everyone), their grants
/// included and legal holds applied; a finding for each identity whose
/// evaluation failed; and their grants by identity.
async fn evaluate(
    engine: &Engine,
    identities: &[Identity],
    some: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(DesiredState, Vec<Finding>, BTreeMap<IdentityId, Vec<Grant>>), EngineError> {
    let ids: Vec<IdentityId>;
    let of = if some {
        ids = identities.iter().map(|i| i.id().clone()).collect();
        Some(ids.as_slice())
    } else {
        None
    };
    let grants = live_grants(engine, of, now).await?;
    let (mut desired, errors) = engine.policy.evaluate_all(identities, &grants, now);
    desired.hold(&held(engine).await?);
    let findings = errors.into_iter().map(evaluation_failed).collect();
    Ok((desired, findings, by_identity(grants)))
}

/// The grants that count at `now` (or are yet to start) of these identities (of everyone: `None`).
async fn live_grants(
    engine: &Engine,
    of: Option<&[IdentityId]>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Grant>, EngineError> {
    Ok(engine
        .store
        .live_grants(of, now)
        .await?
        .into_iter()
        .map(|g| g.grant)
        .collect())
}

/// Grants by the identity they give to.
fn by_identity(grants: impl IntoIterator<Item = Grant>) -> BTreeMap<IdentityId, Vec<Grant>> {
    let mut out: BTreeMap<IdentityId, Vec<Grant>> = BTreeMap::new();
    for g in grants {
        out.entry(g.identity.clone()).or_default().push(g);
    }
    out
}

/// The finding for an identity whose evaluation failed (its accounts are left as they are).
fn evaluation_failed(e: tenure_core::policy::EvalError) -> Finding {
    Finding::EvaluationFailed {
        message: format!("{} ({}): {}", e.what, e.location, e.message),
        identity: e.identity,
    }
}

/// How many identities a full plan evaluates and diffs at a time.
const SLICE: usize = 2048;

/// Correlates what was read with the identities and makes the observation.
/// With `partial` (some identities only), accounts that matched none of them
/// are dropped: they were read only because they might have, and are left
/// for reconciliation (ambiguous ones stay, reported as a full plan reports
/// them). `held_by_others` are links of accounts read that belong to people
/// not observed: known as held, so that nobody observed is given their keys.
#[allow(clippy::too_many_arguments)]
fn assemble(
    engine: &Engine,
    identities: Vec<Identity>,
    stored_links: Vec<Link>,
    desired: DesiredState,
    evaluation: Vec<Finding>,
    seen: Seen,
    held_by_others: Vec<Link>,
    partial: bool,
) -> Observation {
    let Seen {
        mut actual,
        capabilities,
        mut findings,
        unreadable,
    } = seen;
    findings.extend(evaluation);
    let mut links = Vec::new();
    let mut new_links = Vec::new();
    let mut stale_links = Vec::new();
    for (system, accounts) in &mut actual.systems {
        let c = correlate(
            system,
            accounts,
            &stored_links,
            &identities,
            &desired,
            engine.policy.correlation(system),
        );
        if partial {
            let matched: HashSet<&AccountKey> = c.links.iter().map(|l| &l.account).collect();
            let ambiguous: HashSet<&AccountKey> = c
                .findings
                .iter()
                .filter_map(|f| match f {
                    Finding::Ambiguous { account, .. } => Some(account),
                    _ => None,
                })
                .collect();
            accounts
                .accounts
                .retain(|k, _| matched.contains(k) || ambiguous.contains(k));
        }
        links.extend(c.links);
        new_links.extend(c.add);
        stale_links.extend(c.remove);
        findings.extend(c.findings);
    }
    // Unreadable systems (and systems not read) keep their stored links untouched.
    links.extend(
        stored_links
            .into_iter()
            .filter(|l| !actual.systems.contains_key(&l.system)),
    );
    links.extend(held_by_others);
    links.sort();
    let index = identities
        .iter()
        .enumerate()
        .map(|(n, i)| (i.id().clone(), n))
        .collect();
    Observation {
        identities,
        index,
        actual,
        capabilities,
        desired,
        links,
        new_links,
        stale_links,
        findings,
        unreadable,
        partial,
        grants: BTreeMap::new(),
    }
}
