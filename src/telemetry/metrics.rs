//! Prometheus metrics: admissions by kind, operation and decision; latency; rejected requests.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an answered admission.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// Object kind (`Pod`, `Deployment`, … or `other`).
    pub kind: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// What the webhook did (see [`crate::webhook::admission::Decision`]).
    pub decision: String,
}

/// Labels of a request answered with an HTTP error.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Why (`malformed`, `too_large`, `unsupported_media_type`, `timeout`, `overloaded`).
    pub reason: String,
}

/// Every metric the webhook exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    warnings: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("otel_injector");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register("admission_requests", "Admission reviews answered", admissions.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("admission_errors", "Requests answered with an HTTP error", errors.clone());
        // 25 µs … ~0.8 s: the engine runs in microseconds, a slow client shows up in the tail.
        let duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register("admission_duration_seconds", "Time to answer an admission review", duration.clone());
        let warnings = Counter::default();
        registry.register("admission_warnings", "Warnings returned to API clients", warnings.clone());
        Self { registry, admissions, errors, duration, warnings }
    }
}

impl Metrics {
    /// Counts one answered review.
    pub fn admitted(&self, labels: AdmissionLabels, warnings: usize, elapsed: Duration) {
        self.admissions.get_or_create(&labels).inc();
        self.warnings.inc_by(warnings as u64);
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one request answered with an HTTP error.
    pub fn rejected(&self, reason: &str) {
        self.errors.get_or_create(&ErrorLabels { reason: reason.to_owned() }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
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
    fn counts_admissions_errors_and_latency() {
        let m = Metrics::default();
        let labels =
            AdmissionLabels { kind: "Pod".into(), operation: "CREATE".into(), decision: "instrumented".into() };
        m.admitted(labels.clone(), 2, Duration::from_micros(40));
        m.admitted(labels, 0, Duration::from_micros(40));
        m.rejected("malformed");
        let text = m.encode();
        assert!(
            text.contains(
                r#"otel_injector_admission_requests_total{kind="Pod",operation="CREATE",decision="instrumented"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"otel_injector_admission_errors_total{reason="malformed"} 1"#), "{text}");
        assert!(text.contains("otel_injector_admission_duration_seconds_count 2"), "{text}");
        assert!(text.contains("otel_injector_admission_warnings_total 2"), "{text}");
    }
}
