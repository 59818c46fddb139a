//! The real OpenTelemetry Collector judges what the webhook writes for it (issue 18): a collector built by
//! `scripts/collector.sh` from exactly the components the sidecar's configuration uses, at the release the sidecar's
//! default image pins. Every sidecar configuration the engine generates for the corpus passes the collector's own
//! `validate`; one sidecar runs for real, its environment resolved as the kubelet would, receiving OTLP on
//! `localhost:4317` and `:4318` and exporting to an in-process receiver with the pod's Kubernetes attributes; and the
//! gateway configuration of `helm-values/` validates with a collector built from its components.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

use super::common::corpus::files;
use super::harness::{BIN, eventually, repo};
use otel_injector::engine::kubelet_env::{self, EnvValue};
use otel_injector::testing::otlp::{Receiver, Transport};

/// The collector of `tools/collector/<name>.yaml`, built once (cached by `scripts/collector.sh`).
pub(super) fn collector(name: &'static str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<BTreeMap<&'static str, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().expect("lock");
    built
        .entry(name)
        .or_insert_with(|| {
            let out = Command::new(repo().join("scripts/collector.sh")).arg(name).output().expect("collector.sh runs");
            assert!(out.status.success(), "building the {name} collector: {}", String::from_utf8_lossy(&out.stderr));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// A sidecar container's environment as the kubelet builds it (`engine::kubelet_env`), in a pod pretended to run:
/// its name, uid, node and IP as the downward API would give them.
fn kubelet_env(sidecar: &Value) -> Vec<(String, String)> {
    let pod = serde_json::json!({
        "metadata": {"name": "web-7d9f8", "uid": "0b7f3c2e-uid"},
        "spec": {"nodeName": "node-a", "containers": [sidecar]},
        "status": {"podIP": "127.0.0.1"},
    });
    let name = sidecar["name"].as_str().expect("named");
    let env = kubelet_env::resolve(&pod, name, &|_| None).expect("resolves");
    let unknown: Vec<_> = env.vars.iter().filter(|(_, v)| !matches!(v, EnvValue::Text(_))).collect();
    assert!(unknown.is_empty(), "every variable of the sidecar resolves: {unknown:?}");
    env.texts().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Every collector sidecar in `objects` (pods, and the pod templates of workloads).
fn sidecars(objects: &[Value]) -> Vec<Value> {
    let mut found = Vec::new();
    let mut visit = |spec: &Value| {
        for list in ["initContainers", "containers"] {
            found
                .extend(spec[list].as_array().into_iter().flatten().filter(|c| c["name"] == "otel-collector").cloned());
        }
    };
    for object in objects {
        for path in ["/spec", "/spec/template/spec", "/spec/jobTemplate/spec/template/spec"] {
            if let Some(spec) = object.pointer(path) {
                visit(spec);
            }
        }
    }
    found
}

/// `preview -o json` of `file` under `config`: the objects as instrumented.
fn previewed(file: &Path, config: &Path) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["preview", "-o", "json", "--config"])
        .arg(config)
        .arg("-f")
        .arg(file)
        .output()
        .expect("preview runs");
    assert!(out.status.success(), "preview {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    match value.get("items") {
        Some(Value::Array(items)) if value["kind"] == "List" => items.clone(),
        _ => vec![value],
    }
}

/// Runs the collector's `validate` on a sidecar container as the kubelet would start it: its arguments, its
/// resolved environment.
fn validate(binary: &Path, sidecar: &Value) -> Result<(), String> {
    let args: Vec<&str> = sidecar["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let out = Command::new(binary)
        .arg("validate")
        .args(&args)
        .env_clear()
        .envs(kubelet_env(sidecar))
        .output()
        .expect("the collector runs");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

#[test]
fn every_sidecar_configuration_generated_for_the_corpus_passes_the_collectors_own_validate() {
    let binary = collector("sidecar");
    let dir = tempfile::tempdir().expect("tempdir");
    let all = "default: inject\nworkloads: [Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob]\n";
    let configs = [
        format!("{all}sidecar: {{enabled: true}}\n"),
        format!(
            "{all}samplingRatio: 0.25\nheaders: {{X-Scope-OrgID: prod}}\nsignals: [traces, metrics]\n\
             sidecar: {{enabled: true, tls: {{insecure: false}}}}\n"
        ),
    ];
    let mut seen = BTreeSet::new();
    for (i, config) in configs.iter().enumerate() {
        let path = dir.path().join(format!("config-{i}.yaml"));
        std::fs::write(&path, config).expect("write");
        for file in files("manifests") {
            for sidecar in sidecars(&previewed(&file, &path)) {
                let text = sidecar.to_string();
                if !seen.insert(text) {
                    continue;
                }
                if let Err(e) = validate(&binary, &sidecar) {
                    panic!("{}: the collector refuses the sidecar's configuration: {e}", file.display());
                }
            }
        }
    }
    eprintln!("{} distinct sidecar configurations validated by the collector", seen.len());
    assert!(seen.len() >= 40, "only {} sidecars", seen.len());
    // And `validate` does refuse what it cannot run: a processor this collector was not built with.
    let mut broken: Value = serde_json::from_str(seen.iter().next().expect("one")).expect("JSON");
    for entry in broken["env"].as_array_mut().expect("env") {
        if entry["name"] == "OTEL_COLLECTOR_CONFIG" {
            let text = entry["value"].as_str().expect("value").replace("batch", "tail_sampling");
            entry["value"] = text.into();
        }
    }
    let refused = validate(&binary, &broken).expect_err("an unknown component is refused");
    assert!(refused.contains("tail_sampling"), "{refused}");
}

/// One span named `name` from a resource of `service`.
fn request(name: &str, service: &str) -> ExportTraceServiceRequest {
    let text = |key: &str, value: &str| KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..KeyValue::default()
    };
    let span = Span {
        trace_id: vec![7; 16],
        span_id: name.bytes().chain(std::iter::repeat(0)).take(8).collect(),
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![text("service.name", service)], ..Resource::default() }),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The ports are held for the whole test, awaits included: no other task in this test takes the lock.
#[allow(clippy::await_holding_lock)]
async fn a_sidecar_runs_for_real_and_exports_what_it_receives_with_the_pods_kubernetes_attributes() {
    let _ports = super::harness::SIDECAR_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    otel_injector::webhook::tls::install_crypto_provider();
    let binary = collector("sidecar");
    let receiver = Receiver::start(Transport::Grpc);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    let gateway = receiver.endpoint.trim_start_matches("http://");
    std::fs::write(&config, format!("default: inject\nsidecar: {{enabled: true, exporterEndpoint: \"{gateway}\"}}\n"))
        .expect("write");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-7d9f8-, namespace: shop, labels: {pod-template-hash: 7d9f8},\n  \
         ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f8, uid: u, controller: true}]}\n\
         spec: {containers: [{name: app, image: shop/web:1.2}]}\n",
    )
    .expect("write");
    let sidecar = sidecars(&previewed(&pod, &config)).pop().expect("a sidecar");
    let args: Vec<&str> = sidecar["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let mut running = Command::new(&binary)
        .args(&args)
        .env_clear()
        .envs(kubelet_env(&sidecar))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the collector starts");
    // Its health check answers on the pod's IP, port 13133, as its probes expect.
    let healthy = eventually(Duration::from_secs(30), || {
        (super::common::curl_get("http://127.0.0.1:13133/").0 == 200).then_some(())
    });
    if healthy.is_none() {
        let _ = running.kill();
        let out = running.wait_with_output().expect("output");
        panic!("the sidecar never became healthy: {}", String::from_utf8_lossy(&out.stderr));
    }
    // OTLP over HTTP/protobuf on localhost:4318 and over gRPC on localhost:4317, as the applications send it.
    let http = reqwest::Client::new()
        .post("http://localhost:4318/v1/traces")
        .header("content-type", "application/x-protobuf")
        .body(request("over-http", "web").encode_to_vec())
        .send()
        .await
        .expect("the sidecar answers on 4318");
    assert!(http.status().is_success(), "{}", http.status());
    let mut grpc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        "http://localhost:4317",
    )
    .await
    .expect("the sidecar answers on 4317");
    grpc.export(request("over-grpc", "web")).await.expect("exported over gRPC");
    let arrived = eventually(Duration::from_secs(30), || (receiver.count() >= 2).then_some(()));
    let _ = running.kill();
    let out = running.wait_with_output().expect("output");
    assert!(arrived.is_some(), "nothing exported: {}", String::from_utf8_lossy(&out.stderr));
    let spans = receiver.spans();
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["over-grpc", "over-http"]), "{spans:#?}");
    for span in &spans {
        let attr = |k: &str| span.resource.get(k).and_then(Value::as_str).map(str::to_owned);
        assert_eq!(attr("service.name").as_deref(), Some("web"), "the application's own");
        assert_eq!(attr("k8s.namespace.name").as_deref(), Some("shop"));
        assert_eq!(attr("k8s.pod.name").as_deref(), Some("web-7d9f8"), "from the downward API");
        assert_eq!(attr("k8s.pod.uid").as_deref(), Some("0b7f3c2e-uid"));
        assert_eq!(attr("k8s.node.name").as_deref(), Some("node-a"));
        assert_eq!(attr("k8s.deployment.name").as_deref(), Some("web"), "{:?}", span.resource);
    }
}

