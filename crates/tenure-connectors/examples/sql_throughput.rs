//! Throughput of the SQL connector, measured by hand (not a test).
//!
//! ```text
//! cargo run --release -p tenure-connectors --example sql_throughput
//! cargo run --release -p tenure-connectors --example sql_throughput -- postgres://postgres@127.0.0.1:5432/bench
//! cargo run --release -p tenure-connectors --example sql_throughput -- mysql://root@127.0.0.1:3306/test 20000 2000
//! ```
//!
//! Arguments: an optional database URL (default: a new SQLite file in a
//! temporary directory), the number of operations (default 100000) and the
//! batch size (default 5000). Half the operations create accounts, half add
//! one membership to each. On a server the tables `bench_users` and
//! `bench_user_groups` are dropped and created again first.

use sqlx::AssertSqlSafe;
use std::time::Instant;
use tenure_core::config::Config;
use tenure_core::{AccountKey, Action, EntitlementName, Operation, SystemId};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().cloned();
    let total: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch_size: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5_000);

    let dir = tempfile::tempdir()?;
    let url = match url {
        Some(u) => {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&u).await?;
            for t in ["bench_user_groups", "bench_users"] {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
                    .execute(&pool)
                    .await?;
            }
            pool.close().await;
            u
        }
        None => "sqlite://bench.db".to_owned(),
    };
    let text = format!(
        r#"
[[system]]
id = "bench"
kind = "sql"
[system.account]
key = "identity.username"
[system.account.attributes]
email = "identity.email"
display_name = "identity.name"
[system.settings]
url = {url:?}
accounts_table = "bench_users"
key_column = "username"
enabled_column = "active"
memberships_table = "bench_user_groups"
membership_account_column = "username"
membership_entitlement_column = "group_name"
"#
    );
    let config = Config::parse(vec![("bench.toml".to_owned(), text)])?;
    let system = config
        .systems
        .first()
        .map(|s| s.item.clone())
        .ok_or("no system")?;
    tenure_connectors::sql::create_demo_schema(&system, dir.path()).await?;
    let connector = tenure_connectors::build(&system, dir.path()).await?;
    connector.check().await?;

    let sys = SystemId::new("bench")?;
    let groups = [
        EntitlementName::new("staff")?,
        EntitlementName::new("sales")?,
        EntitlementName::new("admins")?,
    ];
    let mut ops = Vec::with_capacity(total);
    for i in 0..total / 2 {
        let key = AccountKey::new(format!("user{i:07}"))?;
        let attributes = [
            ("email".to_owned(), format!("user{i}@example.com")),
            ("display_name".to_owned(), format!("User Number {i}")),
        ]
        .into_iter()
        .collect();
        ops.push(Operation {
            system: sys.clone(),
            identity: None,
            account: key.clone(),
            action: Action::CreateAccount { attributes },
            reasons: vec![],
        });
        let entitlement = groups.get(i % groups.len()).cloned().ok_or("groups")?;
        ops.push(Operation {
            system: sys.clone(),
            identity: None,
            account: key,
            action: Action::AddMembership { entitlement },
            reasons: vec![],
        });
    }

    let started = Instant::now();
    let mut failed = 0usize;
    for batch in ops.chunks(batch_size.max(1)) {
        failed += connector
            .apply(batch)
            .await
            .iter()
            .filter(|r| r.is_err())
            .count();
    }
    let elapsed = started.elapsed();
    let read_started = Instant::now();
    let accounts = connector.read_accounts().await?.accounts.len();
    let read_elapsed = read_started.elapsed();
    let target = if url.starts_with("sqlite") {
        "SQLite file"
    } else {
        url.split(':').next().unwrap_or("?")
    };
    println!(
        "{target}: {} operations in batches of {batch_size}: {:.2} s, {:.0} ops/s, {failed} failed",
        ops.len(),
        elapsed.as_secs_f64(),
        ops.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "read_accounts: {accounts} accounts with memberships in {:.2} s",
        read_elapsed.as_secs_f64()
    );
    Ok(())
}
