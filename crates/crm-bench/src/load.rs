//! The load generator: an open model. Request `i` is scheduled at `start + i / rate` and sent at that time
//! whatever happened to earlier ones, and every latency is measured from the scheduled time, so a lagging
//! generator or a slow API shows up as latency instead of quietly lowering the offered rate.
//!
//! The mix, across many workspaces: new leads through the interest route (a row created), repeat interest for
//! known leads (a row updated, trigger `lead_interest`), and cell edits through PATCH (trigger `crm_edit`).

use crate::ledger::{Ledger, Phase};
use crate::scenario::{Class, Scenario};
use axum::body::{Body, Bytes};
use axum::http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// One workspace the generator writes to.
pub struct Target {
    pub workspace_id: Uuid,
    pub class: Class,
    pub token: String,
    /// Rows known to exist: (id, email).
    rows: Mutex<Vec<(Uuid, String)>>,
}

impl Target {
    pub fn new(workspace_id: Uuid, token: String, class: Class) -> Self {
        Target { workspace_id, class, token, rows: Mutex::new(Vec::new()) }
    }

    fn pick(&self, n: u64) -> Option<(Uuid, String)> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if rows.is_empty() {
            None
        } else {
            Some(rows[(n as usize).wrapping_mul(7919) % rows.len()].clone())
        }
    }

    fn remember(&self, id: Uuid, email: String) {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).push((id, email));
    }
}

/// What the generator saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Of `failed`, those of the warm-up.
    pub failed_in_warmup: AtomicU64,
    /// Failed requests by kind (new lead, repeat interest, edit) and what they got: the HTTP status, or the client
    /// error's kind.
    pub failed_by: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Scheduled-to-response latencies of successful steady-phase requests.
    pub api_latencies: Mutex<Vec<Duration>>,
    /// How far behind schedule the generator itself fell at worst (for the report).
    pub max_send_lag: Mutex<Duration>,
}

/// The generator's HTTP client: hyper's pooled client, without reqwest's layers on top (a redirect policy that parses
/// each request's URL twice even when it never redirects, header maps copied), which cost the generator about a
/// sixth of its instructions; the generator shares the cores with what it measures.
type Http = hyper_util::client::legacy::Client<HttpConnector, Body>;

/// How long a request may take before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Generator {
    client: Http,
    /// Per replica, per target: where its requests go.
    routes: Arc<Vec<Vec<Routes>>>,
    targets: Arc<Vec<Target>>,
    /// Each target's class, in target order (what the scenario picks from).
    classes: Arc<Vec<Class>>,
    ledger: Arc<Ledger>,
    pub stats: Arc<LoadStats>,
    counter: Arc<AtomicU64>,
    run: Arc<str>,
    scenario: Scenario,
    new_leads_only: bool,
}

/// Where one workspace's requests go on one replica, parsed once.
struct Routes {
    interest: Uri,
    /// `…/crm/rows/`: a row's URL is this plus its id.
    rows: String,
    authorization: HeaderValue,
}

impl Routes {
    fn of(api_url: &str, target: &Target) -> anyhow::Result<Routes> {
        let ws = target.workspace_id;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", target.token))?;
        authorization.set_sensitive(true);
        Ok(Routes {
            interest: format!("{api_url}/v1/workspaces/{ws}/crm/interest").parse()?,
            rows: format!("{api_url}/v1/workspaces/{ws}/crm/rows/"),
            authorization,
        })
    }
}

/// Why a request got no answer.
enum Failure {
    /// No connection to the replica (safe to send to another one).
    Connect,
    Timeout,
    Other,
}

impl Generator {
    pub fn new(api_url: &str, targets: Vec<Target>, ledger: Arc<Ledger>, scenario: Scenario) -> anyhow::Result<Self> {
        Self::over(vec![api_url.to_owned()], targets, ledger, scenario)
    }

