//! otel-injector: a Kubernetes mutating admission webhook that instruments workloads with OpenTelemetry.
//!
//! Data flows one way: bytes → AdmissionReview → (object, context) → decision → patch → response.
//! The decision and the patch ([`inject::mutate`]) are pure; I/O lives in [`server`], [`tls`] and [`preview`].

pub mod admission;
pub mod certs;
pub mod cli;
pub mod config;
pub mod fixtures;
pub mod inject;
pub mod metrics;
pub mod namespaces;
pub mod object;
pub mod patch;
pub mod policy;
pub mod preview;
pub mod report;
pub mod serve;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod values;
pub mod workload;
