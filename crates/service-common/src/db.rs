//! PostgreSQL pools and the `LISTEN` loop. The schema and its migrations are `crm-db`'s.

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// Opens a pool. Connections are made on demand, so a PostgreSQL restart heals by itself: a failed query returns
/// an error to its caller and the next acquire reconnects.
pub async fn connect(url: &SecretString, max_connections: u32, application: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose_secret())?.application_name(application);
    pool_options(max_connections).connect_with(options).await
}

/// The pools' options. A connection given back is tested within [`Held::TEST_TIMEOUT`] first (`after_release`),
/// and closed if the test fails or has no answer: sqlx tests it again itself afterwards, with no time limit, which
/// on a connection whose path hangs (a statement dropped mid-way, say by a request's timeout) would keep its place
/// in the pool until TCP gives up, and a few such places would leave the pool with none to hand out.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .after_release(|conn, _| Box::pin(async move { ping_within(conn, Held::TEST_TIMEOUT).await.map(|()| true) }))
}

/// Tests `conn` with a ping that must be answered within `limit`; no answer is an I/O error of kind `TimedOut`.
async fn ping_within(conn: &mut sqlx::PgConnection, limit: Duration) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    tokio::time::timeout(limit, conn.ping()).await.unwrap_or_else(|_| Err(timed_out("its test", limit)))
}

/// The error of work on a connection that had no answer within `limit`.
fn timed_out(what: &str, limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from PostgreSQL to {what} within {} ms", limit.as_millis()),
    ))
}

/// Whether a pool's commits wait for the WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// `synchronous_commit = on` (the server's default): a commit that returned is on disk.
    Durable,
    /// `synchronous_commit = off`: the commit returns before the WAL flush. Only for writes whose loss in a
    /// PostgreSQL crash is harmless: a later synchronous commit on the same server flushes them anyway, and a lost
    /// one only makes work happen again (a delivery claimed again when its message comes back, an event
    /// republished and deduplicated by the stream).
    Async,
}

/// The planner settings of a hot-path pool: no sequential scans, no hash or merge joins.
///
/// Every statement on such a pool looks rows up by key (a few ids or emails of a batch, probed through their
/// unique indexes), so the right plan is always an index probe per key. The planner does not always see that: a
/// table that has not been analysed yet (a new database, or the first minute of a busy one before autovacuum
/// runs) is estimated at ten pages, and a generic plan cached on a connection keeps the choice it made then, so a
/// batch of three rows was locked with three sequential scans of a table that had grown to thousands of pages.
/// With these off, the planner takes the index whatever its estimates. Public so that tests plan a statement as
/// such a pool does.
pub const KEY_LOOKUP_PLANS: [(&str, &str); 3] =
    [("enable_seqscan", "off"), ("enable_hashjoin", "off"), ("enable_mergejoin", "off")];

/// The server's own limits on a hot-path connection, below [`Held::WORK_TIMEOUT`]: a statement (lock waits
/// included) that runs 8 s is cancelled by PostgreSQL, and a transaction left idle for 15 s (its client gone
/// without the server noticing) is ended with its session, so a slow but running server fails the work cleanly,
/// with nothing committed, before the client's own limit gives up on it, and a client that gave up leaves no
/// transaction holding row locks behind.
pub const SERVER_LIMITS: [(&str, &str); 2] =
    [("statement_timeout", "8s"), ("idle_in_transaction_session_timeout", "15s")];

/// Opens a pool for the hot path's batched key lookups and writes (crm-api's writers and relay, the worker's
/// claims and records): [`KEY_LOOKUP_PLANS`], [`SERVER_LIMITS`], commits as `commit` says, and one plan per
/// statement and connection (`plan_cache_mode = force_generic_plan`).
///
/// Planning each execution again was more than half of the server's time in some of these statements at small
/// batches. Caching is right for them because every statement with parameters finds its rows through a unique
/// index probed once per key of the batch (the keys as `= ANY($1)` or joined from `unnest`): with
/// [`KEY_LOOKUP_PLANS`] the probe is the only plan left, except for the writers' lookup of leads by email, which
/// could also filter the workspace through its `(workspace_id, id)` index. A plan made while `crm_rows` has no
/// statistics does that; PostgreSQL plans a cached statement again when a table it reads is analysed, and crm-api
/// analyses `crm_rows` within its first pages and at every doubling (`crm_api::statistics`), after which the plan
/// takes the unique email index. Never for queries that read a range of rows (lists, counts, pruning): those keep
/// the planner's own judgement on [`connect`]'s pool.
pub async fn connect_key_lookups(
    url: &SecretString,
    max_connections: u32,
    application: &str,
    commit: Commit,
) -> Result<PgPool, sqlx::Error> {
    let mut settings = KEY_LOOKUP_PLANS.to_vec();
    settings.push(("plan_cache_mode", "force_generic_plan"));
    settings.extend(SERVER_LIMITS);
    if commit == Commit::Async {
        settings.push(("synchronous_commit", "off"));
    }
    let options = PgConnectOptions::from_str(url.expose_secret())?.application_name(application).options(settings);
    pool_options(max_connections).connect_with(options).await
}

