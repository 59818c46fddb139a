//! What users do through the API server: create pods, preview workloads with `--dry-run=server`, read warnings,
//! live with other webhooks and with the webhook being down.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use serde_json::{Value, json};

use super::harness::{
    Cluster, Registration, Webhook, b64, container, env_of, pki, pod, probe_pod, read, status_of, webhook_configuration,
};

#[test]
fn a_pod_in_an_opted_in_namespace_is_stored_instrumented_and_one_in_an_opted_out_namespace_untouched() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let opted_in = hook.namespace(&[("otel-injector.io/inject", "true")]);
    let opted_out = hook.namespace(&[("otel-injector.io/inject", "false")]);

    cluster.create(&opted_in, &pod("web", &[], &["app"]));
    let stored = cluster.get(&["pod", "web", "-n", &opted_in]);
    let status = status_of(&stored).expect("stored with the status annotation");
    assert_eq!(status["reason"], "namespace annotation otel-injector.io/inject=true");
    let env = env_of(container(&stored["spec"], "app").expect("app"));
    assert_eq!(env["OTEL_SERVICE_NAME"], "web");
    assert!(env["OTEL_RESOURCE_ATTRIBUTES"].contains(&format!("k8s.namespace.name={opted_in}")), "{env:?}");

    cluster.create(&opted_out, &pod("web", &[], &["app"]));
    let untouched = cluster.get(&["pod", "web", "-n", &opted_out]);
    assert!(status_of(&untouched).is_none(), "{untouched}");
    assert!(untouched["spec"]["containers"][0].get("env").is_none(), "{untouched}");
}

#[test]
fn server_dry_run_of_a_deployment_shows_the_injection_and_persists_nothing() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: skip\nworkloads: [Pod, Deployment]\n");
    let ns = hook.namespace(&[]);
    let manifest = read("examples/deploy.yaml").replace("  namespace: shop\n", "");
    for server_side in [false, true] {
        let mut args = vec!["apply", "--dry-run=server", "-o", "json", "-n", &ns, "-f", "-"];
        if server_side {
            args.push("--server-side");
        }
        let shown: Value = serde_json::from_str(&cluster.kubectl_ok(&args, Some(&manifest))).expect("JSON");
        let template = &shown["spec"]["template"];
        assert!(status_of(template).is_some(), "server_side={server_side}: {shown}");
        let app = container(&template["spec"], "checkout").expect("checkout");
        let names: Vec<&str> = app["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
        let position = |n: &str| names.iter().position(|x| *x == n).expect(n);
        assert!(position("OTEL_SERVICE_NAME") < position("JAVA_TOOL_OPTIONS"), "{names:?}");
        assert_eq!(env_of(app)["OTEL_TRACES_SAMPLER_ARG"], "0.25");
    }
    assert_eq!(cluster.kubectl(&["get", "deployments", "-n", &ns, "-o", "name"]), "", "a dry run persists nothing");
}

#[test]
fn admission_warnings_reach_kubectl() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let ns = hook.namespace(&[]);
    let bad = pod("bad", &[("otel-injector.io/sampling-ratio", "2")], &["app"]);
    let out = cluster.kubectl_with(&["create", "-n", &ns, "-f", "-"], Some(&bad.to_string()));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Warning: otel-injector.io/sampling-ratio=\"2\" on annotation ignored: must be a number from 0.0 to 1.0; \
             using config value 1"
        ),
        "{stderr}"
    );
}

#[test]
fn with_the_webhook_down_and_failure_policy_ignore_creation_succeeds_uninstrumented() {
    let cluster = Cluster::shared();
    let mut hook = Webhook::start(cluster, "default: inject\n");
    let ns = hook.namespace(&[]);
    hook.stop();
    let stored = cluster.create(&ns, &pod("web", &[], &["app"]));
    assert!(status_of(&stored).is_none(), "{stored}");
    assert!(stored["spec"]["containers"][0].get("env").is_none());
}

#[test]
fn on_kubernetes_1_20_the_collector_sidecar_is_a_regular_container() {
    let cluster = Cluster::old();
    let hook = Webhook::start(cluster, "default: inject\nsidecar: {enabled: true}\n");
    let ns = hook.namespace(&[]);
    let stored = cluster.create(&ns, &pod("web", &[], &["app"]));
    let spec = &stored["spec"];
    let names: Vec<&str> =
        spec["containers"].as_array().expect("containers").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["app", "otel-collector"]);
    assert!(spec.get("initContainers").is_none(), "{spec}");
    assert_eq!(
        status_of(&stored).expect("status")["sidecar"],
        "classic: Kubernetes 1.20 lacks native sidecars (1.29+)"
    );
    assert_eq!(env_of(container(spec, "app").expect("app"))["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://localhost:4317");
}

