//! End to end through a real kube-apiserver (v1.20, built by `make test` from Debian's source package) with real
//! `kubectl` and the real `otel-injector` binary: what users do with the webhook in a cluster.

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod commands;
mod corpus;
mod harness;
mod namespace_policy;
