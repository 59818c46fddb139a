//! The pure engine: configuration values, policy, the object view, injection, patches and status.
//!
//! No I/O, no clock, no globals, no spans of its own; the webhook, `preview` and the benches call [`inject::mutate`].

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
