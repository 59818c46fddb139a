//! End to end through a real kube-apiserver (v1.20, built by `make test` from Debian's source package) with real
//! `kubectl` and the real `otel-injector` binary: what users do with the webhook in a cluster; and, in `lifecycle`,
//! the real `serve` process over months: reloads, connections the way the API server uses them, bounded memory and
//! a drain that loses no admission. (One binary, so the long keep-alive waits overlap with the cluster tests.)

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod agent_runtime;
mod agents;
mod collector;
mod commands;
mod controllers;
mod corpus;
mod harness;
mod install;
mod lifecycle;
mod namespace_policy;
mod sdks;
mod tenant;
