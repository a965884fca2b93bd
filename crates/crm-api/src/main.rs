//! `crm-api [serve]` serves; `crm-api migrate` applies migrations and exits.

use crm_api::{ApiConfig, Application};
use service_common::{db, telemetry, Env};
use std::process::ExitCode;

const HELP: &str = "crm-api — REST API and outbox relay of crm-webhook-sync

USAGE:
    crm-api [serve]     apply pending migrations (unless CRM_MIGRATE_ON_START=false) and serve
    crm-api migrate     apply pending migrations and exit
    crm-api reseal-secrets
                        re-seal every stored webhook secret with CRM_SECRET_KEY (old keys in
                        CRM_SECRET_KEY_PREVIOUS), so an old key can be retired
    crm-api --help | --version

Configuration is read from the environment; see the README's configuration table.
Required: DATABASE_URL, CRM_SECRET_KEY.";

#[tokio::main]
async fn main() -> ExitCode {
    let command = match service_common::cli::command(
        "crm-api",
        env!("CARGO_PKG_VERSION"),
        HELP,
        &["serve", "migrate", "reseal-secrets"],
    ) {
        Ok(command) => command,
        Err(exit) => return exit,
    };
    let config = match ApiConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("crm-api: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry =
        telemetry::init_service("crm-api", "info,sqlx=warn", std::io::stderr, config.common.otlp_endpoint.as_deref());
    let result = match command.as_str() {
        "migrate" => migrate(&config).await,
        "reseal-secrets" => reseal(&config).await,
        _ => serve(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crm-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &ApiConfig) -> anyhow::Result<()> {
    let pool = db::connect(&config.common.database_url, 2, "crm-api-migrate").await?;
    crm_db::migrate(&pool).await?;
    println!("migrations applied");
    Ok(())
}

async fn reseal(config: &ApiConfig) -> anyhow::Result<()> {
    let pool = db::connect(&config.common.database_url, 2, "crm-api-reseal").await?;
    let report = crm_api::repo::settings::reseal_all(&pool, &config.common.secret_keys).await?;
    println!(
        "re-sealed {} secret(s); {} already on the current key; {} unreadable",
        report.resealed, report.already_current, report.unreadable
    );
    anyhow::ensure!(report.unreadable == 0, "some secrets open with no configured key; keep the old key");
    Ok(())
}

async fn serve(config: ApiConfig) -> anyhow::Result<()> {
    let shutdown = service_common::shutdown::on_signal();
    Application::build(config).await?.run_until_stopped(shutdown).await
}
