//! The benchmark organisation: a configuration directory (the synthetic HR
//! source, five SQL applications, 21 roles, 20 birthright rules and the
//! deprovisioning policies) and the applications' SQLite databases, created
//! empty with their tables before the run, as `tenure demo` does.
//!
//! Layout of the work directory:
//!
//! ```text
//! config/*.toml     the configuration
//! hr/full.csv       the first export (generate_csv)
//! hr/changed.csv    the next export, 1% changed (mutate_csv)
//! apps/*.db         the five applications' own databases
//! tenure.db         Tenure's store (SQLite backend only)
//! ```

use anyhow::{Context, Result, bail};
use std::path::Path;
use tenure_sources::synthetic::SYNTHETIC_SOURCE_TOML;

/// The guard and the deprovisioning policies.
const TENURE_TOML: &str = r#"# Benchmark organisation (written by tenure-bench).

[guard]
max_deprovision_percent = 10
min_count = 5

# Contractors and temps lose everything the day their contract ends.
[[deprovisioning]]
id = "externals"
when = 'identity.employment_type in ["contractor", "temp"]'
mode = "immediate"

# Employees: disabled at once, memberships stripped after a day, deleted after 30 days.
[[deprovisioning]]
id = "employees"
when = "true"
mode = "staged"

[[deprovisioning.step]]
after = "0d"
action = "disable"

[[deprovisioning.step]]
after = "1d"
action = "remove_memberships"

[[deprovisioning.step]]
after = "30d"
action = "delete"
"#;

/// Five applications that keep their users in their own SQL tables.
const SYSTEMS_TOML: &str = r#"[[system]]
id = "directory"
name = "Corporate directory"
kind = "sql"
entitlements = ["all-staff", "externals", "contractors", "temps", "managers",
  "engineering", "sales", "finance", "hr", "marketing", "support", "legal",
  "operations", "it", "security", "product", "design"]

