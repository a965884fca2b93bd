//! The real pipeline as separate processes: crm-api and delivery-worker binaries on a fresh database and a unique
//! stream, so a run can measure each process (CPU, RSS) and a fault test can kill one (SIGKILL) or stop one
//! (SIGTERM).

use base64::Engine;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// One service process.
pub struct Service {
    pub name: String,
    pub port: u16,
    binary: PathBuf,
    env: HashMap<String, String>,
    child: Option<Child>,
    pub pid: u32,
    log: PathBuf,
    /// What "started" means: `/readyz` (PostgreSQL and JetStream reachable) unless set otherwise.
    pub ready_path: String,
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Service {
    pub async fn spawn(
        name: &str,
        binary: &Path,
        env: HashMap<String, String>,
        port: u16,
        log_dir: &Path,
    ) -> anyhow::Result<Service> {
        Self::spawn_ready_at(name, binary, env, port, log_dir, "/readyz").await
    }

    /// Like [`Service::spawn`], waiting for `ready_path` to answer 200.
    pub async fn spawn_ready_at(
        name: &str,
        binary: &Path,
        env: HashMap<String, String>,
        port: u16,
        log_dir: &Path,
        ready_path: &str,
    ) -> anyhow::Result<Service> {
        let log = log_dir.join(format!("{name}.log"));
        let mut service = Service {
            name: name.to_owned(),
            port,
            binary: binary.to_owned(),
            env,
            child: None,
            pid: 0,
            log,
            ready_path: ready_path.into(),
        };
        service.start().await?;
        Ok(service)
    }

    /// (Re)starts the process with its environment and waits until `/readyz` answers 200.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", self.binary.display()))?;
        self.pid = child.id().unwrap_or(0);
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}{}", self.port, self.ready_path);
        let deadline = Instant::now() + timeout;
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        loop {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("{} exited ({status}) during start; see {}", self.name, self.log.display());
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("{} not ready within {timeout:?}; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Changes one variable for the next [`Service::start`].
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), value.to_owned());
    }

    /// SIGKILL: no drain, no hand-back.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Peak resident set size, in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        max_rss_mib(self.pid)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// CPU seconds of a process from /proc/<pid>/stat (utime + stime, in clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name may contain spaces; fields after the closing parenthesis are fixed.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak RSS (VmHWM) of a process, in MiB.
pub fn max_rss_mib(pid: u32) -> f64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0.0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Context switches of a process so far, voluntary and not, over all its threads (`/proc/<pid>/task/*/status`):
/// each is a thread put to sleep or preempted and another run in its place, the cost a wake-up adds beyond the
/// work it wakes up for.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| switches_in(&status))
        .sum()
}

