//! `crm-bench`: the end-to-end benchmark. It runs the real pipeline on this machine — crm-api and
//! delivery-worker processes on the local PostgreSQL and NATS — drives it through the REST API at a fixed rate
//! (open model), receives the webhooks in this process, and prints a table and, last, one JSON line.
//!
//! ```text
//! cargo run --release -p crm-bench -- --rate 1000 --duration 30 [--workers 1] [--receiver-delay-ms 0]
//! cargo run --release -p crm-bench -- --find-max [--rate 500] [--duration 10]
//! ```

use crm_bench::ledger::{quantile_ms, Ledger, Phase};
use crm_bench::load::Generator;
use crm_bench::receiver::{Behaviour, BenchReceiver};
use crm_bench::scenario::Scenario;
use crm_bench::search::{RateSearch, DEFAULT_REFINE};
use crm_bench::stack::{context_switches, cpu_seconds, max_rss_mib, pids_named, Stack, StackSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELP: &str = "crm-bench — end-to-end benchmark of crm-webhook-sync

USAGE:
    crm-bench [--rate R] [--duration S] [--workers N] [--receiver-delay-ms D] [--workspaces W]
              [--scenario uniform|hot|mixed] [--hot-share F] [--hang-share F]
              [--worker-concurrency C] [--warmup S] [--drain-timeout S] [--receiver-fail-every-other] [--import]
              [--env NAME=VALUE]... [--find-max [--refine N]] [--no-build] [--no-analyze]

    --rate R               events offered per second (default 1000; the starting rate with --find-max)
    --duration S           length of the measured steady window in seconds (default 30)
    --workers N            delivery-worker processes (default 1)
    --receiver-delay-ms D  the receiver answers after D ms (default 0)
    --workspaces W         workspaces the load is spread over (default 50)
    --scenario S           uniform: evenly over the workspaces (default); hot: --hot-share of the load to one
                           workspace, the rest over the others; mixed: hot, plus --hang-share to one workspace
                           whose endpoint never answers (its events are not expected; the others' are)
    --hot-share F          the hot workspace's share of the load (default 0.8)
    --hang-share F         the hanging workspace's share of the load (default 0.02)
    --import               every request a new lead, as an import sends them (default: 50% new leads, 25% repeat
                           interest in known leads, 25% cell edits)
    --worker-concurrency C WORKER_CONCURRENCY of each worker (default 64; 256 with a receiver delay)
    --warmup S             unmeasured warm-up at the same rate (default 5)
    --drain-timeout S      how long to wait for the backlog after the window (default 60)
    --env NAME=VALUE       set a variable of the services' environment (repeatable), e.g. --env CRM_API_WRITERS=1
    --find-max             raise the rate by 30% per step until the backlog stops draining, then halve the gap
                           between the last rate sustained and the first that was not --refine times
    --refine N             halvings after --find-max's first failure (default 2: within ≈ 7% of it)
    --no-build             do not build crm-api and delivery-worker first
    --no-analyze           measure without the ANALYZE that ends the warm-up (a brand-new database's first
                           seconds, before autovacuum has given the planner statistics)

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), BENCH_NATS_URL
(default nats://127.0.0.1:4222), CRM_BIN_DIR (where the service binaries are; default next to this one).";

#[derive(Debug, Clone)]
struct Args {
    rate: f64,
    duration: f64,
    workers: usize,
    receiver_delay_ms: u64,
    workspaces: usize,
    scenario: Scenario,
    worker_concurrency: Option<usize>,
    warmup: f64,
    drain_timeout: f64,
    fail_every_other: bool,
    find_max: bool,
    /// Halvings of the gap after `--find-max`'s first failure.
    refine: u32,
    build: bool,
    /// Extra variables for the services' environment.
    env: Vec<(String, String)>,
    /// ANALYZE the database after the warm-up.
    analyze: bool,
    /// Every request a new lead (`--import`).
    import: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rate: 1000.0,
        duration: 30.0,
        workers: 1,
        receiver_delay_ms: 0,
        workspaces: 50,
        scenario: Scenario::Uniform,
        worker_concurrency: None,
        warmup: 5.0,
        drain_timeout: 60.0,
        fail_every_other: false,
        find_max: false,
        refine: DEFAULT_REFINE,
        build: true,
        env: Vec::new(),
        analyze: true,
        import: false,
    };
    let (mut scenario, mut hot_share, mut hang_share) = ("uniform".to_owned(), 0.8, 0.02);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| v.parse::<f64>().map_err(|_| format!("{name}: `{v}` is not a number"));
        match flag.as_str() {
            "--rate" => args.rate = number("--rate", value("--rate")?)?,
            "--duration" => args.duration = number("--duration", value("--duration")?)?,
            "--workers" => args.workers = number("--workers", value("--workers")?)? as usize,
            "--receiver-delay-ms" => {
                args.receiver_delay_ms = number("--receiver-delay-ms", value("--receiver-delay-ms")?)? as u64
            }
            "--workspaces" => args.workspaces = number("--workspaces", value("--workspaces")?)? as usize,
            "--scenario" => scenario = value("--scenario")?,
            "--hot-share" => hot_share = number("--hot-share", value("--hot-share")?)?,
            "--hang-share" => hang_share = number("--hang-share", value("--hang-share")?)?,
            "--warmup" => args.warmup = number("--warmup", value("--warmup")?)?,
            "--worker-concurrency" => {
                args.worker_concurrency = Some(number("--worker-concurrency", value("--worker-concurrency")?)? as usize)
            }
            "--drain-timeout" => args.drain_timeout = number("--drain-timeout", value("--drain-timeout")?)?,
            "--receiver-fail-every-other" => args.fail_every_other = true,
            "--find-max" => args.find_max = true,
            "--refine" => args.refine = number("--refine", value("--refine")?)? as u32,
            "--no-build" => args.build = false,
            "--no-analyze" => args.analyze = false,
            "--import" => args.import = true,
            "--env" => {
                let pair = value("--env")?;
                let (name, v) = pair.split_once('=').ok_or_else(|| format!("--env: `{pair}` is not NAME=VALUE"))?;
                args.env.push((name.to_owned(), v.to_owned()));
            }
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("crm-bench {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    if args.rate <= 0.0 || args.duration <= 0.0 || args.workers == 0 || args.workspaces == 0 {
        return Err("--rate, --duration, --workers and --workspaces must be positive".into());
    }
    if !(0.0..=1.0).contains(&hot_share) || !(0.0..=1.0).contains(&hang_share) || hot_share + hang_share > 1.0 {
        return Err("--hot-share and --hang-share are fractions that add up to at most 1".into());
    }
    args.scenario = Scenario::parse(&scenario, hot_share, hang_share)?;
    let special = match args.scenario {
        Scenario::Uniform => 0,
        Scenario::Hot { .. } => 1,
        Scenario::Mixed { .. } => 2,
    };
    if args.workspaces <= special {
        return Err(format!("--scenario {scenario} needs more than {special} workspaces"));
    }
    Ok(args)
}

/// Builds the service binaries in the profile this binary was built with.
fn build_services() -> anyhow::Result<()> {
    let release = crm_bench::stack::bin_dir().ends_with("release");
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-q", "-p", "crm-api", "-p", "delivery-worker"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "building crm-api and delivery-worker failed");
    Ok(())
}

/// What one named process group has used so far.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_s: f64,
    switches: u64,
}

fn usage(pids: impl IntoIterator<Item = u32>) -> Usage {
    pids.into_iter().fold(Usage::default(), |u, pid| Usage {
        cpu_s: u.cpu_s + cpu_seconds(pid),
        switches: u.switches + context_switches(pid),
    })
}

/// CPU seconds and context switches per named process group at one instant.
fn usage_snapshot(stack: &Stack) -> BTreeMap<String, Usage> {
    let mut snap = BTreeMap::new();
    snap.insert("crm-api".to_owned(), usage([stack.api.pid]));
    for w in &stack.workers {
        snap.insert(w.name.clone(), usage([w.pid]));
    }
    snap.insert("crm-bench".to_owned(), usage([std::process::id()]));
    snap.insert("postgres".to_owned(), usage(pids_named("postgres")));
    snap.insert("nats-server".to_owned(), usage(pids_named("nats-server")));
    snap
}

/// The benchmark database's server processes (other than the one answering this query), by pid, with the
/// `application_name` each client gave: which of the services' connections the server's CPU goes to.
async fn backends(database_url: &str) -> anyhow::Result<Vec<(u32, String)>> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(database_url).await?;
    let rows: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT pid, application_name FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(pid, app)| Some((u32::try_from(pid).ok()?, app.filter(|a| !a.is_empty()).unwrap_or("-".into()))))
        .collect())
}

