//! Test support, in one place and never in the product: built for the crate's own tests and, through the `testing`
//! feature, for the integration tests, benches, examples and fuzzers.
//!
//! - [`fixtures`]: builders of pods, workloads and AdmissionReviews;
//! - [`hostile`]: the objects a hostile tenant could send, and a config that instruments them;
//! - [`preserve`]: what "the patch keeps every field it does not own" means, checked;
//! - [`fuzz_checks`]: the fuzzers' checks, replayed on stable by `tests/fuzz_replay.rs`;
//! - [`otlp`]: an in-process OTLP trace receiver, and collectors that are down;
//! - [`sdk_sink`]: OTLP receivers for traces, metrics and logs on many addresses, for the SDK tests.

pub mod fixtures;
pub mod fuzz_checks;
pub mod hostile;
pub mod otlp;
pub mod preserve;
pub mod sdk_sink;