    /// A generator that spreads its requests over several crm-api replicas, as a load balancer would: request
    /// *n* goes to replica *n* mod the count, and one that cannot connect (a replica restarting) goes to the next.
    pub fn over(
        api_urls: Vec<String>,
        targets: Vec<Target>,
        ledger: Arc<Ledger>,
        scenario: Scenario,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!api_urls.is_empty(), "no crm-api to send to");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let routes = api_urls
            .iter()
            .map(|api| targets.iter().map(|t| Routes::of(api, t)).collect::<anyhow::Result<Vec<_>>>())
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Generator {
            client,
            routes: Arc::new(routes),
            classes: Arc::new(targets.iter().map(|t| t.class).collect()),
            targets: Arc::new(targets),
            ledger,
            stats: Arc::default(),
            counter: Arc::default(),
            run: Uuid::new_v4().simple().to_string()[..8].into(),
            scenario,
            new_leads_only: false,
        })
    }

    /// This generator, sending only new leads (an import) instead of the usual mix.
    pub fn new_leads_only(mut self) -> Self {
        self.new_leads_only = true;
        self
    }

    /// Offers `rate` requests per second for `duration`, then waits for every request to finish.
    ///
    /// The schedule is kept by an OS thread of its own sleeping until each request's time (a high-resolution
    /// sleep, tens of microseconds late at worst), not by the async runtime's timer, whose millisecond ticks
    /// would send each request up to a millisecond late and add that to every latency measured from the schedule.
    pub async fn run(&self, rate: f64, duration: Duration, phase: Phase) {
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let start = Instant::now();
        let (due, mut ticks) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let clock = std::thread::spawn(move || {
            for i in 0..total {
                let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if due.send(scheduled).is_err() {
                    return;
                }
            }
        });
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(scheduled) = ticks.recv().await {
            let lag = Instant::now().saturating_duration_since(scheduled);
            {
                let mut max = self.stats.max_send_lag.lock().unwrap_or_else(|p| p.into_inner());
                *max = (*max).max(lag);
            }
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let request = Request {
                client: self.client.clone(),
                routes: self.routes.clone(),
                targets: self.targets.clone(),
                classes: self.classes.clone(),
                ledger: self.ledger.clone(),
                stats: self.stats.clone(),
                run: self.run.clone(),
                scenario: self.scenario,
                new_leads_only: self.new_leads_only,
            };
            tasks.spawn(async move { request.send(n, scheduled, phase).await });
            while tasks.try_join_next().is_some() {}
        }
        let _ = clock.join();
        while tasks.join_next().await.is_some() {}
    }
}

/// What the generator reads of an accepted row (the rest of the body is skipped, not parsed into values).
#[derive(serde::Deserialize)]
struct Accepted {
    id: Uuid,
    version: i64,
    email: String,
}

struct Request {
    client: Http,
    routes: Arc<Vec<Vec<Routes>>>,
    targets: Arc<Vec<Target>>,
    classes: Arc<Vec<Class>>,
    ledger: Arc<Ledger>,
    stats: Arc<LoadStats>,
    run: Arc<str>,
    scenario: Scenario,
    new_leads_only: bool,
}

