//! The pure engine: configuration values, policy, the object view, injection, patches and status.
//!
//! No I/O, no clock, no globals; the webhook, `preview` and the benches call [`inject::mutate`].

pub mod audit;
pub mod config;
pub mod inject;
pub mod limits;
pub mod object;
pub mod patch;
pub mod policy;
pub mod report;
pub mod values;
pub mod warnings;
pub mod workload;
