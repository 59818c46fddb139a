//! The pure engine: configuration values, policy, the object view, injection, patches and status.
//!
//! No I/O, no clock, no globals; the webhook, `preview` and the benches call [`inject::mutate`].

pub mod audit;
pub mod config;
pub mod explanation;
pub mod inject;
pub mod json_string;
pub mod keys;
pub mod kubelet_env;
pub mod limits;
pub mod patch;
pub mod pod_view;
pub mod policy;
pub mod syntax;
pub mod warnings;
pub mod workload;

/// Spans on this target are never seen by the tracer's layer: an admission's spans while the tracer's gate is shut,
/// and the engine's steps under them (a child follows its parent's target). The edge that records an admission
/// chooses it; the engine only follows.
pub const UNTRACED: &str = "otel_injector::untraced";
