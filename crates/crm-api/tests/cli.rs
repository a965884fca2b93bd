//! The crm-api binary: `--help`, `--version`, `migrate`, and one clear line for bad configuration.

use std::process::Command;

fn crm_api() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crm-api"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

const KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

#[test]
fn help_and_version_answer() {
    let help = crm_api().arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("crm-api migrate"));
    let version = crm_api().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("crm-api {}", env!("CARGO_PKG_VERSION")));
    let unknown = crm_api().arg("frobnicate").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn bad_configuration_is_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("CRM_SECRET_KEY", KEY)], "DATABASE_URL"),
        (&[("DATABASE_URL", "postgres://x/y")], "CRM_SECRET_KEY"),
        (&[("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", "dG9vIHNob3J0")], "CRM_SECRET_KEY"),
        (&[("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("CRM_API_ADDR", "localhost")], "CRM_API_ADDR"),
        (
            &[("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("CRM_MIGRATE_ON_START", "perhaps")],
            "CRM_MIGRATE_ON_START",
        ),
        (
            &[("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("CRM_EGRESS_ALLOW_CIDRS", "10.0.0.0/33")],
            "CRM_EGRESS_ALLOW_CIDRS",
        ),
        (
            &[("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("CRM_ADMIN_TOKEN", "short")],
            "CRM_ADMIN_TOKEN",
        ),
    ];
    for (env, variable) in cases {
        let output = crm_api().envs(env.iter().copied()).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
        assert!(!stderr.contains(KEY), "the key was echoed: {stderr}");
    }
}

#[tokio::test]
async fn migrate_applies_migrations_and_exits() {
    let db = crm_tests::TestDb::create().await;
    let output = crm_api().arg("migrate").env("DATABASE_URL", &db.url).env("CRM_SECRET_KEY", KEY).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let pool = db.pool().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('workspaces', 'crm_rows', 'outbox', 'webhook_settings')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 4);
    // Idempotent: a second run has nothing to do and succeeds.
    let again = crm_api().arg("migrate").env("DATABASE_URL", &db.url).env("CRM_SECRET_KEY", KEY).output().unwrap();
    assert!(again.status.success());
}
