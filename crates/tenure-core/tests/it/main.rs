//! Integration tests of Tenure's pure core: `tenure check` diagnostics, policy
//! evaluation, the diff, correlation, import classification, plan rendering
//! (snapshots) and properties (determinism, convergence, audit chain).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod archive;
mod check;
mod common;
mod correlate;
mod diff;
mod evaluate;
mod events;
mod expiry;
mod props;
mod render;
mod trace;