/// Why `sidecar.mode: auto` exists: 1.20 drops `restartPolicy` from init containers and then refuses their probes,
/// so a forced native sidecar fails pod creation, even with `failurePolicy: Ignore`.
#[test]
fn forcing_native_sidecars_on_1_20_is_what_breaks_pod_creation() {
    let cluster = Cluster::old();
    let hook = Webhook::start(cluster, "default: inject\nsidecar: {enabled: true, mode: native}\n");
    let ns = hook.namespace(&[]);
    let out = cluster.kubectl_with(&["create", "-n", &ns, "-f", "-"], Some(&pod("web", &[], &["app"]).to_string()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must not be set for init containers"), "{stderr}");
}

#[test]
fn reinvocation_instruments_a_container_another_webhook_added_exactly_once() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let adder = Adder::start();
    // Configurations are called in name order: ours, then the adder; ours is reinvoked (IfNeeded) after it.
    let name = format!("{}-z-adder", hook.name());
    let registration = Registration { failure_policy: "Fail", reinvocation: "Never" };
    let yaml = webhook_configuration(&name, &hook.scope, &adder.url(), &pki().ca_bundle, &registration);
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
    let _cleanup = Deregister(cluster, name);
    let ns = hook.namespace(&[]);
    let added = cluster.dry_run_until(&ns, &probe_pod(), |pod| container(&pod["spec"], "added").is_some());
    assert!(added.is_some(), "the adder webhook was never called");

    let stored = cluster.create(&ns, &pod("web", &[], &["app"]));
    let status = status_of(&stored).expect("status");
    assert_eq!(status["containers"], json!(["app", "added"]), "{status}");
    for name in ["app", "added"] {
        let c = container(&stored["spec"], name).expect(name);
        let names: Vec<&str> = c["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{name}: duplicated variables {names:?}");
        assert!(env_of(c)["OTEL_RESOURCE_ATTRIBUTES"].contains(&format!("k8s.container.name={name}")));
    }
    assert_eq!(stored["spec"]["containers"].as_array().map(Vec::len), Some(2), "nothing else was added");
}

/// Deletes a webhook configuration when dropped.
struct Deregister<'c>(&'c Cluster, String);

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl_with(&["delete", "mutatingwebhookconfiguration", &self.1, "--ignore-not-found"], None);
    }
}

/// A second mutating webhook, as a mesh injector would be: it appends a container named `added` to pods.
struct Adder {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
}

impl Adder {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                otel_injector::webhook::tls::install_crypto_provider();
                let dir = &pki().dir;
                let tls = otel_injector::webhook::tls::from_files(&dir.join("tls.crt"), &dir.join("tls.key"))
                    .expect("certificate");
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                listener.set_nonblocking(true).expect("nonblocking");
                let handle = Handle::new();
                tx.send((listener.local_addr().expect("addr"), handle.clone())).expect("send");
                let app = axum::Router::new().route("/add", post(add_container));
                let server = axum_server::from_tcp(listener)
                    .expect("server")
                    .acceptor(RustlsAcceptor::new(RustlsConfig::from_config(tls)));
                let _ = server.handle(handle).serve(app.into_make_service()).await;
            });
        });
        let (addr, handle) = rx.recv_timeout(Duration::from_secs(10)).expect("adder starts");
        Adder { addr, handle }
    }

    fn url(&self) -> String {
        format!("https://{}/add", self.addr)
    }
}

impl Drop for Adder {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn add_container(Json(review): Json<Value>) -> Json<Value> {
    let request = &review["request"];
    let mut response = json!({"uid": request["uid"], "allowed": true});
    let containers = request["object"]["spec"]["containers"].as_array();
    let is_pod = request["kind"]["kind"] == "Pod";
    if is_pod && !containers.into_iter().flatten().any(|c| c["name"] == "added") {
        let patch =
            json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "added", "image": "added:1.0"}}]);
        response["patchType"] = "JSONPatch".into();
        response["patch"] = b64(&patch.to_string()).into();
    }
    Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

