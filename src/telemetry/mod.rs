//! The webhook's own telemetry: logs (structured lines on stderr, text or JSON, filtered with the tracing
//! `EnvFilter` syntax) and Prometheus [`metrics`].

pub mod metrics;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `filter` falls back to `default` (e.g. `info`).
pub fn init(format: LogFormat, filter: Option<&str>, default: &str) -> Result<(), String> {
    let filter = filter.unwrap_or(default);
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("--log-level {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
