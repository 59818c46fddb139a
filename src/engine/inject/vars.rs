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
pub const VARS: [Var; 11] = [
    Var { name: "OTEL_SERVICE_NAME", code: "SN", source: Source::ServiceName },
    Var { name: ENDPOINT, code: "EP", source: Source::Endpoint },
    Var { name: PROTOCOL, code: "PR", source: Source::Protocol },
    Var { name: HEADERS, code: "HD", source: Source::Headers },
    Var { name: "OTEL_TRACES_EXPORTER", code: "TE", source: Source::Exporter(Signal::Traces) },
    Var { name: "OTEL_METRICS_EXPORTER", code: "ME", source: Source::Exporter(Signal::Metrics) },
    Var { name: "OTEL_LOGS_EXPORTER", code: "LE", source: Source::Exporter(Signal::Logs) },
    Var { name: "OTEL_TRACES_SAMPLER", code: "TS", source: Source::Sampler },
    Var { name: "OTEL_TRACES_SAMPLER_ARG", code: "TA", source: Source::SamplerArg },
    Var { name: "OTEL_PROPAGATORS", code: "PG", source: Source::Propagators },
    Var { name: RESOURCE_ATTRIBUTES, code: "RA", source: Source::MergedAttributes },
];

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