impl Request {
    async fn send(self, n: u64, scheduled: Instant, phase: Phase) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        let index = self.scenario.pick(n, &self.classes);
        let target = &self.targets[index];
        // 50% new leads, 25% repeat interest, 25% cell edits (once the workspace has rows); or new leads only.
        let kind = if self.new_leads_only { 0 } else { n % 4 };
        let known = if kind >= 2 { target.pick(n / 4) } else { None };
        let replicas = self.routes.len();
        let mut response = None;
        for hop in 0..replicas {
            let routes = &self.routes[(n as usize + hop) % replicas][index];
            let sent = match (kind, &known) {
                (2, Some((_, email))) => self.interest(routes, email).await,
                (3, Some((id, _))) => {
                    let edit = Edit { notes: &format!("edit {n}"), pipeline_stage: STAGES[(n % 6) as usize] };
                    let uri = format!("{}{id}", routes.rows).parse::<Uri>();
                    match uri {
                        Ok(uri) => self.exchange(Method::PATCH, uri, routes, &edit).await,
                        Err(_) => Err(Failure::Other),
                    }
                }
                _ => self.interest(routes, &format!("lead-{}-{n}@bench.example", self.run)).await,
            };
            // Only a request that never reached a replica is safe to send to another one.
            let unsent = matches!(&sent, Err(Failure::Connect));
            response = Some(sent);
            if !unsent {
                break;
            }
        }
        let response = response.expect("at least one replica");
        let accepted = match response {
            Ok((status, body)) if status.is_success() => {
                serde_json::from_slice::<Accepted>(&body).map_err(|_| "unreadable body".into())
            }
            Ok((status, body)) => {
                // The problem+json detail says what was wrong (e.g. what was not found; it carries no id).
                let detail = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|p| p["detail"].as_str().map(str::to_owned));
                let status = status.as_u16();
                Err(match detail {
                    Some(detail) => format!("HTTP {status} ({})", detail.chars().take(60).collect::<String>()),
                    None => format!("HTTP {status}"),
                })
            }
            Err(Failure::Timeout) => Err("timeout".into()),
            Err(Failure::Connect) => Err("connect".into()),
            Err(Failure::Other) => Err("other client error".into()),
        };
        let row = match accepted {
            Ok(row) => row,
            Err(why) => {
                let request = match (kind, &known) {
                    (2, Some(_)) => "repeat interest",
                    (3, Some(_)) => "edit",
                    _ => "new lead",
                };
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let why = if phase == Phase::Warmup {
                    self.stats.failed_in_warmup.fetch_add(1, Ordering::Relaxed);
                    format!("warm-up {request}: {why}")
                } else {
                    format!("{request}: {why}")
                };
                *self.stats.failed_by.lock().unwrap_or_else(|p| p.into_inner()).entry(why).or_default() += 1;
                return;
            }
        };
        let done = Instant::now();
        self.stats.ok.fetch_add(1, Ordering::Relaxed);
        self.ledger.accept((row.id, row.version), scheduled, phase, target.class);
        if row.version == 1 {
            target.remember(row.id, row.email);
        }
        if phase == Phase::Steady {
            self.stats.api_latencies.lock().unwrap_or_else(|p| p.into_inner()).push(done - scheduled);
        }
    }

    async fn interest(&self, routes: &Routes, email: &str) -> Result<(StatusCode, Bytes), Failure> {
        let body = InterestBody {
            lead: Lead { email, first_name: "Bench", company: "Load Ltd" },
            interest: Interest { kind: "positive_reply", channel: "email", message: "interested" },
            campaign: "bench",
        };
        self.exchange(Method::POST, routes.interest.clone(), routes, &body).await
    }

    /// Sends `body` as JSON with the workspace's token and reads the whole answer, all within [`REQUEST_TIMEOUT`].
    async fn exchange(
        &self,
        method: Method,
        uri: Uri,
        routes: &Routes,
        body: &impl serde::Serialize,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let body = serde_json::to_vec(body).map_err(|_| Failure::Other)?;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, routes.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Body::from(body))
            .map_err(|_| Failure::Other)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    Failure::Connect
                } else {
                    Failure::Other
                }
            })?;
            let status = response.status();
            let body =
                axum::body::to_bytes(Body::new(response.into_body()), usize::MAX).await.map_err(|_| Failure::Other)?;
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.unwrap_or(Err(Failure::Timeout))
    }
}

/// The bodies the generator sends, serialised straight from borrowed fields.
#[derive(serde::Serialize)]
struct InterestBody<'a> {
    lead: Lead<'a>,
    interest: Interest,
    campaign: &'static str,
}

#[derive(serde::Serialize)]
struct Lead<'a> {
    email: &'a str,
    first_name: &'static str,
    company: &'static str,
}

#[derive(serde::Serialize)]
struct Interest {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'static str,
    message: &'static str,
}

#[derive(serde::Serialize)]
struct Edit<'a> {
    notes: &'a str,
    pipeline_stage: &'static str,
}

const STAGES: [&str; 6] = ["new", "contacted", "qualified", "meeting_booked", "won", "lost"];
