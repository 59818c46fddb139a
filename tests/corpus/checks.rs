//! Checks run on every (original, patched) pair of the corpus.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{preserved, tool};

/// One object before and after the webhook's patch.
pub struct Pair {
    /// Where it came from, for messages.
    pub what: String,
    /// The object as sent.
    pub original: Value,
    /// The patch bytes the webhook returned (empty: none).
    pub patch: Vec<u8>,
    /// The object with the patch applied by the json-patch crate.
    pub patched: Value,
}

/// Every check, every pair.
pub fn all(pairs: &[Pair]) {
    for p in pairs {
        if let Err(e) = preserved(&p.original, &p.patched, "") {
            panic!("{}: the patch loses data: {e}", p.what);
        }
        let kind = p.original["kind"].as_str().unwrap_or_default();
        if typed(kind, &p.original).is_ok()
            && let Err(e) = typed(kind, &p.patched)
        {
            panic!("{}: no longer deserializes into k8s-openapi's {kind}: {e}", p.what);
        }
        if let Err(e) = valid_pod_spec(&p.original, &p.patched) {
            panic!("{}: {e}", p.what);
        }
    }
    strict_schema(pairs);
    kubectl_patch(pairs);
}

/// Every generated collector configuration parses and is internally consistent.
pub fn sidecar_configs(pairs: &[Pair]) {
    let mut checked = 0;
    for p in pairs {
        let Some(spec) = pod_spec(&p.patched) else { continue };
        let containers =
            ["initContainers", "containers"].iter().flat_map(|l| spec[l].as_array().cloned().unwrap_or_default());
        for c in containers.filter(|c| c["name"] == "otel-collector") {
            let Some(config) = c["env"].as_array().into_iter().flatten().find(|e| e["name"] == "OTEL_COLLECTOR_CONFIG")
            else {
                continue;
            };
            // What the collector reads once the kubelet has turned `$$` back into `$`.
            let text = config["value"].as_str().expect("config value").replace("$$", "$");
            let parsed: Value = serde_yaml_ng::from_str(&text).expect("collector config is YAML");
            let problems = otel_injector::engine::inject::collector::inconsistencies(&parsed);
            assert!(problems.is_empty(), "{}: {problems:?}", p.what);
            checked += 1;
        }
    }
    eprintln!("collector configs: {checked} parsed and consistent");
}

/// Deserializes into the k8s-openapi type of `kind`.
pub fn typed(kind: &str, v: &Value) -> Result<(), String> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    let v = v.clone();
    let result = match kind {
        "Pod" => serde_json::from_value::<core::Pod>(v).map(drop),
        "Deployment" => serde_json::from_value::<apps::Deployment>(v).map(drop),
        "StatefulSet" => serde_json::from_value::<apps::StatefulSet>(v).map(drop),
        "DaemonSet" => serde_json::from_value::<apps::DaemonSet>(v).map(drop),
        "ReplicaSet" => serde_json::from_value::<apps::ReplicaSet>(v).map(drop),
        "Job" => serde_json::from_value::<batch::Job>(v).map(drop),
        "CronJob" => serde_json::from_value::<batch::CronJob>(v).map(drop),
        other => return Err(format!("no typed model for {other}")),
    };
    result.map_err(|e| e.to_string())
}

/// The pod template of any workload.
pub fn pod_spec(object: &Value) -> Option<&Value> {
    ["/spec", "/spec/template/spec", "/spec/jobTemplate/spec/template/spec"]
        .iter()
        .filter_map(|p| object.pointer(p))
        .rfind(|s| s.get("containers").is_some())
}

/// What the API server validates about what we touch: unique container names, valid env names, and no
/// variable defined twice by us.
pub fn valid_pod_spec(original: &Value, patched: &Value) -> Result<(), String> {
    let Some(spec) = pod_spec(patched) else { return Ok(()) };
    let containers = |spec: &Value| -> Vec<Value> {
        ["initContainers", "containers"]
            .iter()
            .flat_map(|list| spec.get(list).and_then(Value::as_array).cloned().unwrap_or_default())
            .collect()
    };
    let before = pod_spec(original).map(containers).unwrap_or_default();
    let mut names = HashSet::new();
    for c in containers(spec) {
        let twice_before = before.iter().filter(|o| o["name"] == c["name"]).count() > 1;
        if !names.insert(c["name"].as_str().unwrap_or_default().to_owned()) && !twice_before {
            return Err(format!("duplicate container name {}", c["name"]));
        }
    }
    for c in containers(spec) {
        let env: Vec<&str> = c["env"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
        let old = before.iter().find(|o| o["name"] == c["name"]);
        let count_before = |name: &str| {
            old.and_then(|o| o["env"].as_array()).map_or(0, |e| e.iter().filter(|x| x["name"] == name).count())
        };
        for name in &env {
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'=');
            if !valid {
                return Err(format!("container {}: invalid env name {name:?}", c["name"]));
            }
            let now = env.iter().filter(|n| *n == name).count();
            if now > count_before(name).max(1) {
                return Err(format!("container {}: env {name} defined {now} times", c["name"]));
            }
        }
    }
    Ok(())
}

