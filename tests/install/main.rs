//! The install files, offline, with the real tools: `manifests/` and its variants rendered by `kubectl kustomize`,
//! the charts of `../shared/charts` rendered by a real `helm` and `helmfile` with `helm-values/`, every object
//! validated strictly against the Kubernetes schema, the collector's values against the chart's JSON Schema, the
//! certificates of `make certs`, the Dockerfile with hadolint. (Applying them to a real API server, with the
//! ServiceAccount's permissions, is in `tests/e2e/install.rs`.)

#[path = "../common/mod.rs"]
mod common;

mod charts;
mod manifests;
mod render;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The team's shared files (charts, schemas): `OTEL_INJECTOR_SHARED`, else `../shared` beside the repository.
fn shared() -> PathBuf {
    let dir = std::env::var_os("OTEL_INJECTOR_SHARED").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared"));
    assert!(dir.join("charts").is_dir(), "shared files not found at {} (set OTEL_INJECTOR_SHARED)", dir.display());
    dir
}

/// Where `make install-tools` put helm, helmfile and hadolint.
fn tools_dir() -> PathBuf {
    let default = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/otel-injector/tools");
    let dir = std::env::var_os("OTEL_INJECTOR_TOOLS").map(PathBuf::from).unwrap_or(default);
    assert!(dir.join("bin/helm").exists(), "{} has no helm: run `make install-tools` (make test does)", dir.display());
    dir
}

/// Runs `cmd`; its stdout, or a failure with its stderr.
fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} runs: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every YAML document of `text`, as JSON.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one object of `kind` (and `name`, when given).
fn find<'a>(objects: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<_> =
        objects.iter().filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n)).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name:?}");
    found[0]
}

/// One strict validation result of `check.py k8s`.
#[derive(Debug, serde::Deserialize)]
struct Validated {
    kind: String,
    name: Option<String>,
    result: String,
    message: String,
}

/// Validates every document of `yaml` strictly against Kubernetes `version`; custom resources (no schema) are
/// returned for the caller to check, any invalid object fails.
fn validate_strictly(label: &str, yaml: &str, version: &str) -> Vec<Validated> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{}.yaml", label.replace('/', "-")));
    std::fs::write(&file, yaml).expect("write");
    let mut cmd = Command::new(common::python());
    cmd.arg(repo().join("tests/install/check.py")).args(["k8s", version]).arg(&file);
    let rows: Vec<Validated> = serde_json::from_str(&run(cmd)).expect("check.py output");
    assert!(!rows.is_empty(), "{label}: nothing rendered");
    let invalid: Vec<String> = rows
        .iter()
        .filter(|r| r.result == "invalid")
        .map(|r| format!("{} {}: {}", r.kind, r.name.as_deref().unwrap_or("(unnamed)"), r.message))
        .collect();
    assert!(invalid.is_empty(), "{label} against Kubernetes {version}:\n{}", invalid.join("\n"));
    rows.into_iter().filter(|r| r.result == "no-schema").collect()
}
