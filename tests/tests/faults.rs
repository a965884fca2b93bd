//! The fault suite: the real binaries as processes, a burst of load through the REST API, a fault in the middle,
//! and the ledger at the end — every accepted event delivered at least once, nothing missing, duplicates counted.
//! Each case is bounded in time. Cases that stop NATS or PostgreSQL start their own server on a spare port, so
//! the machine's shared services are never disturbed.

use crm_bench::receiver::Behaviour;
use crm_bench::stack::{Stack, StackSpec};
use crm_tests::burst::{burst, prepare, settle, spec, until_received};
use crm_tests::NatsServer;
use crm_tests::PgCluster;
use std::time::Duration;

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
