//! Logging set-up, in one place. The writer is a parameter so tests can capture or silence output.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` (default `info`) filters, one line per event, written by `writer`.
/// Returns quietly if a subscriber is already installed (tests boot many services in one process).
pub fn init<W>(default_filter: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_writer(writer).try_init();
}
