//! Tenure's pure domain: identities, systems, accounts, entitlements, roles,
//! grants, policy evaluation (desired state), the diff that makes a plan, and
//! audit records as data.
//!
//! This crate does no I/O, starts no threads and reads no clock: every function
//! that depends on time takes `now` or `today` as a parameter, and every input
//! (configuration text, HR records, actual state) is passed in by the caller.
//! That is what makes plans deterministic and the lifecycle testable with time
//! moved forward instead of waited for.

pub mod audit;
pub mod config;
pub mod correlate;
pub mod events;
pub mod guard;
pub mod identity;
pub mod ids;
pub mod notify_config;
pub mod plan;
pub mod policy;
pub mod render;
pub mod state;
pub mod trace;

pub use identity::{EmploymentType, Identity, IdentityRecord, LifecycleStatus};
pub use ids::{
    AccountKey, EntitlementName, IdentityId, PolicyId, RoleId, RuleId, SourceId, SystemId,
};
pub use plan::{Action, Operation, Plan, Reason};
pub use state::{Account, ActualState, Capabilities, Desired, DesiredState, Link};
