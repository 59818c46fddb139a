//! The commands that read the cluster: `audit` and `preview --from-cluster` / `--config-from-cluster`.

use serde_json::{Value, json};

use super::harness::{Cluster, Webhook, container, env_of, pod, read, status_of};

/// `audit -n ns -o json` with the webhook's own config: (exit code, findings as (name, finding)).
fn audit(hook: &Webhook, ns: &str) -> (i32, Vec<(String, String)>) {
    let config = hook.config.to_string_lossy().into_owned();
    let out = hook.command(&["audit", "-n", ns, "-o", "json", "--config", &config], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let mut found: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (r["name"].as_str().unwrap_or_default().to_owned(), r["finding"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    found.sort();
    (out.status.code().unwrap_or(-1), found)
}

fn pair(name: &str, finding: &str) -> (String, String) {
    (name.to_owned(), finding.to_owned())
}

/// Waits until the webhook's cache shows a namespace change (a new pod instrumented or not).
fn until_policy(cluster: &Cluster, ns: &str, instrumented: bool) {
    let seen = cluster.dry_run_until(ns, &pod("probe", &[], &["app"]), |p| status_of(p).is_some() == instrumented);
    assert!(seen.is_some(), "the namespace change never reached the webhook");
}

#[test]
fn audit_finds_what_policy_and_instrumentation_disagree_on() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: skip\n");
    let ns = hook.namespace(&[]);
    cluster.create(&ns, &pod("early", &[], &["app"]));
    assert_eq!(audit(&hook, &ns), (0, vec![]), "nothing wanted, nothing done");

    cluster.kubectl(&["annotate", "namespace", &ns, "otel-injector.io/inject=true"]);
    until_policy(cluster, &ns, true);
    cluster.create(&ns, &pod("late", &[], &["app"]));
    assert_eq!(audit(&hook, &ns), (1, vec![pair("early", "not-instrumented")]), "created before the opt-in");

    cluster.kubectl(&["annotate", "namespace", &ns, "otel-injector.io/sampling-ratio=0.5"]);
    assert_eq!(audit(&hook, &ns), (1, vec![pair("early", "not-instrumented"), pair("late", "drift")]));

    cluster.kubectl(&["annotate", "namespace", &ns, "--overwrite", "otel-injector.io/inject=false"]);
    assert_eq!(audit(&hook, &ns), (1, vec![pair("late", "no-longer-wanted")]));
    let table = hook.command(&["audit", "-n", &ns, "--config", &hook.config.to_string_lossy()], None);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NAMESPACE") && text.contains("no-longer-wanted"), "{text}");
    assert_eq!(cluster.get(&["pods", "-n", &ns])["items"].as_array().map(Vec::len), Some(2), "audit changes nothing");
}

/// Issue 20, finding 8: where `batch/v1` CronJobs are not served (before 1.21), `audit` reads `batch/v1beta1`.
#[test]
fn audit_reads_cronjobs_where_only_batch_v1beta1_serves_them() {
    let cluster = Cluster::old();
    let hook = Webhook::start(cluster, "default: inject\nworkloads: [Pod, CronJob]\n");
    let ns = hook.namespace(&[]);
    let cronjob = json!({
        "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "job", "image": "busybox:1.36"}]}}}}}
    });
    let created = cluster.create(&ns, &cronjob);
    assert!(status_of(&created["spec"]["jobTemplate"]["spec"]["template"]).is_some(), "instrumented: {created}");
    assert_eq!(audit(&hook, &ns), (0, vec![]), "instrumented with the settings in force");
    cluster.kubectl(&["annotate", "namespace", &ns, "otel-injector.io/sampling-ratio=0.5"]);
    assert_eq!(audit(&hook, &ns), (1, vec![pair("nightly", "drift")]), "the CronJob was read");
}

#[test]
fn preview_from_cluster_reads_the_namespace_and_the_server_version() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: skip\n");
    let ns = hook.namespace(&[
        ("otel-injector.io/inject", "true"),
        ("otel-injector.io/sampling-ratio", "0.3"),
        ("otel-injector.io/sidecar", "true"),
    ]);
    let preview = |extra: &[&str]| {
        let mut args = vec!["preview", "-f", "-", "-n", &ns, "-o", "json", "--from-cluster"];
        args.extend_from_slice(extra);
        let out = hook.command(&args, Some(&read("examples/pod.yaml")));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let shown = preview(&[]);
    let status = status_of(&shown).expect("instrumented by the namespace's annotation");
    assert_eq!(status["reason"], "namespace annotation otel-injector.io/inject=true");
    assert_eq!(status["sidecar"], "native", "the server's version (1.37) has native sidecars");
    let collector = container(&shown["spec"], "otel-collector").expect("sidecar");
    assert!(env_of(collector)["OTEL_COLLECTOR_CONFIG"].contains("sampling_percentage: 30"), "the namespace's ratio");
    let older = preview(&["--kube-version", "1.28"]);
    assert_eq!(
        status_of(&older).expect("status")["sidecar"],
        "classic: Kubernetes 1.28 lacks native sidecars (1.29+)",
        "--kube-version wins"
    );
    // What preview shows is what the API server stores (which adds its defaults).
    let stored = cluster.create(&ns, &serde_yaml_ng::from_str::<Value>(&read("examples/pod.yaml")).expect("yaml"));
    for name in ["web", "otel-collector"] {
        let (stored, shown) = (container(&stored["spec"], name), container(&shown["spec"], name));
        assert_eq!(stored.map(env_of), shown.map(env_of), "{name}");
    }
    assert_eq!(status_of(&stored), status_of(&shown));
}

#[test]
fn preview_reads_its_config_from_a_config_map() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: skip\n");
    let ns = hook.namespace(&[]);
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "otel-injector"},
        "data": {"config.yaml": "default: inject\nsamplingRatio: 0.1\n"}});
    cluster.create(&ns, &config_map);
    let from = format!("{ns}/otel-injector");
    let target = hook.namespace(&[]);
    let args = ["preview", "-f", "-", "-n", &target, "-o", "json", "--config-from-cluster", &from];
    let out = hook.command(&args, Some(&read("examples/pod.yaml")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status_of(&shown).expect("instrumented")["reason"], "cluster default (inject)");
    assert_eq!(env_of(container(&shown["spec"], "web").expect("web"))["OTEL_TRACES_SAMPLER_ARG"], "0.1");

    let missing = hook.command(&["preview", "-f", "-", "--config-from-cluster", &format!("{ns}/nope")], Some("{}"));
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.starts_with(&format!("error: reading ConfigMap {ns}/nope: ")), "{stderr}");
}

