//! Observation: everything a plan or a report is made from, read once.
//!
//! Reads the identities and links from the store and the actual state from
//! every system (concurrently), evaluates desired state and correlates
//! accounts. A system that cannot be read is left out, with a finding that
//! says why; the others carry on.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::progress::Progress;
use std::collections::{BTreeMap, HashMap};
use tenure_core::correlate::correlate;
use tenure_core::plan::Finding;
use tenure_core::state::{ActualState, Capabilities, DesiredState};
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
        let mut actual = ActualState::default();
        let mut capabilities = BTreeMap::new();
        let mut findings = Vec::new();
        let mut unreadable = BTreeMap::new();
        for (id, caps, r) in reads {
            capabilities.insert(id.clone(), caps);
            match r {
                Ok(accounts) => {
                    actual.systems.insert(id, accounts);
                }
                Err(e) => {
                    findings.push(Finding::Unsupported {
                        system: id.clone(),
                        message: format!("could not be read, so it is left out: {e}"),
                    });
                    unreadable.insert(id, e.to_string());
                }
            }
        }
        progress.start("evaluating policy", Some(identities.len() as u64));
        let (desired, errors) = engine.policy.evaluate_all(&identities, &[], now);
        progress.advance(identities.len() as u64);
        progress.finish();
        for e in errors {
            let message = format!("{} ({}): {}", e.what, e.location, e.message);
            findings.push(Finding::EvaluationFailed {
                identity: e.identity,
                message,
            });
        }
        let mut links = Vec::new();
        let mut new_links = Vec::new();
        let mut stale_links = Vec::new();
        for (system, accounts) in &actual.systems {
            let c = correlate(
                system,
                accounts,
                &stored_links,
                &identities,
                &desired,
                engine.policy.correlation(system),
            );
            links.extend(c.links);
            new_links.extend(c.add);
            stale_links.extend(c.remove);
            findings.extend(c.findings);
        }
        // Unreadable systems keep their stored links untouched.
        links.extend(
            stored_links
                .into_iter()
                .filter(|l| !actual.systems.contains_key(&l.system)),
        );
        links.sort();
        let index = identities
            .iter()
            .enumerate()
            .map(|(n, i)| (i.id().clone(), n))
            .collect();
        Ok(Observation {
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
        })
    }

    /// Looks an identity up.
    pub fn identity(&self, id: &IdentityId) -> Option<&Identity> {
        self.index.get(id).and_then(|n| self.identities.get(*n))
    }
}
