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
    let db = test_support::TestDb::create().await;
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

#[tokio::test]
async fn reseal_secrets_moves_every_secret_to_the_current_key() {
    use base64::Engine;
    use secrecy::{ExposeSecret, SecretString};
    let b64 = |b: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(b);
    let (old, new) = (b64([1; 32]), b64([2; 32]));
    let db = test_support::TestDb::create().await;
    let migrate = crm_api().arg("migrate").env("DATABASE_URL", &db.url).env("CRM_SECRET_KEY", &old).output().unwrap();
    assert!(migrate.status.success());
    let pool = db.pool().await;
    let old_ring = service_common::SecretKeyring::from_env_values(&old, None).unwrap();
    let ws = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'w')").bind(ws).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO webhook_settings (workspace_id, secret_sealed, previous_secret_sealed) VALUES ($1, $2, $3)",
    )
    .bind(ws)
    .bind(old_ring.seal(&SecretString::from("current-secret-value"), ws.as_bytes()))
    .bind(old_ring.seal(&SecretString::from("previous-secret-value"), ws.as_bytes()))
    .execute(&pool)
    .await
    .unwrap();

    let run = || {
        crm_api()
            .arg("reseal-secrets")
            .env("DATABASE_URL", &db.url)
            .env("CRM_SECRET_KEY", &new)
            .env("CRM_SECRET_KEY_PREVIOUS", &old)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("re-sealed 2 secret(s)"));
    let again = run();
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-sealed 0 secret(s); 2 already"), "idempotent");

    // The old key can go: the new key alone opens both.
    let new_ring = service_common::SecretKeyring::from_env_values(&new, None).unwrap();
    let (current, previous): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT secret_sealed, previous_secret_sealed FROM webhook_settings")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(new_ring.open(&current, ws.as_bytes()).unwrap().expose_secret(), "current-secret-value");
    assert_eq!(new_ring.open(&previous, ws.as_bytes()).unwrap().expose_secret(), "previous-secret-value");
    assert!(old_ring.open(&current, ws.as_bytes()).is_err());
}