/// Issue 20: `env --from-cluster` prints what a stored pod's process will see, its ConfigMaps read, its Secrets not.
#[test]
fn env_from_cluster_resolves_a_stored_pod_as_the_kubelet_would() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let ns = hook.namespace(&[]);
    cluster.create(
        &ns,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "otel"},
            "data": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://mine:4318", "TEAM": "shop"}}),
    );
    let mut web = pod("web", &[], &["app"]);
    web["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "otel"}, "prefix": "CFG_"}]);
    web["spec"]["containers"][0]["env"] = json!([
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "gw", "key": "token", "optional": true}}},
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=$(CFG_TEAM)"}
    ]);
    let stored = cluster.create(&ns, &web);
    assert!(status_of(&stored).is_some(), "instrumented");
    let out = hook.command(&["env", "--from-cluster", "pod/web", "-n", &ns, "-c", "app"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("# Pod {ns}/web, container app"));
    assert!(lines.contains(&"CFG_OTEL_EXPORTER_OTLP_ENDPOINT=http://mine:4318"), "{text}");
    assert!(lines.contains(&"TOKEN=<redacted: Secret gw, key token>"), "{text}");
    let uid = stored["metadata"]["uid"].as_str().expect("uid");
    let attributes = lines.iter().find_map(|l| l.strip_prefix("OTEL_RESOURCE_ATTRIBUTES=")).expect("attributes");
    assert!(attributes.starts_with("team=shop,"), "the user's pair, expanded from the ConfigMap: {attributes}");
    assert!(
        attributes.contains(&format!("k8s.pod.uid={uid}")),
        "the webhook's, through the downward API: {attributes}"
    );
    assert!(lines.contains(&"OTEL_SERVICE_NAME=web"), "{text}");
}
