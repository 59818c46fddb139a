//! The variables the webhook writes into a container (SPEC §4), in one table: each one's name, its two-letter code
//! in the status record, and how its value is made. The planner ([`super::env`]), the record ([`super::record`]) and
//! the tests all read this table, so a variable added here is written, recorded and tested together.

use crate::engine::syntax::Signal;

/// How a variable's value is made (the values themselves are worked out by [`super::values_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The resolved `service.name`.
    ServiceName,
    /// The gateway's endpoint, or the sidecar's on localhost.
    Endpoint,
    /// The resolved protocol.
    Protocol,
    /// The configured `headers`, percent-encoded; not set with a sidecar (it adds them) or without headers.
    Headers,
    /// `otlp` when the signal is exported, else `none`.
    Exporter(Signal),
    /// Always `parentbased_traceidratio`.
    Sampler,
    /// The sampling ratio (1 with a sidecar: it samples).
    SamplerArg,
    /// The resolved propagators.
    Propagators,
    /// The resolved protocol, for one signal when the signals' transports differ (see [`super::transport`]).
    SignalProtocol(Signal),
    /// The configured headers, for one signal when the signals' transports differ.
    SignalHeaders(Signal),
    /// Not a literal: merged key by key with the user's pairs (see [`super::resource`]).
    MergedAttributes,
}

/// One variable of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The environment variable.
    pub name: &'static str,
    /// Its code in the status record.
    pub code: &'static str,
    /// How its value is made.
    pub source: Source,
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub(crate) const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
pub(crate) const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_HEADERS`.
pub(crate) const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_RESOURCE_ATTRIBUTES`, the one variable merged rather than left alone.
pub(crate) const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Every variable the webhook writes, in canonical order (the order they are added and recorded in).
pub const VARS: [Var; 17] = [
    Var { name: "OTEL_SERVICE_NAME", code: "SN", source: Source::ServiceName },
    Var { name: ENDPOINT, code: "EP", source: Source::Endpoint },
    Var { name: PROTOCOL, code: "PR", source: Source::Protocol },
    Var { name: HEADERS, code: "HD", source: Source::Headers },
    Var { name: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", code: "TP", source: Source::SignalProtocol(Signal::Traces) },
    Var { name: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", code: "MP", source: Source::SignalProtocol(Signal::Metrics) },
    Var { name: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", code: "LP", source: Source::SignalProtocol(Signal::Logs) },
    Var { name: "OTEL_EXPORTER_OTLP_TRACES_HEADERS", code: "TH", source: Source::SignalHeaders(Signal::Traces) },
    Var { name: "OTEL_EXPORTER_OTLP_METRICS_HEADERS", code: "MH", source: Source::SignalHeaders(Signal::Metrics) },
    Var { name: "OTEL_EXPORTER_OTLP_LOGS_HEADERS", code: "LH", source: Source::SignalHeaders(Signal::Logs) },
    Var { name: "OTEL_TRACES_EXPORTER", code: "TE", source: Source::Exporter(Signal::Traces) },
    Var { name: "OTEL_METRICS_EXPORTER", code: "ME", source: Source::Exporter(Signal::Metrics) },
    Var { name: "OTEL_LOGS_EXPORTER", code: "LE", source: Source::Exporter(Signal::Logs) },
    Var { name: "OTEL_TRACES_SAMPLER", code: "TS", source: Source::Sampler },
    Var { name: "OTEL_TRACES_SAMPLER_ARG", code: "TA", source: Source::SamplerArg },
    Var { name: "OTEL_PROPAGATORS", code: "PG", source: Source::Propagators },
    Var { name: RESOURCE_ATTRIBUTES, code: "RA", source: Source::MergedAttributes },
];

/// How the value of the variable `name` is made, if it is one of the table's.
pub(crate) fn source_of(name: &str) -> Option<Source> {
    VARS.iter().find(|v| v.name == name).map(|v| v.source)
}

/// The variables set to a literal value (all but `OTEL_RESOURCE_ATTRIBUTES`), in canonical order.
pub(crate) fn literals() -> impl Iterator<Item = &'static Var> {
    VARS.iter().filter(|v| v.source != Source::MergedAttributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_unique_and_codes_are_two_capitals() {
        for (i, v) in VARS.iter().enumerate() {
            assert!(v.name.starts_with("OTEL_"), "{}", v.name);
            assert!(v.code.len() == 2 && v.code.bytes().all(|b| b.is_ascii_uppercase()), "{}", v.code);
            for w in &VARS[i + 1..] {
                assert!(v.name != w.name && v.code != w.code, "{v:?} and {w:?}");
            }
        }
        assert_eq!(VARS.iter().filter(|v| v.source == Source::MergedAttributes).count(), 1);
        assert_eq!(literals().count(), VARS.len() - 1);
    }
}
