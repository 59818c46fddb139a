//! The annotation (and label) keys of SPEC §2: the webhook's own, the one it writes, and the resource-attribute
//! prefix it reads.

/// Opt in / opt out (annotation or label).
pub(crate) const INJECT: &str = "otel-injector.io/inject";
/// Add the collector sidecar.
pub(crate) const SIDECAR: &str = "otel-injector.io/sidecar";
/// Only these containers.
pub(crate) const CONTAINER_NAMES: &str = "otel-injector.io/container-names";
/// `service.name` override.
pub(crate) const SERVICE_NAME: &str = "otel-injector.io/service-name";
/// OTLP endpoint override.
pub(crate) const ENDPOINT: &str = "otel-injector.io/endpoint";
/// OTLP protocol.
pub(crate) const PROTOCOL: &str = "otel-injector.io/protocol";
/// Head sampling ratio.
pub(crate) const SAMPLING_RATIO: &str = "otel-injector.io/sampling-ratio";
/// `OTEL_PROPAGATORS`.
pub(crate) const PROPAGATORS: &str = "otel-injector.io/propagators";
/// Exported signals.
pub(crate) const SIGNALS: &str = "otel-injector.io/signals";
/// Extra resource attributes, `k=v,k2=v2`.
pub(crate) const RESOURCE_ATTRIBUTES: &str = "otel-injector.io/resource-attributes";
/// One resource attribute per annotation (OpenTelemetry Operator convention).
pub(crate) const RESOURCE_PREFIX: &str = "resource.opentelemetry.io/";
/// `skip`: leave alone a container that draws variables from a Secret (default `instrument`).
pub(crate) const ENV_FROM_SECRET: &str = "otel-injector.io/env-from-secret";
/// The OpenTelemetry Operator's agent annotations, `instrumentation.opentelemetry.io/inject-<language>` (read when
/// `agents.operatorAnnotations` is on).
pub(crate) const OPERATOR_INJECT_PREFIX: &str = "instrumentation.opentelemetry.io/inject-";
/// What the webhook did and why.
pub(crate) const STATUS: &str = "otel-injector.io/status";

/// Every annotation of the webhook's own that the engine reads.
pub const ALL: [&str; 12] = [
    INJECT,
    SIDECAR,
    CONTAINER_NAMES,
    SERVICE_NAME,
    ENDPOINT,
    PROTOCOL,
    SAMPLING_RATIO,
    PROPAGATORS,
    SIGNALS,
    RESOURCE_ATTRIBUTES,
    ENV_FROM_SECRET,
    STATUS,
];
