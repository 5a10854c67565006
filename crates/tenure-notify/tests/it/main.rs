//! Integration tests of `tenure-notify` against real receivers started by
//! the tests on 127.0.0.1 (an HTTP server for webhooks and SET push, a small
//! SMTP server) and real stores: every outbox test runs on SQLite and on
//! PostgreSQL (`TENURE_TEST_POSTGRES`; without it the PostgreSQL variant is
//! skipped and says so, except under `CI=true`, where it fails).
//!
//! Time is never waited for: each test holds its own `now` and moves it.

mod email;
mod set;
mod support;
mod webhook;
