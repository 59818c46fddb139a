//! Prometheus metrics: admissions by kind, operation, decision and reason; latency and patch sizes; rejected
//! requests; the namespace cache (size, freshness, watch errors, lookups of namespaces it had not seen);
//! connections, reloads, the certificate's expiry; spans dropped.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an answered admission.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// Object kind (`Pod`, `Deployment`, … or `other`).
    pub kind: &'static str,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'static str,
    /// What the webhook did (see [`crate::webhook::admission::Decision`]).
    pub decision: &'static str,
    /// Why, as a code (see [`crate::engine::policy::Cause`]).
    pub reason: &'static str,
}

/// Labels of a request answered with an HTTP error.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    /// Why (`malformed`, `too_large`, `unsupported_media_type`, `timeout`, `too_slow`, `bad_query`, `read`, `busy`,
    /// `overloaded`, `deadline`).
    pub reason: String,
}

/// Labels of a language agent added to a container.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AgentLabels {
    /// `java`, `nodejs` or `python`.
    pub language: &'static str,
    /// `image-volume` or `init-container`.
    pub delivery: &'static str,
}

/// Labels of a lookup of a namespace the cache had not seen.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LookupLabels {
    /// `found`, `not_found`, `error` or `timeout`.
    pub outcome: &'static str,
}

/// Labels of a connection event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectionLabels {
    /// `accepted`, `evicted` (one waiting without a request gave way to it at the cap), `over_limit` (closed at
    /// once: too many open, all busy) or `accept_error`.
    pub event: &'static str,
}

/// Labels of a reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    /// `certificate`, `client_ca` or `config`.
    pub what: &'static str,
    /// `success` or `failure` (the last good one keeps serving).
    pub result: &'static str,
}

/// Labels of dropped spans.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    /// `queue_full` (the exporter is slow or the collector away) or `export_failed`.
    pub reason: &'static str,
}

/// Spans of the webhook's own traces that were not delivered, by reason; shared by the tracer (which counts) and
/// the metrics (which export).
#[derive(Debug, Clone)]
pub struct SpanDrops {
    family: Family<DropLabels, Counter>,
    /// The two reasons the tracer counts, held so that counting is one atomic add.
    queue_full: Counter,
    export_failed: Counter,
}

impl Default for SpanDrops {
    fn default() -> Self {
        let family = Family::<DropLabels, Counter>::default();
        let queue_full = family.get_or_create(&DropLabels { reason: "queue_full" }).clone();
        let export_failed = family.get_or_create(&DropLabels { reason: "export_failed" }).clone();
        Self { family, queue_full, export_failed }
    }
}

impl SpanDrops {
    /// Counts `n` spans dropped for `reason`.
    pub fn dropped(&self, reason: &'static str, n: u64) {
        match reason {
            "queue_full" => self.queue_full.inc_by(n),
            "export_failed" => self.export_failed.inc_by(n),
            other => self.family.get_or_create(&DropLabels { reason: other }).inc_by(n),
        };
    }
}

/// Log lines the non-blocking log writer dropped because stderr was not read fast enough (read at scrape time).
#[derive(Clone, Default)]
pub struct LineDrops(Option<tracing_appender::non_blocking::ErrorCounter>);

impl LineDrops {
    /// The count of the writer that owns `counter`.
    pub fn new(counter: tracing_appender::non_blocking::ErrorCounter) -> Self {
        Self(Some(counter))
    }

    fn get(&self) -> u64 {
        self.0.as_ref().map_or(0, |c| c.dropped_lines() as u64)
    }
}

impl std::fmt::Debug for LineDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LineDrops({})", self.get())
    }
}

/// What the namespace cache looks like at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CacheState {
    /// Namespaces held.
    pub namespaces: usize,
    /// Whether the first list has completed.
    pub synced: bool,
    /// Time since the watch last delivered an event, if it ever did.
    pub since_last_event: Option<Duration>,
}

/// Every metric the webhook exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    patch_bytes: Histogram,
    warnings: Counter,
    secret_fed: Counter,
    agents: Family<AgentLabels, Counter>,
    cache_namespaces: Gauge,
    cache_synced: Gauge,
    cache_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    watch_errors: Counter,
    lookups: Family<LookupLabels, Counter>,
    connections: Family<ConnectionLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    cert_not_after: Gauge,
    log_lines_dropped: Counter,
    line_drops: LineDrops,
    line_drops_seen: std::sync::atomic::AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(SpanDrops::default())
    }
}