/// CPU seconds used between `before` and `after` by the `backends`, summed per application name.
fn by_application(
    backends: &[(u32, String)],
    before: &BTreeMap<u32, f64>,
    after: &BTreeMap<u32, f64>,
) -> BTreeMap<String, f64> {
    let mut used = BTreeMap::new();
    for (pid, app) in backends {
        // A backend that ended meanwhile reads 0 at the end: its CPU is only in the server's total.
        match (before.get(pid), after.get(pid)) {
            (Some(b), Some(a)) if a >= b => *used.entry(app.clone()).or_insert(0.0) += a - b,
            _ => {}
        }
    }
    used
}

/// The CPU seconds of each backend so far (0 for one that has ended).
fn cpu_of(backends: &[(u32, String)]) -> BTreeMap<u32, f64> {
    backends.iter().map(|(pid, _)| (*pid, cpu_seconds(*pid))).collect()
}

struct Outcome {
    json: serde_json::Value,
    sustained: bool,
}

async fn run_once(args: &Args, rate: f64) -> anyhow::Result<Outcome> {
    let ledger = Arc::new(Ledger::default());
    let behaviour =
        Behaviour { delay: Duration::from_millis(args.receiver_delay_ms), fail_every_other: args.fail_every_other };
    let receiver = BenchReceiver::start(ledger.clone(), behaviour).await?;
    let log_dir = std::env::temp_dir().join(format!("crm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir)?;
    let concurrency = worker_concurrency(args).to_string();
    let mut env = vec![("WORKER_CONCURRENCY".into(), concurrency), ("CRM_DB_MAX_CONNECTIONS".into(), "32".into())];
    env.extend(args.env.iter().cloned());
    let spec = StackSpec { workers: args.workers, env, log_dir, ..Default::default() };
    let stack = Stack::start(spec).await?;
    let result = measure(args, rate, &stack, &ledger, &receiver).await;
    receiver.stop();
    stack.stop().await;
    result
}

/// `WORKER_CONCURRENCY` of each worker: as asked, or 64 (256 with a slow receiver).
fn worker_concurrency(args: &Args) -> usize {
    args.worker_concurrency.unwrap_or(if args.receiver_delay_ms > 0 { 256 } else { 64 })
}

async fn measure(
    args: &Args,
    rate: f64,
    stack: &Stack,
    ledger: &Arc<Ledger>,
    receiver: &BenchReceiver,
) -> anyhow::Result<Outcome> {
    let synchronous_commit: String = {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&stack.database_url).await?;
        sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut conn).await?
    };
    let targets = stack.targets(args.scenario, args.workspaces, receiver).await?;
    let mut generator = Generator::new(&stack.api_url, targets, ledger.clone(), args.scenario)?;
    if args.import {
        generator = generator.new_leads_only();
    }

    eprintln!("warm-up: {rate:.0}/s for {:.0} s", args.warmup);
    generator.run(rate, Duration::from_secs_f64(args.warmup), Phase::Warmup).await;
    if args.analyze {
        // What autovacuum does within a minute on a database that is taking writes: the planner gets statistics
        // for the tables the warm-up filled (a brand-new database has none, and a few seconds are not enough for
        // autovacuum to notice). Cached plans are made again against them.
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&stack.database_url).await?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
    }

    eprintln!("steady window: {rate:.0}/s for {:.0} s", args.duration);
    let backends = backends(&stack.database_url).await?;
    let (usage_before, backends_before) = (usage_snapshot(stack), cpu_of(&backends));
    let started = Instant::now();
    generator.run(rate, Duration::from_secs_f64(args.duration), Phase::Steady).await;
    let window = started.elapsed();
    let delivered_in_window = ledger.received_between(started, started + window);

    let drain_started = Instant::now();
    let drain_deadline = drain_started + Duration::from_secs_f64(args.drain_timeout);
    while ledger.outstanding() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = drain_started.elapsed();
    let (usage_after, backends_after) = (usage_snapshot(stack), cpu_of(&backends));

    let report = ledger.report();
    let api = {
        let mut v = generator.stats.api_latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v.sort_unstable();
        v
    };
    // Failures of the warm-up (a cold start) are reported apart; the steady window's decide `sustained`.
    let failed_in_warmup = generator.stats.failed_in_warmup.load(Ordering::Relaxed);
    let failed = generator.stats.failed.load(Ordering::Relaxed) - failed_in_warmup;
    let thousands = (report.steady_accepted as f64 / 1000.0).max(1e-9);
    let events = report.steady_accepted.max(1) as f64;
    let (mut cpu, mut switches) = (serde_json::Map::new(), serde_json::Map::new());
    for (name, after) in &usage_after {
        let before = usage_before.get(name).copied().unwrap_or_default();
        cpu.insert(name.clone(), json!(round3((after.cpu_s - before.cpu_s) / thousands)));
        switches.insert(name.clone(), json!(round1(after.switches.saturating_sub(before.switches) as f64 / events)));
    }
    let mut postgres_by_application = serde_json::Map::new();
    for (app, used) in by_application(&backends, &backends_before, &backends_after) {
        postgres_by_application.insert(app, json!(round3(used / thousands)));
    }
    let mut rss = serde_json::Map::new();
    rss.insert("crm-api".into(), json!(round1(stack.api.max_rss_mib())));
    for w in &stack.workers {
        rss.insert(w.name.clone(), json!(round1(w.max_rss_mib())));
    }
    rss.insert("crm-bench".into(), json!(round1(max_rss_mib(std::process::id()))));
    let events_per_s = report.steady_accepted as f64 / window.as_secs_f64();
    let drained_in_time = drain.as_secs_f64() <= (0.1 * args.duration).max(1.0);
    let sustained = report.missing == 0 && failed == 0 && drained_in_time && events_per_s >= rate * 0.97;
    let mut by_class = serde_json::Map::new();
    for (class, e2e) in &report.e2e_by_class {
        by_class.insert(
            class.as_str().to_owned(),
            json!({"events": e2e.len(), "e2e_p50_ms": round2(quantile_ms(e2e, 0.5)),
                   "e2e_p99_ms": round2(quantile_ms(e2e, 0.99)), "e2e_max_ms": round2(quantile_ms(e2e, 1.0))}),
        );
    }
    let json = json!({
        "rate": rate,
        "duration_s": args.duration,
        "workers": args.workers,
        "workspaces": args.workspaces,
        "scenario": args.scenario.name(),
        "mix": if args.import { "import" } else { "crm" },
        "worker_concurrency": worker_concurrency(args),
        "receiver_delay_ms": args.receiver_delay_ms,
        "accepted": report.accepted,
        "delivered": report.delivered,
        "missing": report.missing,
        "duplicates": report.duplicates,
        "hanging_accepted": report.hanging,
        "e2e_by_class": by_class,
        "failed_requests": failed,
        "failed_in_warmup": failed_in_warmup,
        "failed_by": generator.stats.failed_by.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        "events_per_s": round1(events_per_s),
        "delivered_per_s": round1(delivered_in_window as f64 / window.as_secs_f64()),
        "api_p50_ms": round2(quantile_ms(&api, 0.5)),
        "api_p99_ms": round2(quantile_ms(&api, 0.99)),
        "e2e_p50_ms": round2(quantile_ms(&report.e2e, 0.5)),
        "e2e_p99_ms": round2(quantile_ms(&report.e2e, 0.99)),
        "e2e_p999_ms": round2(quantile_ms(&report.e2e, 0.999)),
        "e2e_max_ms": round2(quantile_ms(&report.e2e, 1.0)),
        "e2e_slowest": report.slowest.iter()
            .map(|(at, e2e)| json!({"at_s": round2(at.as_secs_f64()), "e2e_ms": round2(e2e.as_secs_f64() * 1000.0)}))
            .collect::<Vec<_>>(),
        "drain_s": round2(drain.as_secs_f64()),
        "max_generator_lag_ms": round2(generator.stats.max_send_lag.lock().unwrap_or_else(|p| p.into_inner()).as_secs_f64() * 1000.0),
        "cpu_s_per_1k_events": cpu,
        "postgres_cpu_s_per_1k_events_by_application": postgres_by_application,
        "context_switches_per_event": switches,
        "max_rss_mib": rss,
        "synchronous_commit": synchronous_commit,
        "analyzed_after_warmup": args.analyze,
        "sustained": sustained,
    });
    Ok(Outcome { json, sustained })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn print_table(j: &serde_json::Value) {
    println!("┌────────────────────────────────┬──────────────────────────────────────┐");
    for (label, key) in [
        ("offered rate (/s)", "rate"),
        ("steady window (s)", "duration_s"),
        ("worker processes", "workers"),
        ("workspaces / scenario", "scenario"),
        ("receiver delay (ms)", "receiver_delay_ms"),
        ("accepted", "accepted"),
        ("delivered", "delivered"),
        ("missing", "missing"),
        ("duplicates", "duplicates"),
        ("failed API requests", "failed_requests"),
        ("events/s accepted (steady)", "events_per_s"),
        ("webhooks/s delivered (steady)", "delivered_per_s"),
        ("API p50 / p99 (ms)", "api"),
        ("e2e p50 / p99 / p99.9 (ms)", "e2e"),
        ("drain after window (s)", "drain_s"),
        ("synchronous_commit", "synchronous_commit"),
    ] {
        let value = match key {
            "api" => format!("{} / {}", j["api_p50_ms"], j["api_p99_ms"]),
            "e2e" => format!("{} / {} / {}", j["e2e_p50_ms"], j["e2e_p99_ms"], j["e2e_p999_ms"]),
            "scenario" => format!("{} / {}", j["workspaces"], j["scenario"].as_str().unwrap_or("")),
            k => j[k].to_string().trim_matches('"').to_owned(),
        };
        println!("│ {label:<30} │ {value:<36} │");
    }
    if let Some(classes) = j["e2e_by_class"].as_object().filter(|c| c.len() > 1) {
        for (class, c) in classes {
            let value = format!("{} / {} ({} events)", c["e2e_p50_ms"], c["e2e_p99_ms"], c["events"]);
            println!("│ {:<30} │ {value:<36} │", format!("e2e p50 / p99, {class} (ms)"));
        }
    }
    println!("├────────────────────────────────┼──────────────────────────────────────┤");
    println!("│ {:<30} │ {:<36} │", "process", "CPU s per 1k events / RSS MiB / cs");
    if let Some(cpu) = j["cpu_s_per_1k_events"].as_object() {
        for (name, c) in cpu {
            let rss = j["max_rss_mib"].get(name).map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let switches = j["context_switches_per_event"].get(name).map(|v| v.to_string()).unwrap_or_default();
            println!("│ {name:<30} │ {:<36} │", format!("{c} / {rss} / {switches}"));
        }
    }
    if let Some(apps) = j["postgres_cpu_s_per_1k_events_by_application"].as_object() {
        for (app, c) in apps {
            println!("│ {:<30} │ {:<36} │", format!("  pg: {app}"), c.to_string());
        }
    }
    println!("└────────────────────────────────┴──────────────────────────────────────┘");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("crm-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.build {
        if let Err(e) = build_services() {
            eprintln!("crm-bench: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let result = if args.find_max { find_max(&args).await } else { run_once(&args, args.rate).await.map(|o| o.json) };
    match result {
        Ok(json) => {
            if !args.find_max {
                print_table(&json);
            }
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crm-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Raises the rate by 30% per step until a step is not sustained, then halves the gap between the last sustained
/// rate and the first that was not `--refine` times ([`RateSearch`]); reports the highest sustained step.
async fn find_max(args: &Args) -> anyhow::Result<serde_json::Value> {
    let mut search = RateSearch::new(args.refine);
    let mut best: Option<serde_json::Value> = None;
    let mut steps = Vec::new();
    let mut next = Some(args.rate);
    while let Some(rate) = next {
        let outcome = run_once(args, rate).await?;
        print_table(&outcome.json);
        steps.push(json!({"rate": rate, "sustained": outcome.sustained, "events_per_s": outcome.json["events_per_s"],
                          "e2e_p99_ms": outcome.json["e2e_p99_ms"], "drain_s": outcome.json["drain_s"]}));
        next = search.next(rate, outcome.sustained);
        if outcome.sustained && search.best() == Some(rate) {
            best = Some(outcome.json);
        }
    }
    let mut best = best.unwrap_or_else(|| json!({"rate": 0, "sustained": false}));
    best["find_max_steps"] = json!(steps);
    best["max_sustained_rate"] = best["rate"].clone();
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_cpu_is_summed_per_application_over_the_backends_seen_at_both_ends() {
        let backends = vec![(10, "crm-api-writer".to_owned()), (11, "crm-api-writer".to_owned()), (12, "x".to_owned())];
        let before = BTreeMap::from([(10, 1.0), (11, 2.0), (12, 5.0)]);
        // 12 ended during the window: it is not counted (its CPU is in the server's total).
        let after = BTreeMap::from([(10, 1.5), (11, 2.25), (12, 0.0)]);
        let used = by_application(&backends, &before, &after);
        assert_eq!(used, BTreeMap::from([("crm-api-writer".to_owned(), 0.75)]));
    }
}
