//! The fault suite: the real binaries as processes, a burst of load through the REST API, a fault in the middle,
//! and the ledger at the end — every accepted event delivered at least once, nothing missing, duplicates counted.
//! Each case is bounded in time. Cases that stop NATS or PostgreSQL start their own server on a spare port, so
//! the machine's shared services are never disturbed.

use crm_bench::ledger::{Ledger, Phase, Report};
use crm_bench::load::Generator;
use crm_bench::receiver::{Behaviour, BenchReceiver};
use crm_bench::scenario::Scenario;
use crm_bench::stack::{Stack, StackSpec};
use crm_tests::NatsServer;
use crm_tests::PgCluster;
use std::sync::Arc;
use std::time::Duration;

/// Builds the service binaries if a partial build left them out.
fn ensure_binaries() {
    let dir = crm_bench::stack::bin_dir();
    if !dir.join("crm-api").exists() || !dir.join("delivery-worker").exists() {
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "crm-api", "-p", "delivery-worker", "--bins"])
            .status()
            .expect("cargo build");
        assert!(status.success());
    }
}

fn spec() -> StackSpec {
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

struct Run {
    ledger: Arc<Ledger>,
    receiver: BenchReceiver,
    generator: Arc<Generator>,
}

async fn prepare(stack: &Stack, behaviour: Behaviour, workspaces: usize) -> Run {
    let ledger = Arc::new(Ledger::default());
    let receiver = BenchReceiver::start(ledger.clone(), behaviour).await.expect("receiver");
    let targets = stack.targets(Scenario::Uniform, workspaces, &receiver).await.expect("workspaces");
    let generator =
        Arc::new(Generator::new(&stack.api_url, targets, ledger.clone(), Scenario::Uniform).expect("generator"));
    Run { ledger, receiver, generator }
}

/// Starts a burst of `rate`/s for `seconds` in the background.
fn burst(run: &Run, rate: f64, seconds: f64) -> tokio::task::JoinHandle<()> {
    let generator = run.generator.clone();
    tokio::spawn(async move { generator.run(rate, Duration::from_secs_f64(seconds), Phase::Steady).await })
}

/// Waits until `n` webhooks arrived (the fault goes in the middle of the burst).
async fn until_received(run: &Run, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while run.receiver.requests.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(tokio::time::Instant::now() < deadline, "fewer than {n} webhooks arrived before the fault");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the backlog to drain (bounded), then checks and prints the ledger.
async fn settle(name: &str, run: &Run, timeout: Duration) -> Report {
    let deadline = tokio::time::Instant::now() + timeout;
    while run.ledger.outstanding() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = run.ledger.report();
    println!(
        "ledger[{name}]: accepted={} delivered={} missing={} duplicates={} failed_requests={}",
        r.accepted,
        r.delivered,
        r.missing,
        r.duplicates,
        run.generator.stats.failed.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(r.accepted > 0, "nothing was accepted");
    assert_eq!(r.accepted, r.delivered + r.missing);
    assert_eq!(r.missing, 0, "[{name}] accepted events were lost");
    r
}

#[tokio::test]
async fn a_worker_killed_with_sigkill_mid_burst() {
    let mut stack = Stack::start(StackSpec { workers: 2, ..spec() }).await.expect("stack");
    let run = prepare(&stack, Behaviour { delay: Duration::from_millis(20), ..Default::default() }, 10).await;
    let load = burst(&run, 150.0, 3.0);
    until_received(&run, 60).await;
    stack.workers[0].kill().await;
    load.await.expect("burst");
    settle("worker SIGKILL", &run, Duration::from_secs(60)).await;
    stack.stop().await;
}

#[tokio::test]
async fn nats_server_restarted_mid_burst() {
    let mut nats = NatsServer::start().await;
    let stack = Stack::start(StackSpec { nats_url: nats.url(), ..spec() }).await.expect("stack");
    let run = prepare(&stack, Behaviour::default(), 10).await;
    let load = burst(&run, 150.0, 4.0);
    until_received(&run, 60).await;
    nats.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the outage itself: the fault under test, not a wait
    nats.restart().await;
    load.await.expect("burst");
    settle("nats restart", &run, Duration::from_secs(90)).await;
    stack.stop().await;
}

#[tokio::test]
async fn postgres_restarted_mid_burst() {
    let pg = PgCluster::start();
    let stack = Stack::start(StackSpec { postgres_url: pg.url(), ..spec() }).await.expect("stack");
    let run = prepare(&stack, Behaviour::default(), 10).await;
    let load = burst(&run, 150.0, 4.0);
    until_received(&run, 60).await;
    pg.restart();
    load.await.expect("burst");
    settle("postgres restart", &run, Duration::from_secs(90)).await;
    stack.stop().await;
}

#[tokio::test]
async fn crm_api_killed_between_commit_and_publish() {
    // crm-api commits rows and their events, but its relay cannot reach NATS: everything waits in the outbox.
    let dead_nats = format!("nats://127.0.0.1:{}", crm_tests::free_port());
    let mut spec = spec();
    spec.api_env = vec![("NATS_URL".into(), dead_nats)];
    spec.api_ready_path = "/healthz".into();
    let mut stack = Stack::start(spec).await.expect("stack");
    let run = prepare(&stack, Behaviour::default(), 5).await;
    burst(&run, 100.0, 2.0).await.expect("burst");
    let accepted = run.ledger.accepted();
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(pending as u64, accepted, "every committed change waits in the outbox");
    assert_eq!(run.receiver.requests.load(std::sync::atomic::Ordering::Relaxed), 0);

    stack.api.kill().await;
    let nats = stack.env["NATS_URL"].clone();
    stack.api.set_env("NATS_URL", &nats);
    stack.api.ready_path = "/readyz".into();
    stack.api.start().await.expect("crm-api restarts");
    settle("crm-api SIGKILL before publish", &run, Duration::from_secs(60)).await;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(pending, 0);
    pool.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_receiver_that_refuses_half_the_requests() {
    let stack = Stack::start(spec()).await.expect("stack");
    let run = prepare(&stack, Behaviour { fail_every_other: true, ..Default::default() }, 10).await;
    burst(&run, 150.0, 3.0).await.expect("burst");
    let report = settle("503 half", &run, Duration::from_secs(60)).await;
    let requests = run.receiver.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        requests >= 2 * report.delivered - 1,
        "the refused half was retried: {requests} requests for {} events",
        report.delivered
    );
    stack.stop().await;
}