[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
email = "identity.email"
display_name = "identity.given_name + ' ' + identity.family_name"
department = "identity.department"
title = "identity.title"
manager = "identity.manager"

[system.correlation]
account = "email"
identity = "email"

[system.settings]
url = "sqlite:../apps/directory.db"
accounts_table = "people"
key_column = "uid"
enabled_column = "enabled"
attribute_columns = { email = "mail", display_name = "cn", department = "ou", title = "title", manager = "manager" }
memberships_table = "people_groups"
membership_account_column = "uid"
membership_entitlement_column = "group_cn"

[[system]]
id = "wiki"
name = "Company wiki"
kind = "sql"
entitlements = ["all-staff", "externals", "managers",
  "engineering", "sales", "finance", "hr", "marketing", "support", "legal",
  "operations", "it", "security", "product", "design"]

[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
email = "identity.email"
display_name = "identity.given_name + ' ' + identity.family_name"
department = "identity.department"

[system.correlation]
account = "email"
identity = "email"

[system.settings]
url = "sqlite:../apps/wiki.db"
accounts_table = "users"
key_column = "login"
enabled_column = "active"
memberships_table = "group_members"
membership_account_column = "login"
membership_entitlement_column = "group_name"

[[system]]
id = "crm"
name = "Sales and support CRM"
kind = "sql"
entitlements = ["sales-rep", "sales-manager", "marketing", "support-agent", "read-only"]

[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
email = "identity.email"
full_name = "identity.given_name + ' ' + identity.family_name"
region = "identity.location"
department = "identity.department"

[system.correlation]
account = "email"
identity = "email"

[system.settings]
url = "sqlite:../apps/crm.db"
accounts_table = "crm_users"
key_column = "username"
enabled_column = "enabled"
memberships_table = "crm_user_roles"
membership_account_column = "username"
membership_entitlement_column = "role"

[[system]]
id = "erp"
name = "Finance and HR (ERP)"
kind = "sql"
entitlements = ["ledger-read", "ledger-approve", "payroll", "hr-records", "contracts", "purchasing"]

[system.account]
key = "identity.id"
[system.account.attributes]
name = "identity.given_name + ' ' + identity.family_name"
cost_center = "identity.cost_center"
department = "identity.department"

[system.correlation]
account = "key"
identity = "id"

[system.settings]
url = "sqlite:../apps/erp.db"
accounts_table = "erp_users"
key_column = "employee_no"
enabled_column = "active"
memberships_table = "erp_permissions"
membership_account_column = "employee_no"
membership_entitlement_column = "permission"

[[system]]
id = "devtools"
name = "Code hosting and issue tracker"
kind = "sql"
entitlements = ["developers", "maintainers", "security", "issues", "design", "it-ops"]

[system.account]
key = "identity.email.split('@')[0]"
[system.account.attributes]
email = "identity.email"
display_name = "identity.given_name + ' ' + identity.family_name"
team = "identity.department"

[system.correlation]
account = "email"
identity = "email"

[system.settings]
url = "sqlite:../apps/devtools.db"
accounts_table = "dev_users"
key_column = "handle"
enabled_column = "is_active"
memberships_table = "dev_team_members"
membership_account_column = "handle"
membership_entitlement_column = "team"
"#;

/// The applications' tables (what each application would have created itself).
pub const APPS: &[(&str, &[&str])] = &[
    (
        "directory.db",
        &[
            "CREATE TABLE people (uid TEXT PRIMARY KEY, mail TEXT, cn TEXT, ou TEXT, title TEXT, manager TEXT, enabled INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE people_groups (uid TEXT NOT NULL, group_cn TEXT NOT NULL, PRIMARY KEY (uid, group_cn))",
        ],
    ),
    (
        "wiki.db",
        &[
            "CREATE TABLE users (login TEXT PRIMARY KEY, email TEXT, display_name TEXT, department TEXT, active INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE group_members (login TEXT NOT NULL, group_name TEXT NOT NULL, PRIMARY KEY (login, group_name))",
        ],
    ),
    (
        "crm.db",
        &[
            "CREATE TABLE crm_users (username TEXT PRIMARY KEY, email TEXT, full_name TEXT, region TEXT, department TEXT, enabled INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE crm_user_roles (username TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (username, role))",
        ],
    ),
    (
        "erp.db",
        &[
            "CREATE TABLE erp_users (employee_no TEXT PRIMARY KEY, name TEXT, cost_center TEXT, department TEXT, active INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE erp_permissions (employee_no TEXT NOT NULL, permission TEXT NOT NULL, PRIMARY KEY (employee_no, permission))",
        ],
    ),
    (
        "devtools.db",
        &[
            "CREATE TABLE dev_users (handle TEXT PRIMARY KEY, email TEXT, display_name TEXT, team TEXT, is_active INTEGER NOT NULL DEFAULT 1)",
            "CREATE TABLE dev_team_members (handle TEXT NOT NULL, team TEXT NOT NULL, PRIMARY KEY (handle, team))",
        ],
    ),
];

/// The generator's twelve departments, with the role id of each.
const DEPARTMENTS: [(&str, &str); 12] = [
    ("Engineering", "engineering"),
    ("Sales", "sales"),
    ("Finance", "finance"),
    ("HR", "hr"),
    ("Marketing", "marketing"),
    ("Support", "support"),
    ("Legal", "legal"),
    ("Operations", "operations"),
    ("IT", "it"),
    ("Security", "security"),
    ("Product", "product"),
    ("Design", "design"),
];

/// What each department's role grants besides its directory group and wiki space.
const DEPARTMENT_EXTRAS: [(&str, &[&str]); 12] = [
    ("engineering", &["devtools:developers"]),
    ("sales", &["crm:sales-rep"]),
    ("finance", &["erp:ledger-read"]),
    ("hr", &["erp:hr-records"]),
    ("marketing", &["crm:marketing"]),
    ("support", &["crm:support-agent", "devtools:issues"]),
    ("legal", &["erp:contracts"]),
    ("operations", &["erp:purchasing"]),
    ("it", &["devtools:it-ops"]),
    ("security", &["devtools:security"]),
    ("product", &["devtools:issues", "crm:read-only"]),
    ("design", &["devtools:design"]),
];

/// The titles of people who manage others in the synthetic export.
const MANAGER_TITLES: &str = r#"["Chief Executive Officer", "VP Engineering", "VP Sales",
  "Chief Financial Officer", "Chief People Officer", "VP Marketing", "VP Customer Support",
  "General Counsel", "Chief Operating Officer", "Chief Information Officer",
  "Chief Information Security Officer", "Chief Product Officer", "VP Design",
  "Engineering Manager", "Sales Manager", "Director, Finance", "HR Manager",
  "Marketing Manager", "Support Team Lead", "Director, Legal", "Operations Manager",
  "IT Manager", "Security Manager", "Group Product Manager", "Design Manager"]"#;

fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(", "))
}