/// The context switches a `/proc/.../status` text counts.
pub fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// Every process whose command name is `comm` (e.g. `postgres`, `nats-server`).
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// Where the service binaries are: next to the running executable (target/<profile>/), or `CRM_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CRM_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test executables live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// What a stack runs on.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// A PostgreSQL server URL whose database part is replaced by a fresh database.
    pub postgres_url: String,
    pub nats_url: String,
    pub workers: usize,
    /// Extra environment for both services.
    pub env: Vec<(String, String)>,
    /// Extra environment for crm-api only (applied after `env`).
    pub api_env: Vec<(String, String)>,
    /// Wait for this path before calling crm-api started (`/readyz` by default; `/healthz` when it is meant to
    /// run without NATS).
    pub api_ready_path: String,
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Default for StackSpec {
    fn default() -> Self {
        StackSpec {
            postgres_url: std::env::var("BENCH_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            nats_url: std::env::var("BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
            workers: 1,
            env: Vec::new(),
            api_env: Vec::new(),
            api_ready_path: "/readyz".into(),
            bin_dir: bin_dir(),
            log_dir: std::env::temp_dir(),
        }
    }
}

/// A running pipeline.
pub struct Stack {
    pub api: Service,
    /// crm-api replicas beyond the first ([`Stack::add_api`]), on the same database and stream.
    pub more_apis: Vec<Service>,
    pub workers: Vec<Service>,
    pub api_url: String,
    pub env: HashMap<String, String>,
    pub database: String,
    pub database_url: String,
    pub stream: String,
    server_url: String,
    nats_url: String,
    bin_dir: PathBuf,
    log_dir: PathBuf,
}

impl Stack {
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

/// The servers of a comma-separated NATS URL list.
pub fn seeds(urls: &str) -> Vec<async_nats::ServerAddr> {
    urls.split(',').map(str::trim).filter_map(|u| u.parse().ok()).collect()
}

fn with_database(server_url: &str, database: &str) -> anyhow::Result<String> {
    let (server, _) = server_url.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("database URL needs a /<database>"))?;
    Ok(format!("{server}/{database}"))
}

impl Stack {
    pub async fn start(spec: StackSpec) -> anyhow::Result<Stack> {
        let id = Uuid::new_v4().simple().to_string();
        let database = format!("crm_bench_{id}");
        let mut admin = PgConnection::connect(&spec.postgres_url).await?;
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await?;
        let _ = admin.close().await;
        let database_url = with_database(&spec.postgres_url, &database)?;
        let stream = format!("B_{id}");
        let api_port = free_port();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), database_url.clone()),
            ("NATS_URL".into(), spec.nats_url.clone()),
            ("CRM_STREAM".into(), stream.clone()),
            ("CRM_SUBJECT_PREFIX".into(), format!("b{id}")),
            ("CRM_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("CRM_EGRESS_ALLOW_HTTP".into(), "true".into()),
            ("CRM_EGRESS_ALLOW_CIDRS".into(), "127.0.0.0/8".into()),
            ("RUST_LOG".into(), "warn".into()),
        ]);
        // A valid key: base64 of exactly 32 bytes.
        let key: [u8; 32] = {
            let mut k = [0u8; 32];
            k[..16].copy_from_slice(Uuid::new_v4().as_bytes());
            k[16..].copy_from_slice(Uuid::new_v4().as_bytes());
            k
        };
        env.insert("CRM_SECRET_KEY".into(), base64::engine::general_purpose::STANDARD.encode(key));
        env.extend(spec.env.iter().cloned());
        let mut api_env = env.clone();
        api_env.insert("CRM_API_ADDR".into(), format!("127.0.0.1:{api_port}"));
        api_env.extend(spec.api_env.iter().cloned());
        let api = Service::spawn_ready_at(
            "crm-api",
            &spec.bin_dir.join("crm-api"),
            api_env,
            api_port,
            &spec.log_dir,
            &spec.api_ready_path,
        )
        .await?;
        let mut stack = Stack {
            api,
            more_apis: Vec::new(),
            workers: Vec::new(),
            api_url: format!("http://127.0.0.1:{api_port}"),
            env,
            database,
            database_url,
            stream,
            server_url: spec.postgres_url.clone(),
            nats_url: spec.nats_url.clone(),
            bin_dir: spec.bin_dir.clone(),
            log_dir: spec.log_dir.clone(),
        };
        for _ in 0..spec.workers {
            stack.add_worker().await?;
        }
        Ok(stack)
    }

    /// Starts another crm-api replica, with the first one's environment on a port of its own.
    pub async fn add_api(&mut self) -> anyhow::Result<()> {
        let port = free_port();
        let mut env = self.api.env.clone();
        env.insert("CRM_API_ADDR".into(), format!("127.0.0.1:{port}"));
        let name = format!("crm-api-{}", self.more_apis.len() + 2);
        let ready = self.api.ready_path.clone();
        let api =
            Service::spawn_ready_at(&name, &self.bin_dir.join("crm-api"), env, port, &self.log_dir, &ready).await?;
        self.more_apis.push(api);
        Ok(())
    }

    /// The base URL of every crm-api replica, the first one first.
    pub fn api_urls(&self) -> Vec<String> {
        std::iter::once(&self.api).chain(&self.more_apis).map(|a| format!("http://127.0.0.1:{}", a.port)).collect()
    }

    pub async fn add_worker(&mut self) -> anyhow::Result<()> {
        let port = free_port();
        let mut env = self.env.clone();
        env.insert("WORKER_ADDR".into(), format!("127.0.0.1:{port}"));
        let name = format!("delivery-worker-{}", self.workers.len() + 1);
        let worker = Service::spawn(&name, &self.bin_dir.join("delivery-worker"), env, port, &self.log_dir).await?;
        self.workers.push(worker);
        Ok(())
    }

    /// Creates `n` workspaces, each with an editor-capable admin token and its webhook pointed at `url`.
    /// The workspaces of `scenario` (`n` of them), their webhooks pointed at `receiver` (the hanging one at its
    /// endpoint that never answers).
    pub async fn targets(
        &self,
        scenario: crate::scenario::Scenario,
        n: usize,
        receiver: &crate::receiver::BenchReceiver,
    ) -> anyhow::Result<Vec<crate::load::Target>> {
        use crate::scenario::Class;
        let classes = scenario.classes(n);
        let urls: Vec<String> = classes
            .iter()
            .map(|c| if *c == Class::Hanging { receiver.hanging_url() } else { receiver.url() })
            .collect();
        let created = self.workspaces(&urls).await?;
        Ok(created
            .into_iter()
            .zip(classes)
            .map(|((ws, token), class)| crate::load::Target::new(ws, token, class))
            .collect())
    }

    /// Creates a workspace per URL, each with an admin token and its webhook pointed at that URL.
    pub async fn workspaces(&self, urls: &[String]) -> anyhow::Result<Vec<(Uuid, String)>> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let mut out = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let ws: serde_json::Value = client
                .post(format!("{}/admin/workspaces", self.api_url))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"name": format!("bench-{i}")}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let id: Uuid = ws["id"].as_str().unwrap_or_default().parse()?;
            let token: serde_json::Value = client
                .post(format!("{}/admin/workspaces/{id}/tokens", self.api_url))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"role": "admin", "name": "bench"}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let token = token["token"].as_str().unwrap_or_default().to_owned();
            client
                .put(format!("{}/v1/workspaces/{id}/settings/crm-webhook", self.api_url))
                .bearer_auth(&token)
                .json(
                    &serde_json::json!({"enabled": true, "url": url, "events": ["crm_row.created", "crm_row.updated"],
                                          "secret": format!("bench-secret-{id}")}),
                )
                .send()
                .await?
                .error_for_status()?;
            out.push((id, token));
        }
        Ok(out)
    }

    /// Stops every process (SIGTERM), drops the database and deletes the stream.
    pub async fn stop(mut self) {
        for w in &mut self.workers {
            w.terminate().await;
        }
        for api in &mut self.more_apis {
            api.terminate().await;
        }
        self.api.terminate().await;
        if let Ok(mut admin) = PgConnection::connect(&self.server_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
                .execute(&mut admin)
                .await;
        }
        let connect =
            async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2)).connect(seeds(&self.nats_url));
        if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
            let _ = async_nats::jetstream::new(client).delete_stream(&self.stream).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_switches_are_voluntary_and_involuntary_together() {
        let status = "Name:\tpostgres\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(switches_in(status), 127);
        assert_eq!(switches_in("Name:\tx\n"), 0);
        // This process has switched at least once by the time it reads its own numbers.
        assert!(context_switches(std::process::id()) > 0);
    }
}
