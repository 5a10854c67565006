//! Tenure's engine: the only crate that orchestrates I/O.
//!
//! It loads the configuration directory, imports HR files into the store,
//! reads actual state through the connectors, asks the pure core for desired
//! state and the plan, persists the plan as a durable queue, and executes the
//! queue through the connectors. Every step writes the audit log.
//!
//! The engine never decides policy (that is `tenure-core`), never speaks a
//! system's protocol (that is `tenure-connectors`) and never writes SQL (that
//! is `tenure-store`). Time comes from an injected [`Clock`].

pub mod archive;
pub mod clock;
pub mod engine;
pub mod error;
pub mod executor;
pub mod explain;
pub mod grants;
pub mod import;
pub mod load;
pub mod notices;
pub mod observe;
pub mod progress;
pub mod reports;
pub mod scim;
pub mod service;
pub mod suspend;
pub mod timeline;

pub use clock::{Clock, FixedClock, SystemClock};
pub use engine::{ApplyOptions, Engine, PlanMark, Planned, Scope};
pub use error::EngineError;
pub use progress::{NoProgress, Progress};
