//! Load for the fault suites: the real binaries as processes ([`crm_bench::stack::Stack`]), a steady burst through
//! the REST API, and the exact ledger at the end (every accepted event delivered at least once, nothing missing,
//! duplicates counted).

use crm_bench::ledger::{quantile_ms, Ledger, Phase, Report};
use crm_bench::load::Generator;
use crm_bench::receiver::{Behaviour, BenchReceiver};
use crm_bench::scenario::Scenario;
use crm_bench::stack::{Stack, StackSpec};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Builds the service binaries if a partial build left them out.
pub fn ensure_binaries() {
    let dir = crm_bench::stack::bin_dir();
    if !dir.join("crm-api").exists() || !dir.join("delivery-worker").exists() {
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "crm-api", "-p", "delivery-worker", "--bins"])
            .status()
            .expect("cargo build");
        assert!(status.success());
    }
}

/// A stack tuned for faults: short ack wait, grace, timeout and retry delays, so recovery fits in a test.
pub fn spec() -> StackSpec {
    ensure_binaries();
    StackSpec {
        env: vec![
            ("WORKER_ACK_WAIT_MS".into(), "2000".into()),
            ("WORKER_SHUTDOWN_GRACE_MS".into(), "2000".into()),
            ("CRM_WEBHOOK_TIMEOUT_MS".into(), "2000".into()),
            ("CRM_WEBHOOK_RETRY_BASE_MS".into(), "100".into()),
            ("CRM_WEBHOOK_RETRY_MAX_MS".into(), "1000".into()),
            ("CRM_WEBHOOK_MAX_ATTEMPTS".into(), "100".into()),
            ("CRM_ENDPOINT_PAUSE_AFTER".into(), "1000".into()),
            ("CRM_RELAY_POLL_MS".into(), "100".into()),
        ],
        log_dir: std::env::temp_dir(),
        ..Default::default()
    }
}

pub struct Run {
    pub ledger: Arc<Ledger>,
    pub receiver: BenchReceiver,
    pub generator: Arc<Generator>,
}

impl Run {
    /// Webhooks the receiver has answered so far (duplicates included).
    pub fn received(&self) -> u64 {
        self.receiver.requests.load(Ordering::Relaxed)
    }
}

/// `workspaces` workspaces pointed at a fresh receiver; the load goes to every crm-api replica of the stack.
pub async fn prepare(stack: &Stack, behaviour: Behaviour, workspaces: usize) -> Run {
    let ledger = Arc::new(Ledger::default());
    let receiver = BenchReceiver::start(ledger.clone(), behaviour).await.expect("receiver");
    let targets = stack.targets(Scenario::Uniform, workspaces, &receiver).await.expect("workspaces");
    let generator =
        Arc::new(Generator::over(stack.api_urls(), targets, ledger.clone(), Scenario::Uniform).expect("generator"));
    Run { ledger, receiver, generator }
}

/// Starts a burst of `rate`/s for `seconds` in the background.
pub fn burst(run: &Run, rate: f64, seconds: f64) -> tokio::task::JoinHandle<()> {
    let generator = run.generator.clone();
    tokio::spawn(async move { generator.run(rate, Duration::from_secs_f64(seconds), Phase::Steady).await })
}

/// Waits until `n` webhooks arrived in all (a fault goes in the middle of the burst; progress after it shows the
/// pipeline recovered).
pub async fn until_received(run: &Run, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while run.received() < n {
        assert!(tokio::time::Instant::now() < deadline, "fewer than {n} webhooks arrived within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the backlog to drain (bounded), then checks and prints the ledger with the latency of the run.
pub async fn settle(name: &str, run: &Run, timeout: Duration) -> Report {
    let deadline = tokio::time::Instant::now() + timeout;
    while run.ledger.outstanding() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = run.ledger.report();
    println!(
        "ledger[{name}]: accepted={} delivered={} missing={} duplicates={} failed_requests={} \
         e2e_p50_ms={:.1} e2e_p99_ms={:.1} e2e_max_ms={:.1}",
        r.accepted,
        r.delivered,
        r.missing,
        r.duplicates,
        run.generator.stats.failed.load(Ordering::Relaxed),
        quantile_ms(&r.e2e, 0.5),
        quantile_ms(&r.e2e, 0.99),
        quantile_ms(&r.e2e, 1.0),
    );
    assert!(r.accepted > 0, "nothing was accepted");
    assert_eq!(r.accepted, r.delivered + r.missing);
    assert_eq!(r.missing, 0, "[{name}] accepted events were lost");
    r
}

/// What the delivery log says about each webhook the receiver got more than once: the delivery (or deliveries) of
/// that row version, their state and every recorded attempt. A failed "no duplicates" check prints it, so the cause
/// (an attempt that timed out after the receiver had it, or a second send with no attempt recorded between) shows
/// in the failure itself.
pub async fn explain_duplicates(stack: &Stack, run: &Run) -> String {
    let duplicated = run.ledger.duplicated();
    if duplicated.is_empty() {
        return String::new();
    }
    let pool = match sqlx::PgPool::connect(&stack.database_url).await {
        Ok(pool) => pool,
        Err(e) => return format!("{duplicated:?} (the delivery log could not be read: {e})"),
    };
    let mut out = String::new();
    for ((row_id, version), times) in duplicated {
        let deliveries: Vec<(uuid::Uuid, String, i32, i32)> = sqlx::query_as(
            "SELECT id, status, attempts, budget_start FROM deliveries
              WHERE row_id = $1 AND (convert_from(event, 'UTF8')::jsonb -> 'row' ->> 'version')::bigint = $2",
        )
        .bind(row_id)
        .bind(version)
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        out.push_str(&format!("\nrow {row_id} v{version} received {times} times:"));
        for (id, status, attempts, budget_start) in deliveries {
            let tried: Vec<(i32, Option<i32>, Option<String>, i32)> = sqlx::query_as(
                "SELECT attempt, status_code, error, duration_ms FROM delivery_attempts
                  WHERE delivery_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            out.push_str(&format!(
                "\n  delivery {id}: {status}, attempts={attempts}, budget_start={budget_start}, recorded={tried:?}"
            ));
        }
    }
    pool.close().await;
    out
}
