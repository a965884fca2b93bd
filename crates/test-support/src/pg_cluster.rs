//! A private PostgreSQL cluster on a spare port, for tests that restart PostgreSQL without touching the machine's
//! shared server. Uses the installed server binaries (Debian's `postgresql` package); as root it runs them as the
//! `postgres` user, since `initdb` refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("PostgreSQL server binaries under /usr/lib/postgresql/<version>/bin (package postgresql)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let tool = bin.join(tool);
    let output = if is_root() {
        Command::new("runuser").args(["-u", "postgres", "--"]).arg(&tool).args(args).output()
    } else {
        Command::new(&tool).args(args).output()
    };
    output.unwrap_or_else(|e| panic!("running {}: {e}", tool.display()))
}

impl PgCluster {
    /// initdb (trust auth, user `postgres`) and start on a free port; waits until it accepts connections.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("crm-test-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().expect("chown");
            assert!(status.success());
        }
        let d = dir.to_string_lossy().into_owned();
        let out = run(&bin, "initdb", &["-D", &d, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = PgCluster { port: crate::free_port(), dir, bin };
        cluster.up();
        cluster
    }

    fn up(&self) {
        let d = self.dir.to_string_lossy().into_owned();
        let opts = format!("-p {} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=200", self.port);
        let log = format!("{d}/server.log");
        let out = run(&self.bin, "pg_ctl", &["-D", &d, "-l", &log, "-o", &opts, "-w", "-t", "30", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops like a crash (`-m immediate`: no checkpoint, recovery on start) and starts again.
    pub fn restart(&self) {
        let d = self.dir.to_string_lossy().into_owned();
        let _ = run(&self.bin, "pg_ctl", &["-D", &d, "-m", "immediate", "-w", "stop"]);
        self.up();
    }

    /// A URL of the `postgres` database on this cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let d = self.dir.to_string_lossy().into_owned();
        let _ = run(&self.bin, "pg_ctl", &["-D", &d, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