/// Runs kubectl, returning stdout, panicking with stderr on failure.
pub fn kubectl(args: &[&str]) -> String {
    let kubectl = tool("KUBECTL", Path::new("kubectl"), "install kubectl (make test checks for it)");
    let out = Command::new(kubectl).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Strict validation with the PyPI `kubernetes-validate` (installed into `.venv` by `make test`): every patched
/// object whose original validates must validate too.
fn strict_schema(pairs: &[Pair]) {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubernetes-validate");
    let validator = tool("KUBERNETES_VALIDATE", &default, "run `make test`, which installs it into .venv");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        for (side, object) in [("original", &p.original), ("patched", &p.patched)] {
            let mut object = object.clone();
            // The validator needs a name to report on; generateName-only objects get one for this check.
            if object.pointer("/metadata/name").is_none() && object.get("metadata").is_some_and(Value::is_object) {
                object["metadata"]["name"] = "corpus-object".into();
            }
            let file = dir.path().join(format!("{i}-{side}.json"));
            std::fs::write(&file, serde_json::to_vec(&object).expect("json")).expect("write");
            files.push(file);
        }
    }
    let out = Command::new(&validator).arg("--strict").args(&files).output().expect("kubernetes-validate runs");
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!report.contains("Traceback"), "kubernetes-validate crashed:\n{report}");
    let status = |file: &Path| {
        let name = file.display().to_string();
        let lines: Vec<&str> = report.lines().filter(|l| l.contains(&format!(" {name} "))).collect();
        if lines.iter().any(|l| l.starts_with("ERROR")) {
            Err(lines.join("\n"))
        } else if lines.iter().any(|l| l.starts_with("INFO") && l.contains("passed")) {
            Ok(true)
        } else {
            Ok(false)
        }
    };
    let mut checked = 0;
    for (i, p) in pairs.iter().enumerate() {
        let original = status(&files[2 * i]);
        let patched = status(&files[2 * i + 1]);
        if original == Ok(true) {
            checked += 1;
            assert_eq!(patched, Ok(true), "{}: the patched object fails strict schema validation", p.what);
        }
    }
    assert!(checked * 10 >= pairs.len() * 8, "only {checked} of {} originals validated:\n{report}", pairs.len());
    eprintln!("strict schema: {checked} of {} patched objects validated (the others' originals do not)", pairs.len());
}

/// The first path where two documents differ, if any.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
            first_difference(
                &x.get(k).cloned().unwrap_or(Value::Null),
                &y.get(k).cloned().unwrap_or(Value::Null),
                &format!("{path}/{k}"),
            )
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}/{i}")))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// `kubectl patch --local --type=json`, the API server's JSON Patch library, gives the same object.
fn kubectl_patch(pairs: &[Pair]) {
    let patched: Vec<&Pair> = pairs.iter().filter(|p| !p.patch.is_empty()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    std::thread::scope(|scope| {
        for (n, chunk) in patched.chunks(patched.len().div_ceil(4).max(1)).enumerate() {
            let dir = dir.path();
            scope.spawn(move || {
                for (i, p) in chunk.iter().enumerate() {
                    let file = dir.join(format!("{n}-{i}.json"));
                    std::fs::write(&file, serde_json::to_vec(&p.original).expect("json")).expect("write");
                    let patch = String::from_utf8_lossy(&p.patch);
                    let file = file.to_string_lossy();
                    let args = ["patch", "--local", "-f", &file, "--type=json", "-p", &patch, "-o", "json"];
                    let out = kubectl(&[&args[..], &["--show-managed-fields"]].concat());
                    let by_kubectl: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
                    if let Some(path) = first_difference(&by_kubectl, &p.patched, "") {
                        panic!("{}: kubectl and json-patch disagree at {path}", p.what);
                    }
                }
            });
        }
    });
    assert!(patched.len() >= 15, "only {} patches checked with kubectl", patched.len());
    eprintln!("kubectl patch --local: {} patches agree with json-patch", patched.len());
}
