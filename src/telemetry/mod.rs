//! The webhook's own telemetry: logs (structured lines on stderr, text or [`logs::JsonLines`], filtered with the
//! tracing `EnvFilter` syntax, colour only on a terminal), [`traces`] (one span per admission, exported over OTLP
//! when configured) and Prometheus [`metrics`].

pub mod logs;
pub mod metrics;
pub mod traces;

use std::io::IsTerminal;
use std::time::Duration;

use clap::ValueEnum;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use self::metrics::{LineDrops, SpanDrops};
use self::traces::Setup;

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The installed telemetry: flush and shut it down on exit.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Spans not delivered, for the metrics.
    pub spans_dropped: SpanDrops,
    /// What the tracer does, for the start-up log line.
    pub setup: Option<Setup>,
    tracer: Option<traces::Tracer>,
    /// Log lines dropped by the non-blocking writer, for the metrics.
    pub log_drops: LineDrops,
    /// Flushes the log lines still buffered when dropped (waiting at most about a second).
    log_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Where each admission's trace ids come from.
    pub fn trace_ids(&self) -> traces::TraceIds {
        match (&self.setup, &self.tracer) {
            (Some(Setup::Export { .. }), Some(tracer)) => traces::TraceIds::Tracer(tracer.clone()),
            (Some(Setup::Export { .. } | Setup::Local), _) => traces::TraceIds::LogsOnly,
            (Some(Setup::Disabled) | None, _) => traces::TraceIds::None,
        }
    }

    /// Exports what is queued and stops the exporter, waiting at most `timeout` (off the async threads: the SDK
    /// blocks); the buffered log lines are flushed when this is dropped.
    pub async fn shutdown(&mut self, timeout: Duration) {
        let Some(provider) = self.provider.take() else { return };
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        if let Ok(Err(e)) = stopped {
            tracing::warn!(error = %e, "traces not flushed on exit");
        }
    }
}

/// Installs the global subscriber: logs filtered by `filter` (default `default`, e.g. `info`) on stderr, and, when
/// `traces` is given, the tracer it sets up (from the standard `OTEL_*` variables; its admission spans are exported
/// whatever the log level). Call inside the Tokio runtime when traces are exported over gRPC.
pub fn init(
    format: LogFormat,
    filter: Option<&str>,
    default: &str,
    traces: Option<Setup>,
) -> Result<Telemetry, String> {
    let colour = std::io::stderr().is_terminal();
    // Lines go through a bounded queue to a thread of their own: a stderr nobody reads never blocks an admission.
    let (writer, guard) = logs::stderr_writer();
    let drops = LineDrops::new(writer.error_counter());
    let (dispatch, mut telemetry) =
        subscriber(format, filter.unwrap_or(default), colour, BoxMakeWriter::new(logs::Bounded(writer)), traces)?;
    dispatch.try_init().map_err(|e| format!("cannot install the logger: {e}"))?;
    telemetry.log_drops = drops;
    telemetry.log_writer = Some(guard);
    Ok(telemetry)
}

/// The subscriber [`init`] installs, writing logs to `writer` (with ANSI colour when `colour`), not installed (the
/// benches compare several).
pub fn subscriber(
    format: LogFormat,
    filter: &str,
    colour: bool,
    writer: BoxMakeWriter,
    traces: Option<Setup>,
) -> Result<(impl SubscriberInitExt, Telemetry), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("--log-level {filter:?}: {e}"))?;
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(colour)
            .fmt_fields(logs::TextFields)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(logs::JsonFields)
            .event_format(logs::JsonLines)
            .with_filter(filter)
            .boxed(),
    };
    let spans_dropped = SpanDrops::default();
    let (provider, gate) = match &traces {
        Some(setup) => traces::provider(setup, &spans_dropped)?.unzip(),
        None => (None, None),
    };
    // The admission spans are made with the SDK directly (`traces::ServerSpan`): no tracing layer exports spans.
    let subscriber = tracing_subscriber::registry().with(logs);
    let tracer = provider.as_ref().zip(gate).map(|(provider, gate)| traces::Tracer::new(provider, gate));
    let telemetry =
        Telemetry { provider, spans_dropped, setup: traces, tracer, log_drops: LineDrops::default(), log_writer: None };
    Ok((subscriber, telemetry))
}