/// Reproduced on the old engine: a Job instrumented under one config, the webhook restarted with another, then
/// `kubectl label job` failed (`spec.template: field is immutable`), because the webhook rewrote the template. And a
/// metadata-only update of a Deployment after a config change rolled all its pods.
#[test]
fn after_a_config_change_metadata_updates_neither_fail_nor_roll_out() {
    let cluster = Cluster::shared();
    let config = |ratio: &str| format!("default: inject\nworkloads: [Pod, Deployment, Job]\nsamplingRatio: {ratio}\n");
    let mut hook = Webhook::start(cluster, &config("1"));
    let ns = hook.namespace(&[]);
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "migrate", "image": "db:1"}]}}}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout"},
        "spec": {"selector": {"matchLabels": {"app": "checkout"}}, "template": {"metadata": {"labels": {"app": "checkout"}},
            "spec": {"containers": [{"name": "checkout", "image": "registry.example/shop/checkout:2.4.1"}]}}}});
    let stored_job = cluster.create(&ns, &job);
    let stored_deployment = cluster.create(&ns, &deployment);
    assert!(
        status_of(&stored_job["spec"]["template"]).is_some()
            && status_of(&stored_deployment["spec"]["template"]).is_some()
    );

    hook.restart(&config("0.5"));
    cluster.kubectl(&["label", "job", "migrate", "-n", &ns, "team=data"]);
    cluster.kubectl(&["label", "deployment", "checkout", "-n", &ns, "team=shop"]);
    let job_after = cluster.get(&["job", "migrate", "-n", &ns]);
    let deployment_after = cluster.get(&["deployment", "checkout", "-n", &ns]);
    assert_eq!(job_after["spec"]["template"], stored_job["spec"]["template"]);
    assert_eq!(deployment_after["spec"]["template"], stored_deployment["spec"]["template"], "no rollout");
    assert_eq!(deployment_after["metadata"]["generation"], stored_deployment["metadata"]["generation"]);

    // A change the user makes to the template brings the new ratio in the same rollout.
    cluster.kubectl(&[
        "set",
        "image",
        "deployment/checkout",
        "-n",
        &ns,
        "checkout=registry.example/shop/checkout:2.5.0",
    ]);
    let rolled = cluster.get(&["deployment", "checkout", "-n", &ns]);
    let app = container(&rolled["spec"]["template"]["spec"], "checkout").expect("checkout");
    assert_eq!(env_of(app)["OTEL_TRACES_SAMPLER_ARG"], "0.5", "the new config's ratio");
    assert!(env_of(app)["OTEL_RESOURCE_ATTRIBUTES"].contains("service.version=2.5.0"), "the new image's version");
}

#[test]
fn pods_created_through_the_api_server_produce_one_server_span_each() {
    use otel_injector::testing::otlp::{Receiver, Transport};
    let cluster = Cluster::shared();
    let receiver = Receiver::start(Transport::Grpc);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let hook = Webhook::start_with_env(cluster, "default: inject\n", &Registration::default(), &env);
    let ns = hook.namespace(&[]);
    for name in ["traced-a", "traced-b"] {
        cluster.create(&ns, &pod(name, &[], &["app"]));
    }
    let named = |spans: &[otel_injector::testing::otlp::Received], name: &str| {
        spans.iter().any(|s| s.attr("k8s.object.name").as_deref() == Some(name))
    };
    receiver.wait_until(Duration::from_secs(20), |s| named(s, "traced-a") && named(s, "traced-b"));
    // A duplicate would have arrived by now.
    std::thread::sleep(Duration::from_millis(300));
    let spans = receiver.spans();
    for name in ["traced-a", "traced-b"] {
        let mine: Vec<_> = spans
            .iter()
            .filter(|s| s.kind == 2 && s.attr("k8s.object.name").as_deref() == Some(name))
            .filter(|s| s.attr("admission.dry_run").as_deref() == Some("false"))
            .collect();
        assert_eq!(mine.len(), 1, "one server span for {name}: {spans:#?}");
        let span = mine[0];
        assert_eq!(span.name, "CREATE Pod");
        assert_eq!(span.attr("k8s.namespace.name").as_deref(), Some(ns.as_str()));
        assert_eq!(span.attr("admission.decision").as_deref(), Some("instrumented"));
        assert_eq!(span.parent_span_id, "", "an API server that traces nothing sends no traceparent: a root");
        let uid = span.attr("admission.uid").expect("uid");
        let stored = cluster.get(&["pod", name, "-n", &ns]);
        assert!(!uid.is_empty() && stored["metadata"]["uid"].is_string(), "{stored}");
    }
}
