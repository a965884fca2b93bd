//! What every test of this workspace needs to stand on real infrastructure, without depending on either service:
//! a fresh PostgreSQL database per test (dropped at the end), a unique JetStream stream and subject prefix on the
//! machine's NATS (deleted at the end), a private `nats-server` or PostgreSQL cluster on a spare port for tests that
//! stop one, a fake receiving CRM, and the environment a service of such a test reads.
//!
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names the server to create test
//! databases on; `TEST_NATS_URL` (default `nats://127.0.0.1:4222`) the shared NATS; `NATS_SERVER_BIN` the
//! `nats-server` binary for private servers.

pub mod nats_server;
pub mod pg_cluster;
pub mod receiver;
pub mod round_trips;

pub use nats_server::{NatsCluster, NatsServer};
pub use pg_cluster::PgCluster;
pub use receiver::{Receiver, Reply};

use base64::Engine;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn shared_nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Logs for a test run: quiet unless `RUST_LOG` asks.
pub fn init_logging() {
    service_common::telemetry::init("warn", tracing_subscriber::fmt::TestWriter::new);
}

/// A database of one test, dropped (with `FORCE`) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("crm_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server_url()).await.expect("connect to the test PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
        let _ = admin.close().await;
        let base = server_url();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("TEST_DATABASE_URL must end in /<database>"),
        };
        TestDb { name, url }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async: use a short-lived runtime on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&server_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

/// Every statement `conn` has prepared, with how often PostgreSQL planned it for its values and how often it used
/// the generic plan, and that generic plan as `EXPLAIN` prints it (one line per node). For checks that a pool
/// whose plans are cached (`service_common::db::connect_key_lookups`) plans nothing per call and that every cached plan
/// probes the intended index, whatever the table held when the plan was made.
pub async fn prepared_plans(conn: &mut sqlx::PgConnection) -> Vec<PreparedPlan> {
    let prepared: Vec<(String, String, i64, i64, i32)> = sqlx::query_as(
        "SELECT name, statement, custom_plans, generic_plans, cardinality(parameter_types)
           FROM pg_prepared_statements WHERE NOT from_sql AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("pg_prepared_statements");
    let mut plans = Vec::with_capacity(prepared.len());
    for (name, statement, custom_plans, generic_plans, params) in prepared {
        // Parameters as NULL: with `force_generic_plan` the plan shown does not depend on them.
        let args = vec!["NULL"; usize::try_from(params).unwrap_or(0)].join(", ");
        let call = if args.is_empty() { name.clone() } else { format!("{name}({args})") };
        let lines: Vec<(String,)> =
            sqlx::query_as(&format!("EXPLAIN EXECUTE {call}")).fetch_all(&mut *conn).await.expect("explain");
        let plan = lines.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n");
        plans.push(PreparedPlan { statement, custom_plans, generic_plans, plan });
    }
    plans
}

/// Asserts that `plans` (see [`prepared_plans`]) are at least `at_least` statements, none planned per call, and
/// that every cached plan reads its tables through their primary keys: no sequential scan, no secondary index.
pub fn assert_planned_once_through_primary_keys(plans: &[PreparedPlan], at_least: usize) {
    assert!(plans.len() >= at_least, "{} statements prepared: {plans:#?}", plans.len());
    for p in plans {
        assert_eq!(p.custom_plans, 0, "planned per call: {}", p.statement);
        assert!(!p.plan.contains("Seq Scan"), "{}\n{}", p.statement, p.plan);
        for line in p.plan.lines().filter(|l| l.contains("Index Scan") || l.contains("Index Only Scan")) {
            assert!(line.contains("_pkey"), "a secondary index in the cached plan of {}:\n{}", p.statement, p.plan);
        }
    }
}

/// One prepared statement of a connection (see [`prepared_plans`]).
#[derive(Debug, Clone)]
pub struct PreparedPlan {
    pub statement: String,
    pub custom_plans: i64,
    pub generic_plans: i64,
    pub plan: String,
}

/// A unique stream name and subject prefix on a NATS server; the stream is deleted on drop.
pub struct TestStream {
    pub nats_url: String,
    pub stream: String,
    pub prefix: String,
}

impl TestStream {
    pub fn new(nats_url: &str) -> TestStream {
        let id = Uuid::new_v4().simple().to_string();
        TestStream { nats_url: nats_url.to_owned(), stream: format!("T_{id}"), prefix: format!("t{id}") }
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let seeds = service_common::nats::seeds(&self.nats_url).expect("NATS URL");
        let client = async_nats::connect(seeds).await.expect("connect to NATS");
        async_nats::jetstream::new(client)
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, stream) = (self.nats_url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                let seeds = service_common::nats::seeds(&url).unwrap_or_default();
                let connect =
                    async_nats::ConnectOptions::new().connection_timeout(Duration::from_millis(500)).connect(seeds);
                if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                    let js = async_nats::jetstream::new(client);
                    let _ = tokio::time::timeout(Duration::from_secs(2), js.delete_stream(&stream)).await;
                }
            });
        })
        .join();
    }
}

pub fn secret_key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

/// The environment a service of this test reads, as a map (tests never touch the process environment).
pub fn base_env(db: &TestDb, stream: &TestStream) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("NATS_URL".to_owned(), stream.nats_url.clone()),
        ("CRM_SECRET_KEY".to_owned(), secret_key_b64()),
        ("CRM_STREAM".to_owned(), stream.stream.clone()),
        ("CRM_SUBJECT_PREFIX".to_owned(), stream.prefix.clone()),
        ("CRM_API_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("CRM_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
        ("CRM_RELAY_POLL_MS".to_owned(), "200".to_owned()),
    ])
}

/// Polls `condition` every 20 ms until it holds; panics after `timeout`. Used where the system offers no event to
/// await (a row count, a stream's message count).
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for a child server we start right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