/// Latency buckets: resolving below the API server's own first bucket (5 ms), up to its longest timeout (30 s).
const DURATION_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

impl Metrics {
    /// Every metric, with `spans_dropped` counted by the tracer.
    pub fn new(spans_dropped: SpanDrops) -> Self {
        let mut registry = Registry::with_prefix("otel_injector");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register("admission_requests", "Admission reviews answered", admissions.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("admission_errors", "Requests answered with an HTTP error", errors.clone());
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register("admission_duration_seconds", "Time to answer an admission review", duration.clone());
        // 64 B … 1 MiB.
        let patch_bytes = Histogram::new(exponential_buckets(64.0, 4.0, 8));
        registry.register(
            "admission_patch_bytes",
            "Size of the JSON Patch returned (patched reviews)",
            patch_bytes.clone(),
        );
        let warnings = Counter::default();
        registry.register("admission_warnings", "Warnings returned to API clients", warnings.clone());
        let secret_fed = Counter::default();
        registry.register(
            "admission_secret_fed_containers",
            "Containers instrumented although they draw variables (envFrom) from a Secret, which is never read",
            secret_fed.clone(),
        );
        let cache_namespaces = Gauge::default();
        registry.register("namespace_cache_namespaces", "Namespaces in the watched cache", cache_namespaces.clone());
        let cache_synced = Gauge::default();
        registry.register("namespace_cache_synced", "1 once the namespace cache has synced", cache_synced.clone());
        let cache_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "namespace_cache_seconds_since_event",
            "Seconds since the namespace watch last delivered an event (-1: never)",
            cache_age.clone(),
        );
        let watch_errors = Counter::default();
        registry.register("namespace_watch_errors", "Namespace watch errors (each retried)", watch_errors.clone());
        let agents = Family::<AgentLabels, Counter>::default();
        registry.register(
            "admission_agents",
            "Language agents added to containers, by language and delivery (image-volume, init-container)",
            agents.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "namespace_lookups",
            "Lookups of namespaces the cache had not seen, by outcome",
            lookups.clone(),
        );
        let connections = Family::<ConnectionLabels, Counter>::default();
        registry.register("connections", "Webhook connections, by event", connections.clone());
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "Reloads of the certificate, client CA and config, by result", reloads.clone());
        let cert_not_after = Gauge::default();
        registry.register(
            "tls_certificate_not_after_seconds",
            "When the serving certificate expires, in seconds since the epoch",
            cert_not_after.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not read fast enough (logging never blocks an admission)",
            log_lines_dropped.clone(),
        );
        registry.register(
            "spans_dropped",
            "Spans of the webhook's own traces not delivered (queue full or export failed)",
            spans_dropped.family.clone(),
        );
        Self {
            registry,
            admissions,
            errors,
            duration,
            patch_bytes,
            warnings,
            secret_fed,
            agents,
            cache_namespaces,
            cache_synced,
            cache_age,
            watch_errors,
            lookups,
            connections,
            reloads,
            cert_not_after,
            log_lines_dropped,
            line_drops: LineDrops::default(),
            line_drops_seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// These metrics, exporting the lines `drops` counts as `log_lines_dropped`.
    pub(crate) fn counting_log_drops(mut self, drops: LineDrops) -> Self {
        self.line_drops = drops;
        self
    }

    /// Counts one answered review, with the size of its patch if it has one.
    pub fn admitted(&self, labels: AdmissionLabels, warnings: usize, patch_bytes: Option<usize>, elapsed: Duration) {
        self.admissions.get_or_create(&labels).inc();
        self.warnings.inc_by(warnings as u64);
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(bytes) = patch_bytes {
            self.patch_bytes.observe(bytes as f64);
        }
    }

    /// Counts containers instrumented although they draw variables from a Secret.
    pub(crate) fn secret_fed(&self, containers: usize) {
        if containers > 0 {
            self.secret_fed.inc_by(containers as u64);
        }
    }

    /// Counts the language agents an admission added.
    pub(crate) fn agents_added(&self, added: &[(&'static str, &'static str)]) {
        for &(language, delivery) in added {
            self.agents.get_or_create(&AgentLabels { language, delivery }).inc();
        }
    }

    /// Counts one request answered with an HTTP error.
    pub(crate) fn rejected(&self, reason: &str) {
        self.errors.get_or_create(&ErrorLabels { reason: reason.to_owned() }).inc();
    }

    /// Counts one namespace watch error.
    pub(crate) fn namespace_watch_error(&self) {
        self.watch_errors.inc();
    }

    /// Counts one lookup of a namespace the cache had not seen.
    pub(crate) fn namespace_lookup(&self, outcome: &'static str) {
        self.lookups.get_or_create(&LookupLabels { outcome }).inc();
    }

    /// Counts a connection event.
    pub fn connection(&self, event: &'static str) {
        self.connections.get_or_create(&ConnectionLabels { event }).inc();
    }

    /// Counts a reload of `what` with its `result`.
    pub fn reloaded(&self, what: &'static str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { what, result }).inc();
    }

    /// Sets the serving certificate's expiry gauge.
    pub(crate) fn observe_certificate(&self, not_after: i64) {
        self.cert_not_after.set(not_after);
    }

    /// Sets the namespace cache gauges (called at scrape time).
    pub(crate) fn observe_cache(&self, state: CacheState) {
        self.cache_namespaces.set(i64::try_from(state.namespaces).unwrap_or(i64::MAX));
        self.cache_synced.set(i64::from(state.synced));
        self.cache_age.set(state.since_last_event.map_or(-1.0, |d| d.as_secs_f64()));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let dropped = self.line_drops.get();
        let seen = self.line_drops_seen.swap(dropped, std::sync::atomic::Ordering::AcqRel);
        self.log_lines_dropped.inc_by(dropped.saturating_sub(seen));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_admissions_errors_latency_and_patch_sizes() {
        let m = Metrics::default();
        let labels = AdmissionLabels { kind: "Pod", operation: "CREATE", decision: "instrumented", reason: "default" };
        m.admitted(labels.clone(), 2, Some(900), Duration::from_micros(40));
        m.admitted(labels, 0, Some(900), Duration::from_micros(3_000));
        m.rejected("malformed");
        let text = m.encode();
        for line in [
            r#"otel_injector_admission_requests_total{kind="Pod",operation="CREATE",decision="instrumented",reason="default"} 2"#,
            r#"otel_injector_admission_errors_total{reason="malformed"} 1"#,
            "otel_injector_admission_duration_seconds_count 2",
            // Resolved below the API server's first bucket (5 ms).
            r#"otel_injector_admission_duration_seconds_bucket{le="0.00005"} 1"#,
            r#"otel_injector_admission_duration_seconds_bucket{le="0.0025"} 1"#,
            r#"otel_injector_admission_duration_seconds_bucket{le="0.005"} 2"#,
            r#"otel_injector_admission_patch_bytes_bucket{le="1024.0"} 2"#,
            "otel_injector_admission_warnings_total 2",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn spans_dropped_are_counted_by_reason() {
        let drops = SpanDrops::default();
        let m = Metrics::new(drops.clone());
        drops.dropped("queue_full", 3);
        drops.dropped("export_failed", 2);
        let text = m.encode();
        assert!(text.contains(r#"otel_injector_spans_dropped_total{reason="queue_full"} 3"#), "{text}");
        assert!(text.contains(r#"otel_injector_spans_dropped_total{reason="export_failed"} 2"#), "{text}");
    }

    #[test]
    fn connection_reload_and_certificate_metrics() {
        let m = Metrics::default();
        m.connection("over_limit");
        m.reloaded("certificate", true);
        m.reloaded("config", false);
        m.observe_certificate(1_800_000_000);
        let text = m.encode();
        for line in [
            r#"otel_injector_connections_total{event="over_limit"} 1"#,
            r#"otel_injector_reloads_total{what="certificate",result="success"} 1"#,
            r#"otel_injector_reloads_total{what="config",result="failure"} 1"#,
            "otel_injector_tls_certificate_not_after_seconds 1800000000",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn namespace_cache_metrics() {
        let m = Metrics::default();
        m.namespace_lookup("timeout");
        m.namespace_watch_error();
        let state = CacheState { namespaces: 7, synced: true, since_last_event: Some(Duration::from_millis(1500)) };
        m.observe_cache(state);
        let text = m.encode();
        for line in [
            r#"otel_injector_namespace_lookups_total{outcome="timeout"} 1"#,
            "otel_injector_namespace_watch_errors_total 1",
            "otel_injector_namespace_cache_namespaces 7",
            "otel_injector_namespace_cache_synced 1",
            "otel_injector_namespace_cache_seconds_since_event 1.5",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        m.observe_cache(CacheState::default());
        assert!(m.encode().contains("otel_injector_namespace_cache_seconds_since_event -1.0"));
    }
}
