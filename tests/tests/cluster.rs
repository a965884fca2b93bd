//! Past one server: the stream and consumer definitions applied idempotently (and their drift reported), and the
//! whole pipeline on a three-node JetStream cluster — two crm-api replicas, three workers, the stream at R3 and
//! every seed in `NATS_URL` — with a server lost or restarted under steady load, each case ending with the exact
//! ledger.
//!
//! Each fault case runs 100 events/s for about eight seconds so the suite fits CI; the README says how to run the
//! same faults longer with `crm-bench`-sized load (`CLUSTER_LOAD_SECONDS`, `CLUSTER_LOAD_RATE`).

use async_nats::jetstream::{self, consumer, stream};
use crm_bench::ledger::Report;
use crm_bench::receiver::Behaviour;
use crm_bench::stack::Stack;
use crm_tests::burst::{burst, explain_duplicates, prepare, settle, spec, until_received, Run};
use crm_tests::{NatsCluster, PgCluster, TestStream};
use service_common::nats::{ensure_consumer, ensure_stream, stream_config};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn subjects(stream: &TestStream) -> crm_events::Subjects {
    crm_events::Subjects::new(&stream.prefix)
}

#[tokio::test]
async fn a_drifted_stream_is_updated_where_it_can_be_and_the_rest_is_reported() {
    let test = TestStream::new(&crm_tests::shared_nats_url());
    let js = test.jetstream().await;
    let wanted = stream_config(&test.stream, &subjects(&test), 1);
    // Someone created the stream by hand: a short duplicate window and limits retention.
    let by_hand = stream::Config {
        duplicate_window: Duration::from_secs(30),
        retention: stream::RetentionPolicy::Limits,
        ..wanted.clone()
    };
    js.create_stream(by_hand).await.unwrap();

    let drift = ensure_stream(&js, wanted.clone()).await.unwrap();
    let fields: Vec<(&str, bool)> = drift.iter().map(|d| (d.field, d.applied)).collect();
    assert_eq!(fields, [("duplicate_window", true), ("retention", false)], "{drift:?}");
    let info = js.get_stream(&test.stream).await.unwrap().info().await.unwrap().config.clone();
    assert_eq!(info.duplicate_window, Duration::from_secs(120), "the mutable setting was applied");
    assert_eq!(info.retention, stream::RetentionPolicy::Limits, "retention cannot change in place");

    // A second run finds only what it cannot change.
    let again = ensure_stream(&js, wanted).await.unwrap();
    assert_eq!(again.iter().map(|d| d.field).collect::<Vec<_>>(), ["retention"]);
}

#[tokio::test]
async fn replicas_starting_together_create_one_stream_and_one_consumer() {
    let test = TestStream::new(&crm_tests::shared_nats_url());
    let js = test.jetstream().await;
    let wanted = stream_config(&test.stream, &subjects(&test), 1);
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let (js, wanted) = (js.clone(), wanted.clone());
            tokio::spawn(async move { ensure_stream(&js, wanted).await.map_err(|e| e.to_string()) })
        })
        .collect();
    for start in starts {
        assert_eq!(start.await.unwrap(), Ok(Vec::new()), "every replica finds the stream as defined");
    }
    let stream = js.get_stream(&test.stream).await.unwrap();
    let config = delivery_worker::consumer::consumer_config(Duration::from_secs(30));
    let binds: Vec<_> = (0..6)
        .map(|_| {
            let (stream, config) = (stream.clone(), config.clone());
            tokio::spawn(
                async move { ensure_consumer(&stream, config).await.map(|(_, d)| d).map_err(|e| e.to_string()) },
            )
        })
        .collect();
    for bind in binds {
        assert_eq!(bind.await.unwrap(), Ok(Vec::new()));
    }
    assert_eq!(js.get_stream(&test.stream).await.unwrap().info().await.unwrap().state.consumer_count, 1);
}

#[tokio::test]
async fn a_changed_ack_wait_reaches_the_existing_consumer() {
    let test = TestStream::new(&crm_tests::shared_nats_url());
    let js = test.jetstream().await;
    ensure_stream(&js, stream_config(&test.stream, &subjects(&test), 1)).await.unwrap();
    let stream = js.get_stream(&test.stream).await.unwrap();
    let config = |ms| delivery_worker::consumer::consumer_config(Duration::from_millis(ms));
    ensure_consumer(&stream, config(10_000)).await.unwrap();

    let (_, drift) = ensure_consumer(&stream, config(45_000)).await.unwrap();
    assert_eq!(drift.iter().map(|d| (d.field, d.applied)).collect::<Vec<_>>(), [("ack_wait", true)], "{drift:?}");
    let info = stream.consumer_info(crm_events::CONSUMER_NAME).await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(45));
    assert_eq!(info.config.ack_policy, consumer::AckPolicy::Explicit);
}

