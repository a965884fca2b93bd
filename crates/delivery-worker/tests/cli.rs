//! The delivery-worker binary: `--help`, `--version`, one line for bad configuration, and SIGTERM → exit 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

fn worker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_delivery-worker"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn help_version_and_bad_configuration() {
    let help = worker().arg("--help").output().unwrap();
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("delivery-worker"));
    let version = worker().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("delivery-worker {}", env!("CARGO_PKG_VERSION"))
    );
    for (env, variable) in [
        (vec![("CRM_SECRET_KEY", KEY)], "DATABASE_URL"),
        (
            vec![("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("WORKER_CONCURRENCY", "0")],
            "WORKER_CONCURRENCY",
        ),
        (
            vec![("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("CRM_WEBHOOK_TIMEOUT_MS", "soon")],
            "CRM_WEBHOOK_TIMEOUT_MS",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("CRM_SECRET_KEY", KEY),
                ("CRM_WEBHOOK_RETRY_BASE_MS", "5000"),
                ("CRM_WEBHOOK_RETRY_MAX_MS", "100"),
            ],
            "CRM_WEBHOOK_RETRY_MAX_MS",
        ),
        (
            vec![("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", KEY), ("CRM_WEBHOOK_MAX_ATTEMPTS", "0")],
            "CRM_WEBHOOK_MAX_ATTEMPTS",
        ),
    ] {
        let output = worker().envs(env).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let db = test_support::TestDb::create().await;
    let stream = test_support::TestStream::new(&test_support::shared_nats_url());
    // The schema the worker expects, as crm-api's migrate would leave it.
    crm_db::migrate(&db.pool().await).await.expect("migrations");
    let port = test_support::free_port();
    let mut child = worker()
        .envs(test_support::base_env(&db, &stream))
        .env("WORKER_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "worker never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "worker did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}
