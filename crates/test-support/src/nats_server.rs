//! A private `nats-server` for tests that stop and restart NATS. It runs on a spare port with its own store, so
//! the machine's shared server is never touched.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
    /// Server configuration file text (e.g. `max_payload: 8192`), used from the next (re)start on.
    pub config: Option<String>,
}

fn binary() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server")
            .to_owned()
    })
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and waits until it accepts connections.
    pub async fn start() -> NatsServer {
        let mut server = NatsServer::unstarted(&uuid::Uuid::new_v4().simple().to_string(), None);
        server.restart().await;
        server
    }

    /// Starts a server like [`NatsServer::start`], with `config` as its configuration file.
    pub async fn start_with_config(config: &str) -> NatsServer {
        let mut server = NatsServer::unstarted(&uuid::Uuid::new_v4().simple().to_string(), Some(config.to_owned()));
        server.restart().await;
        server
    }

    /// A server on a free port with its store under the temporary directory, named by `id`; not running yet.
    fn unstarted(id: &str, config: Option<String>) -> NatsServer {
        let store = std::env::temp_dir().join(format!("crm-test-nats-{id}"));
        NatsServer { port: crate::free_port(), store, child: None, config }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store, and waits until JetStream answers.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts the process without waiting for it (a cluster's nodes answer only once enough of them run).
    fn spawn(&mut self) {
        let mut command = Command::new(binary());
        if let Some(config) = &self.config {
            let path = self.store.with_extension("conf");
            std::fs::write(&path, config).expect("write nats-server config");
            command.arg("-c").arg(path);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .arg("-l")
            .arg(self.store.with_extension("log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server (install the nats-server package)");
        self.child = Some(child);
    }

    /// Waits until the server accepts connections and JetStream answers on it.
    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(client) = async_nats::connect(self.url()).await {
                // Ready means JetStream answers, not just the port.
                if let Ok(reply) = client.request("$JS.API.INFO", "".into()).await {
                    if !String::from_utf8_lossy(&reply.payload).contains("\"error\"") {
                        return;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.store.with_extension("log")).unwrap_or_default();
                panic!("nats-server did not start on port {}; its log:\n{log}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
        let _ = std::fs::remove_file(self.store.with_extension("log"));
        let _ = std::fs::remove_file(self.store.with_extension("conf"));
    }
}

/// A JetStream cluster of private `nats-server` processes on spare ports, each with its own store, client port,
/// cluster (route) port and monitoring port. Every node lists every route, so any node can be killed and
/// restarted on its own.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    /// Monitoring (HTTP) port of each node, for `/connz` and `/jsz`.
    pub monitor_ports: Vec<u16>,
    pub name: String,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream answers on each (a meta leader is elected).
    pub async fn start(size: usize) -> NatsCluster {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("crm-test-{}", &id[..8]);
        let route_ports: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let monitor_ports: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let routes: Vec<String> = route_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut nodes = Vec::with_capacity(size);
        for i in 0..size {
            let config = format!(
                "server_name: {name}-n{i}\nhttp: 127.0.0.1:{}\ncluster {{\n  name: {name}\n  listen: 127.0.0.1:{}\n  \
                 routes: [{}]\n}}\n",
                monitor_ports[i],
                route_ports[i],
                routes.join(", ")
            );
            let mut node = NatsServer::unstarted(&format!("{id}-n{i}"), Some(config));
            node.spawn();
            nodes.push(node);
        }
        for node in &nodes {
            node.wait_ready().await;
        }
        NatsCluster { nodes, monitor_ports, name }
    }

    /// Every node's client URL, comma-separated: the `NATS_URL` a service of the cluster is given.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The node whose server name is `server_name`.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|i| format!("{}-n{i}", self.name) == server_name)
    }

    pub fn monitor_url(&self, node: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.monitor_ports[node])
    }
}
