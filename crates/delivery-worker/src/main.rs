//! `delivery-worker [serve]`: consumes and delivers until SIGTERM, then drains and exits 0.

use delivery_worker::{Worker, WorkerConfig, WorkerOptions};
use service_common::{telemetry, Env};
use std::process::ExitCode;

const HELP: &str = "delivery-worker — webhook delivery worker of crm-webhook-sync

USAGE:
    delivery-worker [serve]     consume the stream and deliver webhooks until SIGTERM
    delivery-worker --help | --version

Configuration is read from the environment; see the README's configuration table.
Required: DATABASE_URL, CRM_SECRET_KEY.";

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(exit) = service_common::cli::command("delivery-worker", env!("CARGO_PKG_VERSION"), HELP, &["serve"]) {
        return exit;
    }
    let config = match WorkerConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("delivery-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = telemetry::init_service(
        "delivery-worker",
        "info,sqlx=warn",
        std::io::stderr,
        config.common.otlp_endpoint.as_deref(),
    );
    let shutdown = service_common::shutdown::on_signal();
    let result = async { Worker::build(config, WorkerOptions::default()).await?.run_until_stopped(shutdown).await };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delivery-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