#[test]
fn the_gateway_configuration_validates_with_a_collector_built_from_its_components() {
    let binary = collector("gateway");
    let helm = std::env::var_os("OTEL_INJECTOR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/otel-injector/tools"))
        .join("bin/helm");
    let rendered = Command::new(helm)
        .args(["template", "otel-gateway"])
        .arg(repo().join("../shared/charts/opentelemetry-collector"))
        .args(["--namespace", "observability", "--values"])
        .arg(repo().join("helm-values/opentelemetry-collector.yaml"))
        .output()
        .expect("helm runs (make test installs it)");
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let text = String::from_utf8_lossy(&rendered.stdout);
    let objects = super::common::corpus::objects(&text).expect("YAML");
    let map = objects.iter().find(|o| o["kind"] == "ConfigMap").expect("the gateway's ConfigMap");
    let mut config: Value = serde_yaml_ng::from_str(map["data"]["relay"].as_str().expect("relay")).expect("YAML");
    // The one component that cannot be built from the module proxy (tools/collector/gateway.yaml says why) is left
    // out of what is validated; everything else is as the chart renders it.
    const UNBUILDABLE: &str = "resourcedetection";
    assert!(config["processors"].get(UNBUILDABLE).is_some(), "the gateway uses {UNBUILDABLE}");
    config["processors"].as_object_mut().expect("processors").remove(UNBUILDABLE);
    for pipeline in config["service"]["pipelines"].as_object_mut().expect("pipelines").values_mut() {
        pipeline["processors"].as_array_mut().expect("processors").retain(|p| p != UNBUILDABLE);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = dir.path().join("relay.yaml");
    std::fs::write(&relay, serde_yaml_ng::to_string(&config).expect("YAML")).expect("write");
    // The environment the chart gives the gateway's pod.
    let env = [
        ("MY_POD_IP", "127.0.0.1"),
        ("OTEL_K8S_NODE_NAME", "node-a"),
        ("OTEL_K8S_NAMESPACE", "observability"),
        ("OTEL_K8S_NODE_IP", "127.0.0.1"),
        ("OTEL_K8S_POD_IP", "127.0.0.1"),
        ("OTEL_K8S_POD_NAME", "otel-gateway-0"),
        ("GOMEMLIMIT", "400MiB"),
    ];
    let out = Command::new(binary)
        .args(["validate", &format!("--config=file:{}", relay.display())])
        .env_clear()
        .envs(env)
        .output()
        .expect("the collector runs");
    assert!(out.status.success(), "the gateway's configuration: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_images_users_run_are_the_releases_the_tests_validate() {
    let version = |name: &str| {
        let config = std::fs::read_to_string(repo().join(format!("tools/collector/{name}.yaml"))).expect("read");
        config.lines().find_map(|l| l.strip_prefix("  version: ")).expect("dist.version").to_owned()
    };
    let sidecar = otel_injector::engine::config::DEFAULT_COLLECTOR_IMAGE;
    assert_eq!(sidecar, format!("otel/opentelemetry-collector-contrib:{}", version("sidecar")));
    let values = std::fs::read_to_string(repo().join("helm-values/opentelemetry-collector.yaml")).expect("read");
    let tag = values.lines().find_map(|l| l.strip_prefix("  tag: ")).expect("image.tag");
    assert_eq!(tag, version("gateway"), "the gateway's image is the release its configuration is validated with");
}