/// The roles: base roles, one per department, and nested roles for managers.
fn roles_toml() -> String {
    let mut out = String::from(
        r#"[[role]]
id = "staff"
description = "Every employee"
entitlements = ["directory:all-staff", "wiki:all-staff"]

[[role]]
id = "external"
description = "Contractors and temps: the externals' spaces only"
entitlements = ["directory:externals", "wiki:externals"]

[[role]]
id = "contractor"
roles = ["external"]
entitlements = ["directory:contractors"]

[[role]]
id = "temp"
roles = ["external"]
entitlements = ["directory:temps"]

[[role]]
id = "people-manager"
description = "Everyone who manages people"
entitlements = ["directory:managers", "wiki:managers"]

[[role]]
id = "sales-manager"
roles = ["dept-sales", "people-manager"]
entitlements = ["crm:sales-manager"]

[[role]]
id = "finance-approver"
roles = ["dept-finance", "people-manager"]
entitlements = ["erp:ledger-approve"]

[[role]]
id = "engineering-lead"
roles = ["dept-engineering", "people-manager"]
entitlements = ["devtools:maintainers"]

[[role]]
id = "payroll"
description = "Payroll specialists and the people officer"
entitlements = ["erp:payroll"]
"#,
    );
    for (name, extras) in DEPARTMENT_EXTRAS {
        let mut ents = vec![format!("directory:{name}"), format!("wiki:{name}")];
        ents.extend(extras.iter().map(|e| (*e).to_owned()));
        out.push_str(&format!(
            "\n[[role]]\nid = \"dept-{name}\"\nentitlements = {}\n",
            quoted(&ents)
        ));
    }
    out
}

/// The birthright rules.
fn rules_toml() -> String {
    let mut out = format!(
        r#"[[rule]]
id = "employees"
when = 'identity.employment_type == "employee"'
roles = ["staff"]

[[rule]]
id = "contractors"
when = 'identity.employment_type == "contractor"'
roles = ["contractor"]

[[rule]]
id = "temps"
when = 'identity.employment_type == "temp"'
roles = ["temp"]

[[rule]]
id = "managers"
when = '''identity.title in {MANAGER_TITLES}'''
roles = ["people-manager"]

[[rule]]
id = "sales-managers"
when = 'identity.department == "Sales" && identity.title in ["Sales Manager", "VP Sales"]'
roles = ["sales-manager"]

[[rule]]
id = "finance-approvers"
when = 'identity.department == "Finance" && identity.employment_type == "employee" && identity.title in ["Director, Finance", "Chief Financial Officer", "Controller"]'
roles = ["finance-approver"]

[[rule]]
id = "engineering-leads"
when = 'identity.department == "Engineering" && (identity.title in ["Engineering Manager", "VP Engineering"] || identity.title.startsWith("Staff"))'
roles = ["engineering-lead"]

[[rule]]
id = "payroll"
when = 'identity.title.contains("Payroll") || identity.title == "Chief People Officer"'
roles = ["payroll"]
"#
    );
    for (department, name) in DEPARTMENTS {
        // Finance data is for employees only.
        let extra = if name == "finance" {
            " && identity.employment_type == \"employee\""
        } else {
            ""
        };
        out.push_str(&format!(
            "\n[[rule]]\nid = \"dept-{name}\"\nwhen = 'identity.department == \"{department}\"{extra}'\nroles = [\"dept-{name}\"]\n"
        ));
    }
    out
}

/// Writes the configuration directory and creates the applications' databases
/// (empty, with their tables) under `dir`.
pub async fn write(dir: &Path) -> Result<()> {
    for sub in ["config", "hr", "apps"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let source = SYNTHETIC_SOURCE_TOML.replace("path = \"hr.csv\"", "path = \"../hr/full.csv\"");
    if source == SYNTHETIC_SOURCE_TOML {
        bail!("SYNTHETIC_SOURCE_TOML no longer has `path = \"hr.csv\"`: update tenure-bench");
    }
    let files = [
        ("config/tenure.toml", TENURE_TOML.to_owned()),
        ("config/source.toml", source),
        ("config/systems.toml", SYSTEMS_TOML.to_owned()),
        ("config/roles.toml", roles_toml()),
        ("config/rules.toml", rules_toml()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    sqlx::any::install_default_drivers();
    for (file, statements) in APPS {
        let path = dir.join("apps").join(file);
        let url = format!("sqlite:{}?mode=rwc", path.display());
        let pool = sqlx::AnyPool::connect(&url)
            .await
            .with_context(|| format!("cannot create {}", path.display()))?;
        for s in *statements {
            sqlx::query(*s)
                .execute(&pool)
                .await
                .with_context(|| format!("{file}: {s}"))?;
        }
        pool.close().await;
    }
    Ok(())
}