// ---- the cluster ------------------------------------------------------------------------------------------------

fn load_rate() -> f64 {
    std::env::var("CLUSTER_LOAD_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(100.0)
}

fn load_seconds() -> f64 {
    std::env::var("CLUSTER_LOAD_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(8.0)
}

/// Three nodes; two crm-api replicas and three workers given every node's URL, the stream at R3.
async fn cluster_stack(postgres_url: Option<String>) -> (NatsCluster, Stack) {
    let cluster = NatsCluster::start(3).await;
    let mut spec = spec();
    spec.nats_url = cluster.urls();
    spec.workers = 3;
    spec.env.push(("CRM_STREAM_REPLICAS".into(), "3".into()));
    // Five services share one PostgreSQL (100 connections by default) with whatever test runs beside: each
    // crm-api opens at most 8 + 2 writers + 4 relay connections, each worker 8 + 4, 64 in all.
    spec.env.push(("CRM_DB_MAX_CONNECTIONS".into(), "8".into()));
    spec.env.push(("WORKER_DB_MAX_CONNECTIONS".into(), "8".into()));
    if let Some(url) = postgres_url {
        spec.postgres_url = url;
    }
    let mut stack = Stack::start(spec).await.expect("stack");
    stack.add_api().await.expect("a second crm-api");
    (cluster, stack)
}

async fn jetstream_of(cluster: &NatsCluster) -> jetstream::Context {
    let seeds = service_common::nats::seeds(&cluster.urls()).unwrap();
    jetstream::new(async_nats::connect(seeds).await.expect("connect to the cluster"))
}

/// The stream's cluster info as the cluster reports it, asked until a leader answers.
async fn stream_cluster(cluster: &NatsCluster, name: &str) -> stream::ClusterInfo {
    let js = jetstream_of(cluster).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(name).await {
            if let Ok(info) = s.info().await {
                if let Some(c) = info.cluster.clone().filter(|c| c.leader.is_some()) {
                    return c;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "stream {name} has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the stream's three replicas are all current again (a restarted node caught up).
async fn until_replicas_current(cluster: &NatsCluster, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = stream_cluster(cluster, name).await;
        if c.replicas.len() == 2 && c.replicas.iter().all(|p| p.current && !p.offline) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the replicas did not catch up: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pipeline goes on through a fault: `n` more webhooks arrive after it, or (when the burst ends first)
/// every accepted event has arrived.
async fn progress(run: &Run, n: u64, offered: u64) {
    let target = run.received() + n;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = &run.generator.stats;
        let answered = stats.ok.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed);
        if run.received() >= target || (answered >= offered && run.ledger.outstanding() == 0) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress after the fault: {} of {target}", run.received());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The steady load of a case over 10 workspaces: `CLUSTER_LOAD_RATE` for `CLUSTER_LOAD_SECONDS` (at least
/// `min_seconds`), returned once the first 100 webhooks arrived, with how many requests it offers in all.
async fn steady_load(stack: &Stack, min_seconds: f64) -> (Run, tokio::task::JoinHandle<()>, u64) {
    let run = prepare(stack, Behaviour::default(), 10).await;
    let (rate, seconds) = (load_rate(), load_seconds().max(min_seconds));
    let load = burst(&run, rate, seconds);
    until_received(&run, 100).await;
    (run, load, (rate * seconds).round() as u64)
}

async fn check(name: &str, stack: &Stack, run: &Run, report: &Report) {
    // Every fault here is one the send-log guard covers: a message redelivered after a lost ack finds its
    // delivery ended and is acked unsent. A duplicate would need a worker to die between the receiver's answer
    // and the attempt's record, or a record held up past its lease while a second copy waits (a database refusing
    // connections), which no case here does.
    if report.duplicates > 0 {
        let why = explain_duplicates(stack, run).await;
        panic!("[{name}] {} webhooks were delivered twice:{why}", report.duplicates);
    }
}

#[tokio::test]
async fn the_stream_leader_killed_and_restarted_under_load() {
    let (mut cluster, stack) = cluster_stack(None).await;
    let c = stream_cluster(&cluster, &stack.stream).await;
    assert_eq!(c.replicas.len(), 2, "the stream is R3: a leader and two replicas: {c:?}");
    let (run, load, offered) = steady_load(&stack, 12.0).await;

    let leader = c.leader.clone().unwrap();
    let node = cluster.index_of(&leader).expect("the leader is one of ours");
    cluster.nodes[node].kill().await;
    let after = stream_cluster(&cluster, &stack.stream).await;
    assert_ne!(after.leader.as_deref(), Some(leader.as_str()), "a new leader took over");
    progress(&run, 100, offered).await;
    cluster.nodes[node].restart().await;
    load.await.unwrap();
    let report = settle("stream leader killed", &run, Duration::from_secs(90)).await;
    check("stream leader killed", &stack, &run, &report).await;
    until_replicas_current(&cluster, &stack.stream).await;
    stack.stop().await;
}

/// The node a worker is connected to, from each node's `/connz`.
async fn node_of_a_worker(cluster: &NatsCluster) -> usize {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for node in 0..cluster.nodes.len() {
        let connz: serde_json::Value =
            client.get(cluster.monitor_url(node, "/connz")).send().await.unwrap().json().await.unwrap();
        let names = connz["connections"].as_array().cloned().unwrap_or_default();
        if names.iter().any(|c| c["name"] == "delivery-worker") {
            return node;
        }
    }
    panic!("no node has a worker connected");
}

#[tokio::test]
async fn the_server_a_worker_is_connected_to_killed_under_load() {
    let (mut cluster, stack) = cluster_stack(None).await;
    let (run, load, offered) = steady_load(&stack, 8.0).await;

    let node = node_of_a_worker(&cluster).await;
    cluster.nodes[node].kill().await;
    progress(&run, 150, offered).await;
    cluster.nodes[node].restart().await;
    load.await.unwrap();
    let report = settle("a worker's server killed", &run, Duration::from_secs(90)).await;
    check("a worker's server killed", &stack, &run, &report).await;
    stack.stop().await;
}

#[tokio::test]
async fn rolling_restarts_of_every_worker_then_both_apis_under_load() {
    let (_cluster, mut stack) = cluster_stack(None).await;
    let (run, load, offered) = steady_load(&stack, 10.0).await;

    // One at a time, each back (ready) before the next goes.
    for i in 0..stack.workers.len() {
        let status = stack.workers[i].terminate().await;
        assert!(status.is_some_and(|s| s.success()), "worker {i} stopped cleanly: {status:?}");
        stack.workers[i].start().await.expect("worker back");
        progress(&run, 20, offered).await;
    }
    let status = stack.api.terminate().await;
    assert!(status.is_some_and(|s| s.success()), "crm-api 1 stopped cleanly: {status:?}");
    stack.api.start().await.expect("crm-api 1 back");
    progress(&run, 20, offered).await;
    let status = stack.more_apis[0].terminate().await;
    assert!(status.is_some_and(|s| s.success()), "crm-api 2 stopped cleanly: {status:?}");
    stack.more_apis[0].start().await.expect("crm-api 2 back");

    load.await.unwrap();
    let report = settle("rolling restarts", &run, Duration::from_secs(90)).await;
    check("rolling restarts", &stack, &run, &report).await;
    stack.stop().await;
}

#[tokio::test]
async fn postgres_restarted_while_a_node_is_down() {
    let pg = PgCluster::start();
    let (mut cluster, stack) = cluster_stack(Some(pg.url())).await;
    let (run, load, offered) = steady_load(&stack, 8.0).await;

    // A node that is not the stream's leader goes down, so the cluster runs degraded (two of three).
    let leader = stream_cluster(&cluster, &stack.stream).await.leader.unwrap();
    let node = (0..3).find(|&i| cluster.index_of(&leader) != Some(i)).unwrap();
    cluster.nodes[node].kill().await;
    progress(&run, 50, offered).await;
    pg.restart();
    progress(&run, 100, offered).await;
    cluster.nodes[node].restart().await;
    load.await.unwrap();
    let report = settle("postgres restarted, one node down", &run, Duration::from_secs(90)).await;
    check("postgres restarted, one node down", &stack, &run, &report).await;
    stack.stop().await;
}