/// One connection of a pool, kept by a task that runs its statements back to back (a writer, a batcher, the
/// relay's direct path).
///
/// A statement run on the pool itself costs two more round trips than the statement: sqlx tests a connection when
/// it is taken (`test_before_acquire`) and again when it is given back, each a message to PostgreSQL and a wake-up
/// of its backend. A task that writes batch after batch holds its connection instead. The connection is tested
/// (within [`Held::TEST_TIMEOUT`]) before a use that comes [`Held::IDLE_CHECK`] or more after the previous one, so a
/// PostgreSQL restart during a quiet spell is found before a statement fails on it; it is closed after an error
/// that may have broken it ([`Held::failed`], [`Held::discard`]) and after work that got no answer within
/// [`Held::WORK_TIMEOUT`] ([`Held::run`]); and it is given back to the pool, which retires it, once it is older
/// than [`Held::MAX_AGE`]. A connection that failed its test or an error is detached from the
/// pool and dropped rather than given back: the pool would only test it again (up to [`Held::TEST_TIMEOUT`] for a
/// hung one) before closing it.
pub struct Held {
    pool: PgPool,
    idle_check: Duration,
    test_timeout: Duration,
    work_timeout: Duration,
    conn: Option<HeldConnection>,
}

struct HeldConnection {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    taken: std::time::Instant,
    used: std::time::Instant,
}

impl Held {
    /// How long a held connection may be idle before its next use tests it first (by default).
    pub const IDLE_CHECK: Duration = Duration::from_secs(1);
    /// How long that test may take before the connection is taken for dead (by default).
    pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long one connection is held before it goes back to the pool (the pool's own `max_lifetime`).
    pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);
    /// How long [`Held::run`] waits for its work by default (the whole of it: a writer batch with all its tries, a
    /// worker batch split record by record). Hot-path statements take milliseconds, a batch of hundreds behind a
    /// slow disk well under a second, and the server cancels a statement after 8 s itself ([`SERVER_LIMITS`]):
    /// this much silence means the connection's path or server hangs (a host gone without a reset, a stopped
    /// server), which TCP alone would wait out for many minutes.
    pub const WORK_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(pool: PgPool) -> Held {
        Held::with_checks(pool, Self::IDLE_CHECK, Self::TEST_TIMEOUT)
    }

    /// [`Held::new`], testing the connection before a use that comes `idle_check` or more after the last, and
    /// taking it for dead when the test takes `test_timeout`.
    pub fn with_checks(pool: PgPool, idle_check: Duration, test_timeout: Duration) -> Held {
        Held { pool, idle_check, test_timeout, work_timeout: Self::WORK_TIMEOUT, conn: None }
    }

    /// This `Held`, giving [`Held::run`]'s work `work_timeout` instead of [`Held::WORK_TIMEOUT`].
    pub fn with_work_timeout(mut self, work_timeout: Duration) -> Held {
        self.work_timeout = work_timeout;
        self
    }

