//! Compiled policy: validation of the whole configuration, and evaluation of
//! desired state for an identity.
//!
//! [`Policy::compile`] checks everything `tenure check` promises (references
//! between roles, rules and systems, role cycles, CEL syntax and the attributes
//! CEL expressions use, deprovisioning steps) and reports every problem with
//! its file, line and column. A [`Policy`] exists only for a valid
//! configuration, so an invalid one can never be applied.
//!
//! Evaluation is pure: `now` is a parameter.

use crate::config::{
    Config, ConfigError, ConfigErrors, CorrelationConfig, DeprovisioningMode, Location,
    RESERVED_ATTRIBUTES, SystemConfig, declared_attributes, split_entitlement,
};
use crate::identity::{EmploymentType, Identity, LifecycleStatus};
use crate::ids::{AccountKey, EntitlementName, IdentityId, PolicyId, RoleId, RuleId, SystemId};
use crate::plan::{Reason, StepAction, SystemInfo, fingerprint};
use crate::state::{ArchiveRequest, Desired, DesiredAccount, DesiredIdentity, DesiredState};
use cel::common::ast::{EntryExpr, Expr as CelExpr, LiteralValue};
use cel::{Context, Env, IdedExpr, Program, Value};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A grant held outside birthright rules (an approved request, a manual grant),
/// with its validity window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who holds it.
    pub identity: IdentityId,
    /// The role granted.
    pub role: RoleId,
    /// Why, in words (`request #12 approved by E1001`).
    pub reason: String,
    /// From when (inclusive); none = already.
    pub valid_from: Option<DateTime<Utc>>,
    /// Until when (exclusive); none = no end.
    pub valid_until: Option<DateTime<Utc>>,
}

impl Grant {
    /// Whether the grant is in force at `now`.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.valid_from.is_none_or(|f| f <= now) && self.valid_until.is_none_or(|u| now < u)
    }
}

/// Evaluating policy for one identity failed: the identity is left alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("identity {identity}: {what} ({location}): {message}")]
pub struct EvalError {
    /// Whose evaluation failed.
    pub identity: IdentityId,
    /// Which expression (`rule sales`, `system crm key`, …).
    pub what: String,
    /// Where the expression is written.
    pub location: Location,
    /// What went wrong.
    pub message: String,
}

struct Expr {
    program: Program,
    what: String,
    location: Location,
    /// The expression as written (shown in traces).
    text: String,
}

struct CompiledRule {
    id: RuleId,
    when: Expr,
    roles: Vec<RoleId>,
}

/// Something a role gives: an account on a system, perhaps with an entitlement.
#[derive(Debug, Clone)]
struct Gift {
    path: Vec<RoleId>,
    system: SystemId,
    entitlement: Option<EntitlementName>,
}

struct CompiledSystem {
    name: String,
    key: Expr,
    attributes: Vec<(String, Expr)>,
    correlation: Option<CorrelationConfig>,
    info: SystemInfo,
}

struct CompiledDeprovisioning {
    id: PolicyId,
    when: Expr,
    mode: DeprovisioningMode,
    steps: Vec<(i64, StepAction)>,
    /// (system, the policy's step) → what it does there instead (`None`: nothing).
    overrides: BTreeMap<(SystemId, StepAction), Option<StepAction>>,
}

/// A validated, compiled configuration.
pub struct Policy {
    config: Config,
    env: Arc<Env>,
    rules: Vec<CompiledRule>,
    gifts: BTreeMap<RoleId, Vec<Gift>>,
    /// Each role's own gifts and the roles it contains (for traces).
    direct: Direct,
    systems: BTreeMap<SystemId, CompiledSystem>,
    deprovisioning: Vec<CompiledDeprovisioning>,
    reconcile: BTreeMap<SystemId, croner::Cron>,
    service: ServiceTimings,
    fingerprint: String,
    /// Every role each role reaches (itself and the roles it contains, at any depth).
    closure: BTreeMap<RoleId, BTreeSet<RoleId>>,
    /// Roles kept for a while after a mover stops qualifying for them.
    grace: BTreeMap<RoleId, chrono::Duration>,
    /// Who must have an end date.
    require_end_date: Option<Expr>,
    /// How long before access ends its holder is reminded.
    remind_before: chrono::Duration,
}

/// `[service]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceTimings {
    /// How often the scheduler looks for work.
    pub tick: chrono::Duration,
    /// Consecutive failed batches before a system is quarantined.
    pub quarantine_after: u64,
    /// How often a quarantined system is tried again.
    pub quarantine_retry: chrono::Duration,
}

/// The default deprovisioning when no policy matches a leaver: everything at once.
pub const DEFAULT_DEPROVISIONING: &str = "default-immediate";

fn cel_env() -> Result<Env, String> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .map_err(|e| e.to_string())?;
    env.add_extension(cel::extensions::lists)
        .map_err(|e| e.to_string())?;
    Ok(env)
}

/// Checks a system's connector settings; supplied by the caller (the connectors crate) so
/// that the core knows no connector.
pub type SettingsCheck<'a> = &'a dyn Fn(&SystemConfig) -> Vec<String>;

