//! otel-injector: a Kubernetes mutating admission webhook that instruments workloads with OpenTelemetry.
//!
//! Data flows one way: bytes → AdmissionReview → (object, context) → decision → patch → response.
//! - [`engine`]: the pure decision and patch ([`engine::inject::mutate`]); no I/O, no clock, no async.
//! - [`webhook`]: the HTTP/TLS edge: server, TLS, certificates, the AdmissionReview envelope.
//! - [`cluster`]: what the webhook learns from the Kubernetes API (namespace policy).
//! - [`telemetry`]: the webhook's own logs and metrics.
//! - [`cli`]: the commands (`serve`, `preview`, `certs`).
//! - `testing` (the `testing` feature, on in tests, benches and examples; never in the product): fixtures, hostile
//!   objects, the OTLP receiver and the fuzzers' checks.

pub mod cli;
pub mod cluster;
pub mod engine;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;