    /// Runs `work` (statements, or a whole transaction) on the held connection. After an error that may have broken
    /// the connection, or when `work` has no answer within the work timeout, the connection is closed (the server
    /// rolls back a transaction left open once it sees the connection gone, or, on the hot-path pools, after
    /// [`SERVER_LIMITS`]' idle limit) and the next use takes another. A timeout is
    /// returned as an I/O error of kind `TimedOut`: whether the work committed is unknown, as when a connection
    /// breaks before its answer.
    pub async fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let limit = self.work_timeout;
        let result = match self.get().await {
            Ok(conn) => {
                tokio::time::timeout(limit, work(conn)).await.unwrap_or_else(|_| Err(timed_out("the work", limit)))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    /// The held connection, taken from the pool if none is held, if the one held was idle and fails its test, or if
    /// it has been held for [`Held::MAX_AGE`].
    pub async fn get(&mut self) -> Result<&mut sqlx::PgConnection, sqlx::Error> {
        if let Some(held) = &mut self.conn {
            if held.taken.elapsed() >= Self::MAX_AGE {
                self.conn = None;
            } else if held.used.elapsed() >= self.idle_check
                && ping_within(&mut held.conn, self.test_timeout).await.is_err()
            {
                self.discard();
            }
        }
        if self.conn.is_none() {
            let now = std::time::Instant::now();
            self.conn = Some(HeldConnection { conn: self.pool.acquire().await?, taken: now, used: now });
        }
        let held = self.conn.as_mut().expect("a connection is held");
        held.used = std::time::Instant::now();
        Ok(&mut *held.conn)
    }

    /// After `error` on the held connection: closes the connection unless the error is an answer from the server
    /// that leaves it usable (a refused statement: a constraint, a serialization failure, bad data). A transaction
    /// the error left open is rolled back before the connection's next statement.
    pub fn failed(&mut self, error: &sqlx::Error) {
        if !is_refusal(error) {
            self.discard();
        }
    }

    /// Closes the held connection; the next [`Held::get`] takes another from the pool.
    pub fn discard(&mut self) {
        if let Some(held) = self.conn.take() {
            drop(held.conn.detach());
        }
    }

    /// Whether a connection is held now.
    pub fn is_held(&self) -> bool {
        self.conn.is_some()
    }
}

/// Whether `error` is the server refusing a statement on a connection that stays usable: an error it answered
/// with, except those that end or doom the session (connection exceptions `08`, insufficient resources `53`,
/// operator intervention `57`, system errors `58`, internal errors `XX`, an idle transaction's timeout `25P03`).
pub fn is_refusal(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            !db.code().is_some_and(|code| server_gave_up(&code) || matches!(class(&code), "58" | "XX"))
        }
        _ => false,
    }
}

/// The SQLSTATE class of `code` (its first two characters).
fn class(code: &str) -> &str {
    &code[..2.min(code.len())]
}

/// Whether SQLSTATE `code` says the server ended the statement or session for reasons of its own: a connection
/// exception (`08`), insufficient resources (`53`), operator intervention (`57`), or an idle transaction's timeout
/// (`25P03`).
fn server_gave_up(code: &str) -> bool {
    code == "25P03" || matches!(class(code), "08" | "53" | "57")
}

/// Whether `error` says the database is not there to do the work, rather than refusing it: no connection (the
/// pool timed out or closed, the socket failed or had no answer), or the server ended the statement or session for
/// reasons of its own: a connection exception (`08`), insufficient resources (`53`, too many connections among
/// them), operator intervention (`57`: a shutdown, a restart, a statement cancelled by `statement_timeout`), or an
/// idle transaction ended by `idle_in_transaction_session_timeout` (`25P03`). Such work may succeed if tried again
/// later; the API answers it `503`.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| server_gave_up(&code)),
        _ => false,
    }
}

/// What a channel listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// One notification's payload.
    Notification(&'a str),
    /// Notifications may have been missed: the listener has just (re)connected, or its connection dropped.
    Gap,
}

/// Follows `LISTEN channel` until `shutdown`, reconnecting for ever (a second apart while PostgreSQL is away), and
/// hands everything heard to `on`. Every (re)connection starts with a [`Heard::Gap`], since what was notified while
/// nobody listened is lost.
pub async fn follow_channel(
    pool: &PgPool,
    channel: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut on: impl FnMut(Heard<'_>),
) {
    while !shutdown.is_cancelled() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(channel, error = %e, "listener cannot connect");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if listener.listen(channel).await.is_err() {
            continue;
        }
        on(Heard::Gap);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => on(Heard::Notification(notification.payload())),
                    Ok(None) => on(Heard::Gap),
                    Err(e) => {
                        tracing::debug!(channel, error = %e, "listener lost its connection");
                        break;
                    }
                },
            }
        }
    }
}