impl Policy {
    /// Validates and compiles a configuration. `check_settings` validates each
    /// system's connector kind and settings and returns its problems.
    pub fn compile(
        config: Config,
        check_settings: SettingsCheck<'_>,
    ) -> Result<Policy, ConfigErrors> {
        let mut errs: Vec<ConfigError> = Vec::new();
        let env = match cel_env() {
            Ok(e) => Arc::new(e),
            Err(m) => {
                return Err(ConfigErrors(vec![ConfigError {
                    location: Location {
                        file: "<cel>".into(),
                        line: 1,
                        column: 1,
                    },
                    message: format!("cannot set up the CEL environment: {m}"),
                }]));
            }
        };
        let loc = |file: usize, offset: usize| config.location(file, offset);

        // Duplicate ids.
        fn dups(
            items: impl Iterator<Item = (String, Location)>,
            kind: &str,
            errs: &mut Vec<ConfigError>,
        ) {
            let mut seen: BTreeMap<String, Location> = BTreeMap::new();
            for (id, l) in items {
                if let Some(first) = seen.get(&id) {
                    errs.push(ConfigError {
                        location: l,
                        message: format!("{kind} {id:?} is already defined at {first}"),
                    });
                } else {
                    seen.insert(id, l);
                }
            }
        }
        dups(
            config
                .sources
                .iter()
                .map(|s| (s.item.id.to_string(), loc(s.file, s.span.start))),
            "source",
            &mut errs,
        );
        dups(
            config
                .systems
                .iter()
                .map(|s| (s.item.id.to_string(), loc(s.file, s.span.start))),
            "system",
            &mut errs,
        );
        dups(
            config
                .roles
                .iter()
                .map(|s| (s.item.id.to_string(), loc(s.file, s.span.start))),
            "role",
            &mut errs,
        );
        dups(
            config
                .rules
                .iter()
                .map(|s| (s.item.id.to_string(), loc(s.file, s.span.start))),
            "rule",
            &mut errs,
        );
        dups(
            config
                .deprovisioning
                .iter()
                .map(|s| (s.item.id.to_string(), loc(s.file, s.span.start))),
            "deprovisioning policy",
            &mut errs,
        );

        // Notifications, webhooks and security event tokens.
        errs.extend(crate::notify_config::check(&config));

        // Guard.
        let g = config.guard;
        if !(g.max_deprovision_percent > 0.0 && g.max_deprovision_percent <= 100.0) {
            errs.push(ConfigError {
                location: Location {
                    file: "[guard]".into(),
                    line: 1,
                    column: 1,
                },
                message: format!(
                    "max_deprovision_percent must be above 0 and at most 100, not {}",
                    g.max_deprovision_percent
                ),
            });
        }

        // Sources.
        let scim_sources = config
            .sources
            .iter()
            .filter(|s| s.item.format == crate::config::SourceFormat::Scim)
            .count();
        for s in &config.sources {
            let l = loc(s.file, s.span.start);
            let scim = s.item.format == crate::config::SourceFormat::Scim;
            if scim && s.item.path.is_some() {
                errs.push(ConfigError {
                    location: l.clone(),
                    message: format!(
                        "source {}: a SCIM source is pushed to `tenure serve` and has no `path`",
                        s.item.id
                    ),
                });
            }
            if scim && scim_sources > 1 {
                errs.push(ConfigError {
                    location: l.clone(),
                    message: format!(
                        "source {}: only one SCIM source may be configured ({scim_sources} are)",
                        s.item.id
                    ),
                });
            }
            if !scim && s.item.deactivate != crate::config::DeactivatePolicy::default() {
                errs.push(ConfigError {
                    location: l.clone(),
                    message: format!(
                        "source {}: `deactivate` applies only to format = \"scim\"",
                        s.item.id
                    ),
                });
            }
            if scim && s.item.deactivation_window_minutes == 0 {
                errs.push(ConfigError {
                    location: l.clone(),
                    message: format!(
                        "source {}: deactivation_window_minutes must be at least 1",
                        s.item.id
                    ),
                });
            }
            for a in s.item.attributes.keys() {
                if RESERVED_ATTRIBUTES.contains(&a.as_str()) {
                    errs.push(ConfigError {
                        location: l.clone(),
                        message: format!(
                            "source {}: attribute {a:?} is reserved (reserved: {})",
                            s.item.id,
                            RESERVED_ATTRIBUTES.join(", ")
                        ),
                    });
                }
                if !is_cel_ident(a) {
                    errs.push(ConfigError {
                        location: l.clone(),
                        message: format!(
                            "source {}: attribute name {a:?} must be letters, digits and _ (it is used in CEL as identity.{a})",
                            s.item.id
                        ),
                    });
                }
            }
            for r in &s.item.required {
                if !s.item.attributes.contains_key(r) {
                    errs.push(ConfigError {
                        location: l.clone(),
                        message: format!(
                            "source {}: required attribute {r:?} is not in [source.attributes]",
                            s.item.id
                        ),
                    });
                }
            }
            for (raw, t) in s.item.employment_types.iter().chain([(
                &"default_employment_type".to_owned(),
                &s.item.default_employment_type,
            )]) {
                if EmploymentType::parse(t).is_none() {
                    errs.push(ConfigError {
                        location: l.clone(),
                        message: format!(
                            "source {}: {raw:?} maps to unknown employment type {t:?} (known: {})",
                            s.item.id,
                            EmploymentType::ALL.map(|t| t.as_str()).join(", ")
                        ),
                    });
                }
            }
        }
        let attributes = declared_attributes(&config);

        let compile = |src: &toml::Spanned<String>,
                       file: usize,
                       what: String,
                       errs: &mut Vec<ConfigError>| {
            let location = loc(file, src.span().start);
            match env.compile(src.get_ref()) {
                Ok(program) => {
                    // Walked with scopes, so that comprehension variables
                    // (`identity.groups.exists(g, g == "x")`) are not taken for
                    // unknown variables, and statically, so that an undeclared
                    // attribute is found even where evaluation would short-circuit.
                    let mut refs = References::default();
                    refs.walk(program.expression(), &mut Vec::new());
                    if !refs.unknown_variables.is_empty() {
                        errs.push(ConfigError {
                            location: location.clone(),
                            message: format!(
                                "{what}: unknown variable {} (expressions can use `identity`)",
                                refs.unknown_variables
                                    .into_iter()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                        return None;
                    }
                    for k in refs.attributes {
                        if !attributes.contains(&k) && !RESERVED_ATTRIBUTES.contains(&k.as_str()) {
                            errs.push(ConfigError {
                                location: location.clone(),
                                message: format!(
                                    "{what}: identity.{k} is not an attribute any source declares (declared: {})",
                                    attributes.iter().map(String::as_str).chain(RESERVED_ATTRIBUTES).collect::<Vec<_>>().join(", ")
                                ),
                            });
                        }
                    }
                    Some(Expr {
                        program,
                        what,
                        location,
                        text: src.get_ref().clone(),
                    })
                }
                Err(e) => {
                    errs.push(ConfigError {
                        location,
                        message: format!("{what}: invalid CEL: {}", e.to_string().trim()),
                    });
                    None
                }
            }
        };

        // Systems.
        let mut reconcile: BTreeMap<SystemId, croner::Cron> = BTreeMap::new();
        let service_at = config.service_at.clone().unwrap_or(Location {
            file: "<defaults>".into(),
            line: 1,
            column: 1,
        });
        let mut delay = |what: &str, v: &str, min: i64| match crate::config::parse_delay(v) {
            Ok(secs) if secs >= min => chrono::Duration::seconds(secs),
            Ok(_) => {
                errs.push(ConfigError {
                    location: service_at.clone(),
                    message: format!("[service] {what} must be at least {min}s"),
                });
                chrono::Duration::seconds(min)
            }
            Err(m) => {
                errs.push(ConfigError {
                    location: service_at.clone(),
                    message: format!("[service] {what}: {m}"),
                });
                chrono::Duration::seconds(min)
            }
        };
        let service = ServiceTimings {
            tick: delay("tick", &config.service.tick, 1),
            quarantine_after: config.service.quarantine_after.max(1),
            quarantine_retry: delay("quarantine_retry", &config.service.quarantine_retry, 1),
        };
        let mut systems = BTreeMap::new();
        for s in &config.systems {
            let sys = &s.item;
            let l = loc(s.file, s.span.start);
            for problem in check_settings(sys) {
                let at = sys
                    .settings
                    .as_ref()
                    .map(|t| loc(s.file, t.span().start))
                    .unwrap_or_else(|| l.clone());
                errs.push(ConfigError {
                    location: at,
                    message: format!("system {}: {problem}", sys.id),
                });
            }
            let key = compile(
                &sys.account.key,
                s.file,
                format!("system {} account key", sys.id),
                &mut errs,
            );
            let mut attrs = Vec::new();
            for (name, src) in &sys.account.attributes {
                if let Some(e) = compile(
                    src,
                    s.file,
                    format!("system {} attribute {name}", sys.id),
                    &mut errs,
                ) {
                    attrs.push((name.clone(), e));
                }
            }
            if let Some(c) = &sys.correlation {
                let ok_identity = c.identity == "id" || attributes.contains(&c.identity);
                if !ok_identity {
                    errs.push(ConfigError {
                        location: l.clone(),
                        message: format!(
                            "system {}: correlation identity attribute {:?} is not declared by any source",
                            sys.id, c.identity
                        ),
                    });
                }
                if c.account != "key" && !sys.account.attributes.contains_key(&c.account) {
                    errs.push(ConfigError {
                        location: l.clone(),
                        message: format!(
                            "system {}: correlation account attribute {:?} is not a mapped account attribute (or `key`)",
                            sys.id, c.account
                        ),
                    });
                }
            }
            if let Some(w) = &sys.archive_webhook
                && !config
                    .webhooks
                    .iter()
                    .any(|h| h.item.id.as_str() == w.get_ref().as_str())
            {
                errs.push(ConfigError {
                    location: loc(s.file, w.span().start),
                    message: format!(
                        "system {}: archive_webhook {:?} is not a [[webhook]] id",
                        sys.id,
                        w.get_ref()
                    ),
                });
            }
            if let Some(r) = &sys.reconcile {
                match std::str::FromStr::from_str(r.get_ref().as_str()) {
                    Ok(cron) => {
                        reconcile.insert(sys.id.clone(), cron);
                    }
                    Err(e) => errs.push(ConfigError {
                        location: loc(s.file, r.span().start),
                        message: format!(
                            "system {}: reconcile {:?} is not a cron pattern: {e}",
                            sys.id,
                            r.get_ref()
                        ),
                    }),
                }
            }
            if let Some(key) = key {
                systems.insert(
                    sys.id.clone(),
                    CompiledSystem {
                        name: sys.name.clone().unwrap_or_else(|| sys.id.to_string()),
                        key,
                        attributes: attrs,
                        correlation: sys.correlation.clone(),
                        info: SystemInfo {
                            capabilities: crate::state::Capabilities::FULL,
                            orphans: sys.orphans,
                            entitlements: sys.entitlements.iter().cloned().collect(),
                        },
                    },
                );
            }
        }
        let declared_systems: BTreeSet<&SystemId> =
            config.systems.iter().map(|s| &s.item.id).collect();

        // Roles: direct gifts and containment.
        let mut direct: Direct = BTreeMap::new();
        let role_ids: BTreeSet<String> =
            config.roles.iter().map(|r| r.item.id.to_string()).collect();
        for r in &config.roles {
            let role = &r.item;
            let mut gifts = Vec::new();
            for a in &role.accounts {
                let at = loc(r.file, a.span().start);
                match SystemId::new(a.get_ref().as_str()) {
                    Ok(id) if declared_systems.contains(&id) => gifts.push((id, None)),
                    _ => errs.push(ConfigError {
                        location: at,
                        message: format!(
                            "role {}: account on unknown system {:?}",
                            role.id,
                            a.get_ref()
                        ),
                    }),
                }
            }
            for e in &role.entitlements {
                let at = loc(r.file, e.span().start);
                match split_entitlement(e.get_ref()) {
                    Ok((sys, ent)) => match config.system(&sys) {
                        None => errs.push(ConfigError {
                            location: at,
                            message: format!("role {}: entitlement {:?} is on unknown system {sys}", role.id, e.get_ref()),
                        }),
                        Some(sc) if !sc.entitlements.contains(&ent) => errs.push(ConfigError {
                            location: at,
                            message: format!(
                                "role {}: entitlement {:?} is not declared in system {sys}'s entitlements",
                                role.id,
                                ent.as_str()
                            ),
                        }),
                        Some(_) => gifts.push((sys, Some(ent))),
                    },
                    Err(m) => errs.push(ConfigError { location: at, message: format!("role {}: {m}", role.id) }),
                }
            }
            let mut sub = Vec::new();
            for c in &role.roles {
                let at = loc(r.file, c.span().start);
                match RoleId::new(c.get_ref().as_str()) {
                    Ok(id) if role_ids.contains(id.as_str()) => sub.push(id),
                    _ => errs.push(ConfigError {
                        location: at,
                        message: format!(
                            "role {}: contains unknown role {:?}",
                            role.id,
                            c.get_ref()
                        ),
                    }),
                }
            }
            direct.insert(role.id.clone(), (gifts, sub));
        }
        // Closure with cycle detection.
        let mut gifts: BTreeMap<RoleId, Vec<Gift>> = BTreeMap::new();
        for r in &config.roles {
            let mut out = Vec::new();
            let mut stack = vec![r.item.id.clone()];
            if let Err(cycle) = expand(&direct, &mut stack, &mut out) {
                errs.push(ConfigError {
                    location: loc(r.file, r.span.start),
                    message: format!("role {} contains itself: {}", r.item.id, cycle.join(" → ")),
                });
            }
            gifts.insert(r.item.id.clone(), out);
        }
        let mut closure: BTreeMap<RoleId, BTreeSet<RoleId>> = BTreeMap::new();
        for r in &config.roles {
            let mut reached = BTreeSet::new();
            let mut todo = vec![r.item.id.clone()];
            while let Some(role) = todo.pop() {
                if reached.insert(role.clone())
                    && let Some((_, sub)) = direct.get(&role)
                {
                    todo.extend(sub.iter().cloned());
                }
            }
            closure.insert(r.item.id.clone(), reached);
        }
        let mut grace = BTreeMap::new();
        for r in &config.roles {
            let Some(g) = &r.item.grace else { continue };
            match crate::config::parse_delay(g.get_ref()) {
                Ok(secs) if secs > 0 => {
                    grace.insert(r.item.id.clone(), chrono::Duration::seconds(secs));
                }
                Ok(_) => errs.push(ConfigError {
                    location: loc(r.file, g.span().start),
                    message: format!(
                        "role {}: grace must be longer than 0 (leave it out for none)",
                        r.item.id
                    ),
                }),
                Err(m) => errs.push(ConfigError {
                    location: loc(r.file, g.span().start),
                    message: format!("role {}: grace: {m}", r.item.id),
                }),
            }
        }

        // Expiring access.
        let mut require_end_date = None;
        let mut remind_before = chrono::Duration::days(7);
        if let Some(x) = &config.expiry {
            if let Some(cond) = &x.item.require_end_date {
                require_end_date = compile(
                    cond,
                    x.file,
                    "[expiry] require_end_date".to_owned(),
                    &mut errs,
                );
            }
            if let Some(r) = &x.item.remind_before {
                match crate::config::parse_delay(r.get_ref()) {
                    Ok(secs) if secs > 0 => remind_before = chrono::Duration::seconds(secs),
                    Ok(_) => errs.push(ConfigError {
                        location: loc(x.file, r.span().start),
                        message: "[expiry] remind_before must be longer than 0".to_owned(),
                    }),
                    Err(m) => errs.push(ConfigError {
                        location: loc(x.file, r.span().start),
                        message: format!("[expiry] remind_before: {m}"),
                    }),
                }
            }
        }

        // Rules.
        let mut rules = Vec::new();
        for r in &config.rules {
            let rule = &r.item;
            let when = compile(&rule.when, r.file, format!("rule {}", rule.id), &mut errs);
            let mut roles = Vec::new();
            for role in &rule.roles {
                match RoleId::new(role.get_ref().as_str()) {
                    Ok(id) if role_ids.contains(id.as_str()) => roles.push(id),
                    _ => errs.push(ConfigError {
                        location: loc(r.file, role.span().start),
                        message: format!("rule {}: unknown role {:?}", rule.id, role.get_ref()),
                    }),
                }
            }
            if let Some(when) = when {
                rules.push(CompiledRule {
                    id: rule.id.clone(),
                    when,
                    roles,
                });
            }
        }

        // Deprovisioning.
        let mut deprovisioning = Vec::new();
        for d in &config.deprovisioning {
            let p = &d.item;
            let when = compile(
                &p.when,
                d.file,
                format!("deprovisioning {}", p.id),
                &mut errs,
            );
            let mut steps = Vec::new();
            match p.mode {
                DeprovisioningMode::Immediate => {
                    if !p.steps.is_empty() {
                        errs.push(ConfigError {
                            location: loc(d.file, d.span.start),
                            message: format!("deprovisioning {}: an immediate policy has no steps (use mode = \"staged\")", p.id),
                        });
                    }
                }
                DeprovisioningMode::Staged => {
                    if p.steps.is_empty() {
                        errs.push(ConfigError {
                            location: loc(d.file, d.span.start),
                            message: format!("deprovisioning {}: a staged policy needs at least one [[deprovisioning.step]]", p.id),
                        });
                    }
                    let mut last = 0;
                    for s in &p.steps {
                        let at = loc(d.file, s.after.span().start);
                        match crate::config::parse_delay(s.after.get_ref()) {
                            Ok(secs) if secs < last => errs.push(ConfigError {
                                location: at,
                                message: format!(
                                    "deprovisioning {}: steps must be in order of their delay",
                                    p.id
                                ),
                            }),
                            Ok(secs) => {
                                last = secs;
                                steps.push((secs, s.action));
                            }
                            Err(m) => errs.push(ConfigError {
                                location: at,
                                message: format!("deprovisioning {}: {m}", p.id),
                            }),
                        }
                    }
                }
            }
            // Per-system overrides.
            let mut overrides: BTreeMap<(SystemId, StepAction), Option<StepAction>> =
                BTreeMap::new();
            let mut first_at: BTreeMap<(SystemId, StepAction), Location> = BTreeMap::new();
            let has_step = |a: StepAction| match p.mode {
                DeprovisioningMode::Immediate => a == StepAction::Delete,
                DeprovisioningMode::Staged => p.steps.iter().any(|s| s.action == a),
            };
            let known_actions = StepAction::ALL.map(StepAction::as_str).join(", ");
            for o in &p.overrides {
                let system_at = loc(d.file, o.system.span().start);
                let system = match SystemId::new(o.system.get_ref().as_str()) {
                    Ok(id) if declared_systems.contains(&id) => Some(id),
                    _ => {
                        errs.push(ConfigError {
                            location: system_at.clone(),
                            message: format!(
                                "deprovisioning {}: override on unknown system {:?}",
                                p.id,
                                o.system.get_ref()
                            ),
                        });
                        None
                    }
                };
                let action_at = loc(d.file, o.action.span().start);
                let action = match StepAction::parse(o.action.get_ref()) {
                    Some(a) if has_step(a) => Some(a),
                    Some(a) => {
                        errs.push(ConfigError {
                            location: action_at.clone(),
                            message: format!(
                                "deprovisioning {}: the override replaces step {:?}, which this policy does not have{}",
                                p.id,
                                a.as_str(),
                                match p.mode {
                                    DeprovisioningMode::Immediate => " (an immediate policy has only delete)",
                                    DeprovisioningMode::Staged => "",
                                }
                            ),
                        });
                        None
                    }
                    None => {
                        errs.push(ConfigError {
                            location: action_at.clone(),
                            message: format!(
                                "deprovisioning {}: override of unknown step action {:?} (known: {known_actions})",
                                p.id,
                                o.action.get_ref()
                            ),
                        });
                        None
                    }
                };
                let instead_at = loc(d.file, o.instead.span().start);
                let instead = match o.instead.get_ref().as_str() {
                    "nothing" => Some(None),
                    other => match StepAction::parse(other) {
                        Some(a) => Some(Some(a)),
                        None => {
                            errs.push(ConfigError {
                                location: instead_at.clone(),
                                message: format!(
                                    "deprovisioning {}: instead = {other:?} is not a step action (known: {known_actions}, or nothing)",
                                    p.id
                                ),
                            });
                            None
                        }
                    },
                };
                let (Some(system), Some(action), Some(instead)) = (system, action, instead) else {
                    continue;
                };
                if instead == Some(action) {
                    errs.push(ConfigError {
                        location: instead_at,
                        message: format!(
                            "deprovisioning {}: the override replaces step {} with itself on system {system}",
                            p.id,
                            action.as_str()
                        ),
                    });
                    continue;
                }
                if let Some(first) = first_at.get(&(system.clone(), action)) {
                    errs.push(ConfigError {
                        location: system_at,
                        message: format!(
                            "deprovisioning {}: step {} on system {system} is already overridden at {first}",
                            p.id,
                            action.as_str()
                        ),
                    });
                    continue;
                }
                first_at.insert((system.clone(), action), system_at);
                overrides.insert((system, action), instead);
            }
            if let Some(when) = when {
                deprovisioning.push(CompiledDeprovisioning {
                    id: p.id.clone(),
                    when,
                    mode: p.mode,
                    steps,
                    overrides,
                });
            }
        }

        if !errs.is_empty() {
            errs.sort();
            errs.dedup();
            return Err(ConfigErrors(errs));
        }
        // Names without their directory: the same policy has the same fingerprint wherever it lives.
        let named: Vec<(&str, &str)> = config
            .files
            .iter()
            .map(|(name, text)| {
                let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
                (base, text.as_str())
            })
            .collect();
        let fp = fingerprint(&[("files", &named)]);
        Ok(Policy {
            config,
            env,
            rules,
            gifts,
            direct,
            systems,
            deprovisioning,
            reconcile,
            service,
            fingerprint: fp,
            closure,
            grace,
            require_end_date,
            remind_before,
        })
    }

    /// The next full reconciliation of a system strictly after `after`, if it
    /// has a `reconcile` schedule.
    pub fn next_reconcile(&self, system: &SystemId, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.reconcile
            .get(system)
            .and_then(|c| c.find_next_occurrence(&after, false).ok())
    }

    /// The systems with a `reconcile` schedule.
    pub fn reconciled_systems(&self) -> impl Iterator<Item = &SystemId> {
        self.reconcile.keys()
    }

    /// `[service]`, validated.
    pub fn service(&self) -> ServiceTimings {
        self.service
    }

    /// The configuration this policy was compiled from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A hash of the configuration text.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// What the planner needs to know about each system, with the capabilities the caller
    /// learnt from each connector.
    pub fn system_infos(
        &self,
        capabilities: &BTreeMap<SystemId, crate::state::Capabilities>,
    ) -> BTreeMap<SystemId, SystemInfo> {
        self.systems
            .iter()
            .map(|(id, s)| {
                let mut info = s.info.clone();
                if let Some(c) = capabilities.get(id) {
                    info.capabilities = *c;
                }
                (id.clone(), info)
            })
            .collect()
    }

    /// Display name of a system.
    pub fn system_name(&self, id: &SystemId) -> Option<&str> {
        self.systems.get(id).map(|s| s.name.as_str())
    }

    /// The correlation rule of a system.
    pub fn correlation(&self, id: &SystemId) -> Option<&CorrelationConfig> {
        self.systems.get(id).and_then(|s| s.correlation.as_ref())
    }

    /// Evaluates every identity. Identities whose evaluation fails are listed in
    /// `skipped` (the planner leaves their accounts alone) and their errors returned.
    pub fn evaluate_all(
        &self,
        identities: &[Identity],
        grants: &[Grant],
        now: DateTime<Utc>,
    ) -> (DesiredState, Vec<EvalError>) {
        let mut by_identity: HashMap<&IdentityId, Vec<&Grant>> = HashMap::new();
        for g in grants {
            by_identity.entry(&g.identity).or_default().push(g);
        }
        let root = Context::with_env(self.env.clone());
        let mut state = DesiredState::default();
        let mut errors = Vec::new();
        for identity in identities {
            let gs = by_identity
                .get(identity.id())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match self.evaluate_in(&root, identity, gs, now) {
                Ok(d) => {
                    state.identities.insert(identity.id().clone(), d);
                }
                Err(e) => {
                    state.skipped.insert(identity.id().clone());
                    errors.push(e);
                }
            }
        }
        (state, errors)
    }

    /// Evaluates one identity.
    pub fn evaluate(
        &self,
        identity: &Identity,
        grants: &[&Grant],
        now: DateTime<Utc>,
    ) -> Result<DesiredIdentity, EvalError> {
        let root = Context::with_env(self.env.clone());
        self.evaluate_in(&root, identity, grants, now)
    }

    /// Why this identity has what it has at `now`: its record, its status and
    /// why, every rule (matched or not), its grants, the roles reached and
    /// by which path, the deprovisioning schedule, and what each system must
    /// hold. The systems' part is exactly what [`Policy::evaluate`] gives
    /// (legal holds are the caller's: [`crate::trace::Trace::hold`]).
    pub fn trace(
        &self,
        identity: &Identity,
        grants: &[&Grant],
        now: DateTime<Utc>,
    ) -> crate::trace::Trace {
        use crate::trace::{
            DeprovisioningTrace, GrantTrace, RoleGift, RoleTrace, RuleTrace, StepTrace,
            SystemTrace, Trace,
        };
        let today = now.date_naive();
        let status = if identity.status == LifecycleStatus::Deleted {
            LifecycleStatus::Deleted
        } else {
            identity.status_on(today)
        };
        let mut error = None;
        let deprovisioning = if identity.record.end_date.is_some()
            || matches!(status, LifecycleStatus::Leaver | LifecycleStatus::Deleted)
        {
            match self.leaver_schedule(identity) {
                Ok((policy, steps)) => Some(DeprovisioningTrace {
                    policy,
                    end_date: identity.record.end_date,
                    steps: steps
                        .into_iter()
                        .map(|(action, at)| StepTrace {
                            action,
                            at,
                            due: at <= now,
                        })
                        .collect(),
                }),
                Err(e) => {
                    error = Some(e);
                    None
                }
            }
        } else {
            None
        };
        // Rules are evaluated as `evaluate` does: for active people, and for
        // leavers none of whose steps is due yet.
        let rules_evaluated = match status {
            LifecycleStatus::Active => true,
            LifecycleStatus::Leaver => deprovisioning
                .as_ref()
                .is_some_and(|d| d.steps.iter().all(|s| !s.due)),
            _ => false,
        };
        let root = Context::with_env(self.env.clone());
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value("identity", identity_value(identity, status));
        let mut held: Vec<(RoleId, Reason)> = Vec::new();
        let rules = self
            .rules
            .iter()
            .map(|rule| {
                let (matched, err) = if rules_evaluated {
                    match eval_bool(&rule.when, &ctx, identity.id()) {
                        Ok(b) => (Some(b), None),
                        Err(e) => (None, Some(e.message)),
                    }
                } else {
                    (None, None)
                };
                if matched == Some(true) {
                    for role in &rule.roles {
                        held.push((
                            role.clone(),
                            Reason::Birthright {
                                rule: rule.id.clone(),
                                roles: vec![],
                            },
                        ));
                    }
                }
                RuleTrace {
                    id: rule.id.clone(),
                    when: rule.when.text.clone(),
                    matched,
                    error: err,
                    roles: rule.roles.clone(),
                }
            })
            .collect();
        let grant_traces = grants
            .iter()
            .map(|g| {
                let in_force = g.in_force(now);
                if in_force && rules_evaluated {
                    held.push((
                        g.role.clone(),
                        Reason::Grant {
                            reason: g.reason.clone(),
                            roles: vec![],
                        },
                    ));
                }
                GrantTrace {
                    role: g.role.clone(),
                    reason: g.reason.clone(),
                    valid_from: g.valid_from,
                    valid_until: g.valid_until,
                    in_force,
                }
            })
            .collect();
        // Every role reached, by every path (cycles are refused at compile time;
        // the stack check only keeps a walk finite whatever happens).
        let mut reached: BTreeMap<RoleId, Vec<Reason>> = BTreeMap::new();
        fn walk(
            direct: &Direct,
            origin: &Reason,
            stack: &mut Vec<RoleId>,
            reached: &mut BTreeMap<RoleId, Vec<Reason>>,
        ) {
            let Some(current) = stack.last().cloned() else {
                return;
            };
            let via = with_path(origin, stack);
            let list = reached.entry(current.clone()).or_default();
            if !list.contains(&via) {
                list.push(via);
            }
            for sub in direct.get(&current).map(|d| d.1.as_slice()).unwrap_or(&[]) {
                if stack.contains(sub) {
                    continue;
                }
                stack.push(sub.clone());
                walk(direct, origin, stack, reached);
                stack.pop();
            }
        }
        for (role, origin) in &held {
            walk(&self.direct, origin, &mut vec![role.clone()], &mut reached);
        }
        let roles = reached
            .into_iter()
            .map(|(role, via)| {
                let gives = self
                    .direct
                    .get(&role)
                    .map(|d| {
                        d.0.iter()
                            .map(|(system, entitlement)| RoleGift {
                                system: system.clone(),
                                entitlement: entitlement.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                RoleTrace { role, via, gives }
            })
            .collect();
        let systems = match self.evaluate_in(&root, identity, grants, now) {
            Ok(d) => self
                .systems
                .iter()
                .map(|(id, s)| SystemTrace {
                    system: id.clone(),
                    name: s.name.clone(),
                    desired: d.on(id).into_owned(),
                })
                .collect(),
            Err(e) => {
                error.get_or_insert(e);
                Vec::new()
            }
        };
        Trace {
            identity: identity.id().clone(),
            source: identity.source.clone(),
            at: now,
            record: identity.record.clone(),
            status,
            status_why: crate::trace::status_why(&identity.record, status, today),
            rules_evaluated,
            rules,
            grants: grant_traces,
            roles,
            deprovisioning,
            legal_hold: false,
            error,
            systems,
        }
    }

    /// The deprovisioning policy that applies to an identity, and its steps with their due times.
    #[allow(clippy::type_complexity)]
    pub fn leaver_schedule(
        &self,
        identity: &Identity,
    ) -> Result<(PolicyId, Vec<(StepAction, DateTime<Utc>)>), EvalError> {
        let root = Context::with_env(self.env.clone());
        let value = identity_value(identity, LifecycleStatus::Leaver);
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value("identity", value);
        let end = identity.record.end_date.unwrap_or(NaiveDate::MIN);
        let start = end.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        for d in &self.deprovisioning {
            if eval_bool(&d.when, &ctx, identity.id())? {
                let steps = match d.mode {
                    DeprovisioningMode::Immediate => vec![(StepAction::Delete, start)],
                    DeprovisioningMode::Staged => d
                        .steps
                        .iter()
                        .map(|(secs, a)| (*a, start + chrono::Duration::seconds(*secs)))
                        .collect(),
                };
                return Ok((d.id.clone(), steps));
            }
        }
        let default = PolicyId::new(DEFAULT_DEPROVISIONING).map_err(|e| EvalError {
            identity: identity.id().clone(),
            what: "deprovisioning".into(),
            location: Location {
                file: "<default>".into(),
                line: 1,
                column: 1,
            },
            message: e.to_string(),
        })?;
        Ok((default, vec![(StepAction::Delete, start)]))
    }

    /// The per-system overrides of one step of a deprovisioning policy: the
    /// systems where it does something else, and what (`None`: nothing).
    pub fn step_overrides(
        &self,
        policy: &PolicyId,
        step: StepAction,
    ) -> Vec<(SystemId, Option<StepAction>)> {
        self.deprovisioning
            .iter()
            .filter(|d| &d.id == policy)
            .flat_map(|d| d.overrides.iter())
            .filter(|((_, s), _)| *s == step)
            .map(|((system, _), instead)| (system.clone(), *instead))
            .collect()
    }

    /// The next moment after `now` at which this identity's desired state
    /// changes by the passage of time alone: its start date, its end date,
    /// or a step of its deprovisioning schedule. `None` when nothing more is
    /// scheduled (or the schedule cannot be evaluated: planning reports that).
    /// A scheduler plans an identity again when this moment comes, without
    /// looking at anyone else.
    ///
    /// Grants count too: the moment one starts, the moment it ends, and the
    /// reminder before it ends; and so does the reminder before the end date
    /// of someone who must have one (`[expiry] require_end_date`).
    pub fn next_due(
        &self,
        identity: &Identity,
        grants: &[&Grant],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if identity.status == LifecycleStatus::Deleted {
            return None;
        }
        let mut due = self.next_date_due(identity, now);
        let mut consider = |t: Option<DateTime<Utc>>| {
            if let Some(t) = t
                && t > now
                && due.is_none_or(|d| t < d)
            {
                due = Some(t);
            }
        };
        for g in grants {
            consider(g.valid_from);
            consider(g.valid_until);
            consider(g.valid_until.map(|u| u - self.remind_before));
        }
        consider(self.end_reminder(identity, now.date_naive()));
        due
    }

    /// How long before access ends its holder and their manager are reminded.
    pub fn remind_before(&self) -> chrono::Duration {
        self.remind_before
    }

    /// When the holder of this identity is reminded that their end date
    /// comes: only for people who must have an end date, and only while it
    /// is ahead.
    pub fn end_reminder(&self, identity: &Identity, today: NaiveDate) -> Option<DateTime<Utc>> {
        let end = identity.record.end_date?;
        if end <= today || !self.requires_end_date(identity, today).unwrap_or(false) {
            return None;
        }
        end.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc() - self.remind_before)
    }

    /// Whether `[expiry] require_end_date` says this person must have an end date.
    pub fn requires_end_date(
        &self,
        identity: &Identity,
        today: NaiveDate,
    ) -> Result<bool, EvalError> {
        let Some(cond) = &self.require_end_date else {
            return Ok(false);
        };
        let root = Context::with_env(self.env.clone());
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value(
            "identity",
            identity_value(identity, identity.status_on(today)),
        );
        eval_bool(cond, &ctx, identity.id())
    }

    /// What is wrong with a record from `source` that `[expiry]
    /// require_end_date` says must have an end date and has none (`None`:
    /// nothing). A condition that cannot be evaluated is a problem too: the
    /// record cannot be shown to be exempt.
    pub fn end_date_problem(
        &self,
        record: &crate::identity::IdentityRecord,
        source: &crate::ids::SourceId,
        today: NaiveDate,
    ) -> Option<String> {
        if record.end_date.is_some() || self.require_end_date.is_none() {
            return None;
        }
        let identity = Identity {
            record: record.clone(),
            source: source.clone(),
            status: record.status_on(today),
            suspended: false,
        };
        match self.requires_end_date(&identity, today) {
            Ok(false) => None,
            Ok(true) => Some(format!(
                "{} has no end date, but {} must have one ([expiry] require_end_date)",
                record.id,
                match record.employment_type.as_str() {
                    "employee" => "this person".to_owned(),
                    t => format!("a {t}"),
                }
            )),
            Err(e) => Some(format!(
                "cannot tell whether {} must have an end date: {} ({}): {}",
                record.id, e.what, e.location, e.message
            )),
        }
    }

    /// Whether any population must have an end date.
    pub fn has_end_date_requirement(&self) -> bool {
        self.require_end_date.is_some()
    }

    /// The roles birthright rules give this person while active, with every
    /// role they contain.
    pub fn birthright_roles(&self, identity: &Identity) -> Result<BTreeSet<RoleId>, EvalError> {
        let root = Context::with_env(self.env.clone());
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value(
            "identity",
            identity_value(identity, LifecycleStatus::Active),
        );
        let mut roles = BTreeSet::new();
        for rule in &self.rules {
            if eval_bool(&rule.when, &ctx, identity.id())? {
                for role in &rule.roles {
                    if let Some(reached) = self.closure.get(role) {
                        roles.extend(reached.iter().cloned());
                    }
                }
            }
        }
        Ok(roles)
    }

    /// The grants a move earns: each role with a `grace` period that the
    /// person held `before` and no longer qualifies for `after` is kept until
    /// the grace period ends (a role contained in another such role is kept
    /// through it). Nothing for someone who is not active both before and after.
    pub fn graces(
        &self,
        before: &Identity,
        after: &Identity,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, EvalError> {
        let today = now.date_naive();
        if self.grace.is_empty()
            || before.status != LifecycleStatus::Active
            || after.record.status_on(today) != LifecycleStatus::Active
        {
            return Ok(Vec::new());
        }
        let had = self.birthright_roles(before)?;
        let has = self.birthright_roles(after)?;
        let lost: Vec<(&RoleId, &chrono::Duration)> = had
            .difference(&has)
            .filter_map(|r| self.grace.get(r).map(|g| (r, g)))
            .collect();
        let covered = |role: &RoleId| {
            lost.iter().any(|(other, _)| {
                *other != role && self.closure.get(*other).is_some_and(|c| c.contains(role))
            })
        };
        Ok(lost
            .iter()
            .filter(|(role, _)| !covered(role))
            .map(|(role, grace)| Grant {
                identity: after.id().clone(),
                role: (*role).clone(),
                reason: format!(
                    "grace period after a move: no rule gives role {role} any more; kept {}",
                    duration_text(**grace)
                ),
                valid_from: None,
                valid_until: Some(now + **grace),
            })
            .collect())
    }

    fn next_date_due(&self, identity: &Identity, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let r = &identity.record;
        let mut due: Option<DateTime<Utc>> = None;
        let mut consider = |t: Option<DateTime<Utc>>| {
            if let Some(t) = t
                && t > now
                && due.is_none_or(|d| t < d)
            {
                due = Some(t);
            }
        };
        consider(r.start_date.and_then(midnight));
        if let Some(end) = r.end_date {
            let end = midnight(end);
            match end {
                // Steps come at their delay (never negative) after the end
                // date: while it is ahead, it is the next moment, and the
                // schedule need not be evaluated.
                Some(e) if e > now => consider(Some(e)),
                _ => {
                    if let Ok((_, steps)) = self.leaver_schedule(identity) {
                        for (_, at) in steps {
                            consider(Some(at));
                        }
                    }
                }
            }
        }
        due
    }

    fn evaluate_in(
        &self,
        root: &Context<'_, '_>,
        identity: &Identity,
        grants: &[&Grant],
        now: DateTime<Utc>,
    ) -> Result<DesiredIdentity, EvalError> {
        let today = now.date_naive();
        let mut leaver: Option<DesiredIdentity> = None;
        let status = if identity.status == LifecycleStatus::Deleted {
            LifecycleStatus::Deleted
        } else {
            identity.status_on(today)
        };
        let everywhere = |d: Desired| DesiredIdentity {
            systems: self
                .systems
                .keys()
                .map(|s| (s.clone(), d.clone()))
                .collect(),
            archive: BTreeMap::new(),
        };
        match status {
            LifecycleStatus::Pending => {
                return Ok(everywhere(Desired::Restricted {
                    keep_entitlements: false,
                    reasons: vec![Reason::NotStarted],
                }));
            }
            LifecycleStatus::Suspended => {
                return Ok(everywhere(Desired::Restricted {
                    keep_entitlements: true,
                    reasons: vec![Reason::Suspended],
                }));
            }
            LifecycleStatus::Leaver | LifecycleStatus::Deleted => {
                let (policy, steps) = self.leaver_schedule(identity)?;
                let since = identity.record.end_date.unwrap_or(today);
                let mut due: Vec<StepAction> = steps
                    .iter()
                    .filter(|(_, at)| *at <= now)
                    .map(|(a, _)| *a)
                    .collect();
                if status == LifecycleStatus::Deleted && !due.contains(&StepAction::Delete) {
                    due.push(StepAction::Delete);
                }
                if !due.is_empty() {
                    let decided = self.leaver_desired(identity, &policy, since, &due);
                    if decided.systems.len() == self.systems.len() {
                        return Ok(decided);
                    }
                    // Overrides left some systems with no step due: access
                    // there continues as if active.
                    leaver = Some(decided);
                }
                // No step due yet: access continues as if active.
            }
            LifecycleStatus::Active => {}
        }

        let value = identity_value(identity, status);
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value("identity", value);

        // Roles from rules and grants, each with its reason.
        let mut held: Vec<(RoleId, Reason)> = Vec::new();
        for rule in &self.rules {
            if eval_bool(&rule.when, &ctx, identity.id())? {
                for role in &rule.roles {
                    held.push((
                        role.clone(),
                        Reason::Birthright {
                            rule: rule.id.clone(),
                            roles: vec![],
                        },
                    ));
                }
            }
        }
        for g in grants {
            if g.in_force(now) {
                held.push((
                    g.role.clone(),
                    Reason::Grant {
                        reason: g.reason.clone(),
                        roles: vec![],
                    },
                ));
            }
        }

        let mut systems: BTreeMap<SystemId, DesiredAccount> = BTreeMap::new();
        for (role, why) in held {
            for gift in self.gifts.get(&role).map(Vec::as_slice).unwrap_or(&[]) {
                let Some(sys) = self.systems.get(&gift.system) else {
                    continue;
                };
                let reason = with_path(&why, &gift.path);
                let acct = match systems.entry(gift.system.clone()) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let key = eval_string(&sys.key, &ctx, identity.id())?.unwrap_or_default();
                        let key = AccountKey::new(key).map_err(|e| EvalError {
                            identity: identity.id().clone(),
                            what: sys.key.what.clone(),
                            location: sys.key.location.clone(),
                            message: e.to_string(),
                        })?;
                        let mut attributes = BTreeMap::new();
                        for (name, e) in &sys.attributes {
                            if let Some(v) = eval_string(e, &ctx, identity.id())? {
                                attributes.insert(name.clone(), v);
                            }
                        }
                        v.insert(DesiredAccount {
                            key,
                            attributes,
                            entitlements: BTreeMap::new(),
                            reasons: vec![],
                        })
                    }
                };
                if let Some(e) = &gift.entitlement {
                    let reasons = acct.entitlements.entry(e.clone()).or_default();
                    if !reasons.contains(&reason) {
                        reasons.push(reason.clone());
                    }
                }
                // An account's reasons name each rule or grant once, by its shortest path.
                let same_origin = |r: &Reason| match (r, &reason) {
                    (Reason::Birthright { rule: a, .. }, Reason::Birthright { rule: b, .. }) => {
                        a == b
                    }
                    (Reason::Grant { reason: a, .. }, Reason::Grant { reason: b, .. }) => a == b,
                    (a, b) => a == b,
                };
                if !acct.reasons.iter().any(same_origin) {
                    acct.reasons.push(reason);
                }
            }
        }
        let mut active: BTreeMap<SystemId, Desired> = systems
            .into_iter()
            .map(|(k, v)| (k, Desired::Account(v)))
            .collect();
        if let Some(mut decided) = leaver {
            for system in self.systems.keys() {
                if !decided.systems.contains_key(system)
                    && let Some(d) = active.remove(system)
                {
                    decided.systems.insert(system.clone(), d);
                }
            }
            return Ok(decided);
        }
        Ok(DesiredIdentity {
            systems: active,
            archive: BTreeMap::new(),
        })
    }

    /// A leaver's desired state on every system where a step is due once the
    /// policy's per-system overrides are applied (systems where every due step
    /// is overridden to nothing are left out), and the archives due.
    fn leaver_desired(
        &self,
        identity: &Identity,
        policy: &PolicyId,
        since: NaiveDate,
        due: &[StepAction],
    ) -> DesiredIdentity {
        let overrides = self
            .deprovisioning
            .iter()
            .find(|d| &d.id == policy)
            .map(|d| &d.overrides);
        let mut out = DesiredIdentity::default();
        for system in self.systems.keys() {
            // (what is done here, the policy's step it replaces)
            let mut here: Vec<(StepAction, Option<StepAction>)> = Vec::new();
            for step in due {
                match overrides.and_then(|o| o.get(&(system.clone(), *step))) {
                    None => here.push((*step, None)),
                    Some(None) => {}
                    Some(Some(instead)) => here.push((*instead, Some(*step))),
                }
            }
            let reason = |want: StepAction| {
                here.iter()
                    .find(|(a, _)| *a == want)
                    .map(|(step, instead_of)| {
                        vec![Reason::Deprovisioning {
                            policy: policy.clone(),
                            step: *step,
                            since,
                            instead_of: *instead_of,
                        }]
                    })
            };
            let desired = if let Some(reasons) = reason(StepAction::Delete) {
                Some(Desired::Absent { reasons })
            } else if let Some(reasons) = reason(StepAction::RemoveMemberships) {
                Some(Desired::Restricted {
                    keep_entitlements: false,
                    reasons,
                })
            } else {
                // An archive takes the data of an account that stays disabled.
                reason(StepAction::Disable)
                    .or_else(|| reason(StepAction::Archive))
                    .map(|reasons| Desired::Restricted {
                        keep_entitlements: true,
                        reasons,
                    })
            };
            if let Some(d) = desired {
                out.systems.insert(system.clone(), d);
            }
            if let Some(reasons) = reason(StepAction::Archive) {
                out.archive.insert(
                    system.clone(),
                    ArchiveRequest {
                        manager: identity.record.manager.clone(),
                        reasons,
                        held: false,
                    },
                );
            }
        }
        out
    }
}

fn with_path(why: &Reason, path: &[RoleId]) -> Reason {
    match why {
        Reason::Birthright { rule, .. } => Reason::Birthright {
            rule: rule.clone(),
            roles: path.to_vec(),
        },
        Reason::Grant { reason, .. } => Reason::Grant {
            reason: reason.clone(),
            roles: path.to_vec(),
        },
        other => other.clone(),
    }
}

type Direct = BTreeMap<RoleId, (Vec<(SystemId, Option<EntitlementName>)>, Vec<RoleId>)>;

fn expand(
    direct: &Direct,
    stack: &mut Vec<RoleId>,
    out: &mut Vec<Gift>,
) -> Result<(), Vec<String>> {
    let Some(current) = stack.last().cloned() else {
        return Ok(());
    };
    let Some((gifts, sub)) = direct.get(&current) else {
        return Ok(());
    };
    for (system, entitlement) in gifts {
        out.push(Gift {
            path: stack.clone(),
            system: system.clone(),
            entitlement: entitlement.clone(),
        });
    }
    for s in sub {
        if stack.contains(s) {
            let mut cycle: Vec<String> = stack.iter().map(ToString::to_string).collect();
            cycle.push(s.to_string());
            return Err(cycle);
        }
        stack.push(s.clone());
        let r = expand(direct, stack, out);
        stack.pop();
        r?;
    }
    Ok(())
}

/// Whether `e` is the `identity` variable (not a comprehension variable of that name).
fn is_identity(e: &IdedExpr, bound: &[String]) -> bool {
    matches!(&e.expr, CelExpr::Ident(n) if n == "identity")
        && !bound.iter().any(|b| b == "identity")
}

/// What an expression refers to: variables that are neither `identity` nor
/// bound by a comprehension, and the fields it reads from `identity`.
#[derive(Default)]
struct References {
    unknown_variables: BTreeSet<String>,
    attributes: BTreeSet<String>,
}

impl References {
    fn walk(&mut self, e: &IdedExpr, bound: &mut Vec<String>) {
        match &e.expr {
            CelExpr::Unspecified | CelExpr::Literal(_) => {}
            CelExpr::Ident(name) => {
                // `@`-names are the accumulators macros introduce.
                if name != "identity" && !name.starts_with('@') && !bound.contains(name) {
                    self.unknown_variables.insert(name.clone());
                }
            }
            CelExpr::Select(sel) => {
                if !sel.test && is_identity(&sel.operand, bound) {
                    self.attributes.insert(sel.field.clone());
                }
                self.walk(&sel.operand, bound);
            }
            CelExpr::Call(call) => {
                // identity["attribute"]
                if call.func_name == "_[_]"
                    && let [target, key] = call.args.as_slice()
                    && let CelExpr::Literal(LiteralValue::String(k)) = &key.expr
                    && is_identity(target, bound)
                {
                    self.attributes.insert(k.inner().to_string());
                }
                if let Some(t) = &call.target {
                    self.walk(t, bound);
                }
                for a in &call.args {
                    self.walk(a, bound);
                }
            }
            CelExpr::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let n = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond, bound);
                self.walk(&c.loop_step, bound);
                self.walk(&c.result, bound);
                bound.truncate(n);
            }
            CelExpr::List(l) => {
                for x in &l.elements {
                    self.walk(x, bound);
                }
            }
            CelExpr::Map(m) => {
                for entry in &m.entries {
                    self.walk_entry(&entry.expr, bound);
                }
            }
            CelExpr::Struct(st) => {
                for entry in &st.entries {
                    self.walk_entry(&entry.expr, bound);
                }
            }
        }
    }

    fn walk_entry(&mut self, e: &EntryExpr, bound: &mut Vec<String>) {
        match e {
            EntryExpr::StructField(f) => self.walk(&f.value, bound),
            EntryExpr::MapEntry(m) => {
                self.walk(&m.key, bound);
                self.walk(&m.value, bound);
            }
        }
    }
}

fn is_cel_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A duration in words: `14 days`, `12 hours`, `90 minutes`, `30 seconds`.
pub fn duration_text(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    let (n, unit) = if secs % 86_400 == 0 {
        (secs / 86_400, "day")
    } else if secs % 3_600 == 0 {
        (secs / 3_600, "hour")
    } else if secs % 60 == 0 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn date_text(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The `identity` object CEL expressions see: every source attribute (empty
/// string when absent) plus `id`, `employment_type`, `status`, `manager`,
/// `start_date`, `end_date` (`YYYY-MM-DD` or empty), `source` and `groups` (a list).
pub fn identity_value(identity: &Identity, status: LifecycleStatus) -> Value {
    let r = &identity.record;
    let mut m: HashMap<cel::objects::Key, Value> = HashMap::with_capacity(r.attributes.len() + 8);
    for (k, v) in &r.attributes {
        m.insert(k.clone().into(), Value::String(Arc::new(v.clone())));
    }
    let s = |v: String| Value::String(Arc::new(v));
    m.insert("id".to_owned().into(), s(r.id.to_string()));
    m.insert(
        "employment_type".to_owned().into(),
        s(r.employment_type.as_str().to_owned()),
    );
    m.insert("status".to_owned().into(), s(status.as_str().to_owned()));
    m.insert(
        "manager".to_owned().into(),
        s(r.manager
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()),
    );
    m.insert("start_date".to_owned().into(), s(date_text(r.start_date)));
    m.insert("end_date".to_owned().into(), s(date_text(r.end_date)));
    m.insert("source".to_owned().into(), s(identity.source.to_string()));
    m.insert(
        "groups".to_owned().into(),
        Value::List(Arc::new(r.groups.iter().map(|g| s(g.clone())).collect())),
    );
    Value::Map(cel::objects::Map { map: Arc::new(m) })
}

fn eval_error(e: &Expr, identity: &IdentityId, message: String) -> EvalError {
    EvalError {
        identity: identity.clone(),
        what: e.what.clone(),
        location: e.location.clone(),
        message,
    }
}

fn eval_bool(e: &Expr, ctx: &Context<'_, '_>, identity: &IdentityId) -> Result<bool, EvalError> {
    match e.program.execute(ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(eval_error(
            e,
            identity,
            format!("a condition must be true or false, not {other:?}"),
        )),
        Err(err) => Err(eval_error(e, identity, err.to_string())),
    }
}

fn eval_string(
    e: &Expr,
    ctx: &Context<'_, '_>,
    identity: &IdentityId,
) -> Result<Option<String>, EvalError> {
    match e.program.execute(ctx) {
        Ok(Value::String(s)) => Ok(Some(s.as_ref().clone())),
        Ok(Value::Int(i)) => Ok(Some(i.to_string())),
        Ok(Value::UInt(i)) => Ok(Some(i.to_string())),
        Ok(Value::Float(f)) => Ok(Some(f.to_string())),
        Ok(Value::Bool(b)) => Ok(Some(b.to_string())),
        Ok(Value::Null) => Ok(None),
        Ok(other) => Err(eval_error(
            e,
            identity,
            format!("must give a string, not {other:?}"),
        )),
        Err(err) => Err(eval_error(e, identity, err.to_string())),
    }
}
