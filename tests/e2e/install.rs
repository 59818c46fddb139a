//! The install manifests against a real API server (an API server of its own: the manifests' webhook selects
//! every namespace): every object accepted, the webhook they register instrumenting a pod, and the webhook running
//! with exactly the permissions of the manifests' ServiceAccount (kubeconfig impersonation), each of which it needs.
//!
//! The test overlay only swaps the Service reference for `clientConfig.url` on 127.0.0.1 (no webhook pods run here):
//! the current API server takes the manifests as shipped, `matchConditions` (whose CEL it evaluates) and
//! `policy/v1` included.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::common::serve::Serve;
use super::harness::{BIN, Cluster, env_of, eventually, pki, repo, status_of};

/// The ServiceAccount the manifests run the webhook as.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:otel-injector:otel-injector";

/// The test overlay over `manifests/base`, registering `url`.
fn overlay(dir: &Path, url: &str) {
    let pki = pki();
    for file in ["tls.crt", "tls.key"] {
        std::fs::copy(pki.dir.join(file), dir.join(file)).expect("copy the pair");
    }
    let mut ops = Vec::new();
    for i in 0..2 {
        ops.push(json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig"),
            "value": {"url": url, "caBundle": pki.ca_bundle}}));
    }
    std::os::unix::fs::symlink(repo().join("manifests/base"), dir.join("base")).expect("link the base");
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["base"],
        "secretGenerator": [{"name": "otel-injector-tls", "namespace": "otel-injector", "type": "kubernetes.io/tls",
            "files": ["tls.crt", "tls.key"], "options": {"disableNameSuffixHash": true}}],
        "patches": [
            {"target": {"kind": "MutatingWebhookConfiguration", "name": "otel-injector"},
             "patch": serde_json::to_string(&ops).expect("json")},
        ],
    });
    std::fs::write(dir.join("kustomization.yaml"), serde_json::to_string_pretty(&kustomization).expect("json"))
        .expect("write kustomization");
}

/// The admin kubeconfig, impersonating the manifests' ServiceAccount.
fn impersonating(cluster: &Cluster, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig");
    let token_line = text.lines().find(|l| l.trim_start().starts_with("token:")).expect("token");
    let text = text.replace(token_line, &format!("{token_line}\n    as: {SERVICE_ACCOUNT}"));
    let path = dir.join("service-account.kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// `otel-injector serve` as the manifests run it (own namespace excluded), with `kubeconfig`.
fn serve(kubeconfig: &Path, config: &Path) -> Serve {
    let pki = pki();
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let (cert, key) = (path(&pki.dir.join("tls.crt")), path(&pki.dir.join("tls.key")));
    let (kubeconfig, config) = (path(kubeconfig), path(config));
    let args = ["--webhook-namespace", "otel-injector", "--config", &config, "--kubeconfig", &kubeconfig];
    let mut args = args.to_vec();
    args.extend(["--tls-cert", &cert, "--tls-key", &key]);
    Serve::start(&args)
}

/// Whether `serve` is ready within `within`.
fn ready_within(serve: &Serve, within: Duration) -> bool {
    eventually(within, || (serve.get("/readyz").0 == 200).then_some(())).is_some()
}

/// POSTs a Pod CREATE review for `namespace` straight to `serve`: whether it was instrumented.
fn review_in(namespace: &str, serve: &Serve) -> bool {
    let pod = otel_injector::testing::fixtures::pod("direct")
        .container(otel_injector::testing::fixtures::container("app"))
        .build();
    answer_in(namespace, serve, &pod).get("patch").is_some()
}

/// POSTs a CREATE review of `object` in `namespace` straight to `serve`: the response.
fn answer_in(namespace: &str, serve: &Serve, object: &Value) -> Value {
    let review = otel_injector::testing::fixtures::review(object, "CREATE", namespace);
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "--cacert"])
        .arg(pki().dir.join("ca.crt"))
        .args(["-H", "content-type: application/json", "--data-binary", "@-"])
        .arg(serve.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(review.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .expect("curl runs");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("an AdmissionReview");
    assert_eq!(answer["response"]["allowed"], true);
    answer["response"].clone()
}

/// The ClusterRole of the manifests without `verb` on `resource`, applied.
fn role_without(cluster: &Cluster, rbac: &Value, resource: &str, verb: &str) {
    let mut role = rbac.clone();
    let rules = role["rules"].as_array_mut().expect("rules");
    for rule in rules.iter_mut() {
        if rule["resources"].as_array().is_some_and(|r| r.iter().any(|x| x == resource)) {
            let verbs = rule["verbs"].as_array_mut().expect("verbs");
            verbs.retain(|v| v != verb);
        }
    }
    rules.retain(|rule| rule["verbs"].as_array().is_some_and(|v| !v.is_empty()));
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&role.to_string()));
    // RBAC takes effect once the API server's informer has it: wait until the ServiceAccount lost the verb.
    let denied = eventually(Duration::from_secs(10), || {
        let out = cluster.kubectl_with(&["auth", "can-i", verb, resource, "--as", SERVICE_ACCOUNT], None);
        (!out.status.success()).then_some(())
    });
    assert!(denied.is_some(), "{verb} {resource} still allowed");
}

