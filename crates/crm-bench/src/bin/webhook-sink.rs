//! `webhook-sink`: a local receiver that verifies both signature schemes of our outbound webhooks and prints each
//! delivery. See `--help`.

use std::process::ExitCode;

use axum::http::StatusCode;
use crm_bench::sink::{self, SinkConfig};

const SECRET_ENV: &str = "WEBHOOK_SINK_SECRET";
const DEFAULT_LISTEN: &str = "127.0.0.1:9100";

const HELP: &str = "\
webhook-sink: receive outbound CRM webhooks locally and verify their signatures

USAGE:
    webhook-sink [--listen ADDR] --secret SECRET [--secret OLD_SECRET ...]
                 [--tolerance-secs N] [--status CODE] [--quiet]

Accepts POST on any path. Each delivery must pass both signature schemes
(x-crm-webhook-timestamp + x-crm-webhook-signature, and Standard Webhooks
webhook-id + webhook-timestamp + webhook-signature) with any of the secrets,
and x-crm-webhook-id, webhook-id and the body's id must be equal. A delivery
that passes is answered CODE with {\"ok\":true}; any failure is answered 401
with {\"ok\":false,\"error\":\"...\"}.

Prints one line per delivery to stdout:
    <time> <verified|REJECTED(reason)> id=.. event=.. attempt=.. workspace=..
    row=.. version=.. changed=a,b
followed, unless --quiet, by the pretty-printed JSON body. Secrets are never
printed. Stops on Ctrl-C or SIGTERM.

OPTIONS:
    --listen ADDR         address to listen on [default: 127.0.0.1:9100]
    --secret SECRET       webhook secret, whsec_<base64> or plain; repeat it to
                          accept several (secret rotation). Without --secret,
                          the secret is read from the WEBHOOK_SINK_SECRET
                          environment variable, which keeps it out of `ps`.
    --tolerance-secs N    maximum allowed |now - timestamp| [default: 300]
    --status CODE         status (200-599) for verified deliveries [default: 200]
    --quiet               print only the one-line summary, not the body
    -h, --help            print this help
    -V, --version         print the version
";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Version,
    Run(Args),
}

#[derive(PartialEq, Eq)]
struct Args {
    listen: String,
    secrets: Vec<String>,
    tolerance_secs: i64,
    status: u16,
    quiet: bool,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("listen", &self.listen)
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .field("tolerance_secs", &self.tolerance_secs)
            .field("status", &self.status)
            .field("quiet", &self.quiet)
            .finish()
    }
}

/// Parses the arguments (without the program name). `env_secret` is the value of [`SECRET_ENV`], used only when no
/// `--secret` is given. Errors are one line and never contain a secret.
fn parse_args(args: Vec<String>, env_secret: Option<String>) -> Result<Command, String> {
    let mut listen = DEFAULT_LISTEN.to_owned();
    let mut secrets = Vec::new();
    let mut tolerance_secs = sink::DEFAULT_TOLERANCE_SECS;
    let mut status = 200;
    let mut quiet = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => listen = value("--listen")?,
            "--secret" => secrets.push(value("--secret")?),
            "--tolerance-secs" => {
                let raw = value("--tolerance-secs")?;
                tolerance_secs = raw
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("--tolerance-secs must be a non-negative integer, got {raw:?}"))?;
            }
            "--status" => {
                let raw = value("--status")?;
                status = raw
                    .parse::<u16>()
                    .ok()
                    .filter(|n| (200..=599).contains(n))
                    .ok_or_else(|| format!("--status must be an HTTP status between 200 and 599, got {raw:?}"))?;
            }
            "--quiet" if inline.is_none() => quiet = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if secrets.is_empty() {
        secrets.extend(env_secret.filter(|s| !s.is_empty()));
    }
    if secrets.is_empty() {
        return Err(format!("no webhook secret: pass --secret or set {SECRET_ENV}"));
    }
    Ok(Command::Run(Args { listen, secrets, tolerance_secs, status, quiet }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("webhook-sink: shutting down");
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = SinkConfig::from_secrets(&args.secrets)?;
    config.tolerance_secs = args.tolerance_secs;
    config.status = StatusCode::from_u16(args.status)?;
    config.quiet = args.quiet;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "webhook-sink {}: listening on http://{addr} ({} secret(s), tolerance {} s, answering {} when verified)",
        env!("CARGO_PKG_VERSION"),
        args.secrets.len(),
        args.tolerance_secs,
        args.status,
    );
    sink::serve(listener, config, shutdown_signal()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut raw = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => raw.push(arg),
            Err(_) => {
                eprintln!("webhook-sink: arguments must be UTF-8");
                return ExitCode::from(2);
            }
        }
    }
    let env_secret = std::env::var(SECRET_ENV).ok();
    match parse_args(raw, env_secret) {
        Ok(Command::Help) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("webhook-sink {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("webhook-sink: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("webhook-sink: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: Option<&str>) -> Result<Command, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()).collect(), env.map(str::to_owned))
    }

    #[test]
    fn defaults_and_every_option() {
        let Command::Run(args) = parse(&["--secret", "s1"], None).unwrap() else { panic!() };
        assert_eq!(
            args,
            Args {
                listen: DEFAULT_LISTEN.into(),
                secrets: vec!["s1".into()],
                tolerance_secs: 300,
                status: 200,
                quiet: false
            }
        );
        let Command::Run(args) = parse(
            &[
                "--listen",
                "127.0.0.1:0",
                "--secret=new",
                "--secret",
                "old",
                "--tolerance-secs",
                "5",
                "--status=503",
                "--quiet",
            ],
            Some("ignored"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(args.listen, "127.0.0.1:0");
        assert_eq!(args.secrets, ["new", "old"]);
        assert_eq!((args.tolerance_secs, args.status, args.quiet), (5, 503, true));
    }

    #[test]
    fn the_secret_can_come_from_the_environment() {
        let Command::Run(args) = parse(&[], Some("from-env")).unwrap() else { panic!() };
        assert_eq!(args.secrets, ["from-env"]);
        assert!(parse(&[], None).unwrap_err().contains(SECRET_ENV));
        assert!(parse(&[], Some("")).is_err());
    }

    #[test]
    fn help_version_and_errors() {
        assert_eq!(parse(&["--help"], None), Ok(Command::Help));
        assert_eq!(parse(&["-V"], None), Ok(Command::Version));
        assert!(parse(&["--secret"], None).unwrap_err().contains("needs a value"));
        assert!(parse(&["--secret", "s", "--status", "99"], None).is_err());
        assert!(parse(&["--secret", "s", "--tolerance-secs", "-1"], None).is_err());
        assert!(parse(&["--secret", "s", "--bogus"], None).is_err());
        let err = parse(&["--secret", "hunter2", "--status", "x"], None).unwrap_err();
        assert!(!err.contains("hunter2"));
        let Command::Run(args) = parse(&["--secret", "hunter2"], None).unwrap() else { panic!() };
        assert!(!format!("{args:?}").contains("hunter2"));
    }
}
