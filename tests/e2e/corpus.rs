//! Every workload object of `../shared/corpus/manifests` is created through the current control plane with injection
//! on: the API server's own validation of the patched object must accept it. An object the API server refuses
//! without any webhook (an invalid original, or an API removed since, which the 1.20 lane then takes) is listed as
//! skipped, with the reason.

use serde_json::Value;

use super::common::corpus::{files, objects_of};
use super::harness::{Cluster, Webhook, status_of, unique};
use otel_injector::engine::workload::WorkloadKind;

/// Why the API server refused an object on its own, from its message.
fn refusal(stderr: &str) -> String {
    let message: String = stderr.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
    if message.contains("no matches for kind") {
        format!("API not served: {message}")
    } else {
        format!("the original is refused: {message}")
    }
}

/// The pod template of a stored workload (the object itself for a Pod).
fn template(kind: WorkloadKind, object: &Value) -> &Value {
    kind.template_path().iter().fold(object, |v, token| &v[token])
}

fn create_every_corpus_workload(
    cluster: &Cluster,
    config: &str,
    only: impl Fn(&str) -> bool,
) -> (usize, usize, Vec<String>) {
    let hook = Webhook::start(cluster, config);
    let (mut accepted, mut instrumented, mut skipped) = (0, 0, Vec::new());
    for path in files("manifests") {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if !only(&name) {
            continue;
        }
        // One namespace outside any webhook's scope (the original alone) and one in this webhook's scope.
        let plain = unique("plain");
        cluster.namespace(&plain, &[], &[]);
        let ns = hook.namespace(&[]);
        for (i, mut object) in objects_of(&path).into_iter().enumerate() {
            let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
            let kind_name = object["kind"].as_str().unwrap_or_default().to_owned();
            let Some(kind) = WorkloadKind::from_type_meta(&api_version, &kind_name) else { continue };
            let what = format!("{name} #{i} {api_version} {kind_name} {}", object["metadata"]["name"]);
            if let Some(meta) = object["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
            let text = object.to_string();
            // The API server's own validation decides (it drops fields it does not know), not kubectl's schema.
            let create = ["create", "--validate=false", "-o", "json", "-f", "-", "-n"];
            let alone = cluster.kubectl_with(&[&create[..], &[&plain, "--dry-run=server"]].concat(), Some(&text));
            if !alone.status.success() {
                skipped.push(format!("{what}: {}", refusal(&String::from_utf8_lossy(&alone.stderr))));
                continue;
            }
            let out = cluster.kubectl_with(&[&create[..], &[&ns]].concat(), Some(&text));
            assert!(
                out.status.success(),
                "{what}: the API server refused the instrumented object: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                hook.logs()
            );
            accepted += 1;
            let stored: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            if status_of(template(kind, &stored)).is_some() {
                instrumented += 1;
            }
        }
    }
    for line in &skipped {
        eprintln!("skipped: {line}");
    }
    eprintln!("{accepted} workload objects accepted instrumented by the API server ({instrumented} carry a status)");
    (accepted, instrumented, skipped)
}

/// The corpus objects the current API server refuses on its own, without any webhook: a CronJob in
/// `batch/v1beta1`, removed in 1.25 (the 1.20 lane takes it), and originals that are invalid anyway.
const REFUSED_ON_THEIR_OWN: [&str; 4] = [
    "istio-injtest__status_annotations.yaml #0",
    "k8s-website__cronjob-v1beta1.yaml #0",
    "otel-operator__java-01-assert.yaml #0",
    "otel-operator__java-01-assert.yaml #1",
];

fn check(accepted: usize, instrumented: usize, skipped: &[String]) {
    assert!(accepted >= 84, "only {accepted} corpus workloads accepted");
    assert_eq!(instrumented, accepted, "every accepted workload is stored instrumented");
    // Each line starts with "<file> #<index>".
    let which: Vec<String> =
        skipped.iter().map(|s| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(which, REFUSED_ON_THEIR_OWN, "skipped: {skipped:#?}");
    assert!(skipped[1].contains("batch/v1beta1 CronJob") && skipped[1].contains("API not served"));
    assert!(skipped.iter().filter(|s| s.contains("API not served")).count() == 1, "none other for its version");
}

const ALL_WORKLOADS: &str =
    "default: inject\nworkloads: [Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob]\n";

#[test]
fn every_corpus_workload_is_accepted_instrumented_by_the_api_server() {
    let (accepted, instrumented, skipped) = create_every_corpus_workload(Cluster::shared(), ALL_WORKLOADS, |_| true);
    check(accepted, instrumented, &skipped);
}

#[test]
fn every_corpus_workload_is_accepted_with_the_collector_sidecar() {
    let config = format!("{ALL_WORKLOADS}sidecar: {{enabled: true}}\nheaders: {{X-Scope-OrgID: prod}}\n");
    let (accepted, instrumented, skipped) = create_every_corpus_workload(Cluster::shared(), &config, |_| true);
    check(accepted, instrumented, &skipped);
}

#[test]
fn a_cronjob_of_an_api_removed_since_is_accepted_instrumented_by_the_api_server_that_serves_it() {
    let only = |name: &str| name == "k8s-website__cronjob-v1beta1.yaml";
    let config = format!("{ALL_WORKLOADS}sidecar: {{enabled: true}}\n");
    let (accepted, instrumented, skipped) = create_every_corpus_workload(Cluster::old(), &config, only);
    assert_eq!((accepted, instrumented), (1, 1), "{skipped:?}");
}