fn audit(kubeconfig: &Path, config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "-o", "json", "--webhook-namespace", "otel-injector", "--config"])
        .arg(config)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .expect("audit runs")
}

#[test]
fn the_manifests_apply_and_the_webhook_needs_exactly_the_permissions_they_grant() {
    let cluster = Cluster::dedicated();
    let dir = tempfile::tempdir().expect("tempdir");
    // Registered on a port nothing listens on until the webhook has one of its own (below).
    overlay(dir.path(), "https://127.0.0.1:9/mutate");
    let out = Command::new("kubectl").arg("kustomize").arg(dir.path()).output().expect("kubectl runs");
    assert!(out.status.success(), "the test overlay renders: {}", String::from_utf8_lossy(&out.stderr));
    let objects = super::common::corpus::objects(&String::from_utf8_lossy(&out.stdout)).expect("YAML");

    // Every object is accepted.
    let applied = cluster.kubectl_ok(&["apply", "-k", dir.path().to_str().expect("utf-8")], None);
    assert_eq!(applied.lines().filter(|l| l.ends_with(" created")).count(), objects.len(), "{applied}");
    for object in &objects {
        let kind = object["kind"].as_str().expect("kind");
        let name = object["metadata"]["name"].as_str().expect("name");
        let mut args = vec!["get", kind, name];
        if let Some(ns) = object["metadata"]["namespace"].as_str() {
            args.extend(["-n", ns]);
        }
        cluster.kubectl(&args);
    }

    // The webhook as the ServiceAccount, with the shipped config.
    let config = dir.path().join("config.yaml");
    let map = objects.iter().find(|o| o["kind"] == "ConfigMap").expect("the config");
    std::fs::write(&config, map["data"]["config.yaml"].as_str().expect("config.yaml")).expect("write");
    let kubeconfig = impersonating(&cluster, dir.path());
    let served = serve(&kubeconfig, &config);
    assert!(
        ready_within(&served, Duration::from_secs(20)),
        "namespace cache synced as the ServiceAccount: {}",
        served.logs()
    );
    let url = json!(served.url()).to_string();
    let repoint = format!(
        r#"[{{"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": {url}}},
            {{"op": "replace", "path": "/webhooks/1/clientConfig/url", "value": {url}}}]"#
    );
    cluster.kubectl(&["patch", "mutatingwebhookconfiguration", "otel-injector", "--type=json", "-p", &repoint]);

    // The registration of the manifests instruments a pod in an opted-in namespace, and the namespaceSelector
    // keeps the webhook out of a namespace labelled inject=false.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1.2"}]}});
    cluster.namespace("shop", &[], &[("otel-injector.io/inject", "true")]);
    let instrumented = cluster.dry_run_until("shop", &pod, |p| status_of(p).is_some());
    assert!(instrumented.is_some(), "the manifests' webhook instrumented a pod: {}", served.logs());

    // The ConfigMaps a pod draws variables from are read as the ServiceAccount: theirs are never overridden.
    cluster.create(
        "shop",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "otel"},
            "data": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://mine.shop:4318"}}),
    );
    let mut drawing = pod.clone();
    drawing["metadata"]["name"] = "drawing".into();
    drawing["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "otel"}}]);
    let drawn_env = |served: &Serve| {
        let out = cluster.kubectl_ok(
            &["create", "--dry-run=server", "-o", "json", "-n", "shop", "-f", "-"],
            Some(&drawing.to_string()),
        );
        let created: Value = serde_json::from_str(&out).expect("json");
        assert!(status_of(&created).is_some(), "instrumented: {}", served.logs());
        env_of(&created["spec"]["containers"][0])
    };
    let env = drawn_env(&served);
    assert!(!env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"), "the ConfigMap's endpoint stays in force: {env:?}");
    assert_eq!(env.get("OTEL_EXPORTER_OTLP_PROTOCOL").map(String::as_str), Some("http/protobuf"), "its port says");
    cluster.namespace("quiet", &[("otel-injector.io/inject", "false")], &[("otel-injector.io/inject", "true")]);
    let mut opted_in = pod.clone();
    opted_in["metadata"]["annotations"] = json!({"otel-injector.io/inject": "true"});
    let calls = served.metric("otel_injector_admission_duration_seconds_count").unwrap_or(0.0);
    let created = cluster.kubectl_ok(
        &["create", "--dry-run=server", "-o", "json", "-n", "quiet", "-f", "-"],
        Some(&opted_in.to_string()),
    );
    let created: Value = serde_json::from_str(&created).expect("json");
    assert!(status_of(&created).is_none(), "not called for a namespace labelled inject=false");
    assert_eq!(served.metric("otel_injector_admission_duration_seconds_count").unwrap_or(0.0), calls);

    // A mirror pod (a static pod's mirror, which no webhook may change) is kept from the webhook by the
    // registration's matchConditions: the API server evaluates the CEL and never calls it.
    let node = cluster.get(&["node", "node-a"]);
    let mirror = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "static-web-node-a",
            "annotations": {"kubernetes.io/config.mirror": "checksum", "otel-injector.io/inject": "true"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-a",
                "uid": node["metadata"]["uid"], "controller": true}]},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "shop/web:1.2"}]}});
    let created = cluster
        .kubectl_ok(&["create", "--dry-run=server", "-o", "json", "-n", "shop", "-f", "-"], Some(&mirror.to_string()));
    let created: Value = serde_json::from_str(&created).expect("json");
    assert!(status_of(&created).is_none(), "a mirror pod is never instrumented");
    assert_eq!(
        served.metric("otel_injector_admission_duration_seconds_count").unwrap_or(0.0),
        calls,
        "the mirror pod never reached the webhook"
    );

    // A namespace the cache has not seen: looked up with `get`, not found.
    assert!(!review_in("never-created", &served));
    assert_eq!(served.metric("otel_injector_namespace_lookups_total{outcome=\"not_found\"}"), Some(1.0));
    assert_eq!(served.metric("otel_injector_namespace_watch_errors_total").unwrap_or(0.0), 0.0, "{}", served.logs());

    // audit, as the ServiceAccount: pods listed; the workload kinds it may not list are named and skipped.
    let out = audit(&kubeconfig, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "audit ran: {stderr}");
    assert!(stderr.contains("Deployment: not allowed to list deployments"), "{stderr}");
    drop(served);

    // Each verb is needed: one less, and something breaks.
    let rbac = objects.iter().find(|o| o["kind"] == "ClusterRole").expect("the ClusterRole").clone();
    role_without(&cluster, &rbac, "pods", "list");
    let out = audit(&kubeconfig, &config);
    assert_eq!(out.status.code(), Some(2), "audit without list on pods: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));

    role_without(&cluster, &rbac, "configmaps", "get");
    let served = serve(&kubeconfig, &config);
    assert!(ready_within(&served, Duration::from_secs(20)), "{}", served.logs());
    let response = answer_in("shop", &served, &drawing);
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("ConfigMap otel (envFrom) unknown"),
        "without get, the ConfigMap is not seen: {warnings}"
    );
    drop(served);

    role_without(&cluster, &rbac, "namespaces", "get");
    let served = serve(&kubeconfig, &config);
    assert!(ready_within(&served, Duration::from_secs(20)), "{}", served.logs());
    assert!(!review_in("never-created", &served));
    assert_eq!(served.metric("otel_injector_namespace_lookups_total{outcome=\"error\"}"), Some(1.0), "without get");
    assert_eq!(served.metric("otel_injector_namespace_lookups_total{outcome=\"not_found\"}"), None);
    drop(served);

    // Without list the cache never fills: not ready, so the replica gets no traffic.
    role_without(&cluster, &rbac, "namespaces", "list");
    let served = serve(&kubeconfig, &config);
    assert!(!ready_within(&served, Duration::from_secs(4)), "ready without list on namespaces");
    let (status, body) = served.get("/readyz");
    assert_eq!((status, body.contains("namespace cache not synced")), (503, true), "{body}");
    drop(served);

    // Without watch it fills once and then goes stale: a namespace's new policy never arrives.
    role_without(&cluster, &rbac, "namespaces", "watch");
    let served = serve(&kubeconfig, &config);
    assert!(ready_within(&served, Duration::from_secs(20)), "{}", served.logs());
    assert!(review_in("shop", &served), "shop opted in");
    cluster.kubectl(&["annotate", "namespace", "shop", "--overwrite", "otel-injector.io/inject=false"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(review_in("shop", &served), "without watch, the opt-out of shop is not seen");
    assert!(served.metric("otel_injector_namespace_watch_errors_total").unwrap_or(0.0) > 0.0, "{}", served.logs());
    drop(served);

    // With the role as shipped, the opt-out is followed.
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&rbac.to_string()));
    let served = serve(&kubeconfig, &config);
    assert!(ready_within(&served, Duration::from_secs(20)), "{}", served.logs());
    assert!(!review_in("shop", &served), "shop opted out");
    cluster.kubectl(&["annotate", "namespace", "shop", "--overwrite", "otel-injector.io/inject=true"]);
    let followed = eventually(Duration::from_secs(5), || review_in("shop", &served).then_some(()));
    assert!(followed.is_some(), "the watch brings shop's opt-in back");
}
