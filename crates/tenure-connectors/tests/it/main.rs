//! Integration tests of the SQL connector against real databases.
//!
//! Every scenario runs on SQLite (a temporary file), on PostgreSQL when
//! `TENURE_TEST_POSTGRES` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`)
//! and on MariaDB/MySQL when `TENURE_TEST_MYSQL` is set (e.g.
//! `mysql://root@127.0.0.1:3306/test`). Each test gets a fresh database,
//! created and dropped around it. A variant whose variable is unset prints
//! `SKIPPED` and passes, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod ldap_ad;
mod ldap_openldap;
mod ldap_samba;
mod ldap_slapd;
mod ldap_support;
mod offline;
mod scenarios;
mod scim;
mod scim_faults;
mod scim_profiles;
mod scim_support;
mod support;

/// One `#[tokio::test]` per scenario and backend, in modules `sqlite`,
/// `postgres` and `mysql`.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::support::run(crate::support::Backend::Sqlite, stringify!($name), crate::scenarios::$name).await;
                }
            )*
            #[tokio::test]
            async fn secret_env_url() {
                crate::offline::secret_env_url(crate::support::Backend::Sqlite, "sqlite::secret_env_url").await;
            }
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::support::run(crate::support::Backend::Postgres, stringify!($name), crate::scenarios::$name).await;
                }
            )*
            #[tokio::test]
            async fn secret_env_url() {
                crate::offline::secret_env_url(crate::support::Backend::Postgres, "postgres::secret_env_url").await;
            }
        }
        mod mysql {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::support::run(crate::support::Backend::MySql, stringify!($name), crate::scenarios::$name).await;
                }
            )*
            #[tokio::test]
            async fn secret_env_url() {
                crate::offline::secret_env_url(crate::support::Backend::MySql, "mysql::secret_env_url").await;
            }
        }
    };
}

suite!(
    check_detects_missing_table_and_column,
    lifecycle_operations,
    idempotent_replay,
    failing_operation_fails_alone,
    read_accounts_round_trip,
    read_accounts_matching_reads_only_what_is_asked,
    hostile_values_are_stored_verbatim,
    capabilities_reflect_settings,
    secret_file_url,
    large_batch,
    schema_qualified_tables,
    demo_schema,
    wrong_system_is_refused,
    commit_failure_fails_every_operation,
    lock_timeout_is_transient_and_fails_alone,
    archive_transfers_data_to_the_manager,
    memberships_added_many_at_a_time,
);
