//! End-to-end tests of the `tenure` command line: the real binary, on the
//! example organisation, with real SQLite (and PostgreSQL when
//! `TENURE_TEST_POSTGRES` is set) databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod archive_e2e;
mod cli;
mod crash;
mod expiry;
mod ldap_e2e;
mod scim_e2e;
mod scim_server;
mod serve_ops;
mod serve_set;
mod service;
mod support;
