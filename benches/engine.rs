//! Engine benchmarks on three pod sizes: the pure engine (`inject::mutate` on parsed JSON) and the whole admission
//! path (`admission::review`: bytes in, response bytes out, JSON parse and base64 included).
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::inject::{Target, mutate};
use otel_injector::engine::policy::NamespaceMeta;
use otel_injector::engine::workload::WorkloadKind;
use otel_injector::fixtures::{PodBuilder, container, pod, review};
use otel_injector::webhook::admission;
use serde_json::{Value, json};

fn minimal() -> Value {
    pod("web").container(container("app").image("nginx:1.27")).build()
}

/// A ReplicaSet-created pod as the API server sends it: managedFields, last-applied annotation, three containers
/// with env, probes, resources and mounts, an init container, projected volumes. About 10 KB of JSON.
fn production() -> Value {
    let app = |name: &str, port: u16| {
        let mut c = container(name).image(&format!("registry.example.com/shop/{name}:2.14.3")).port(port);
        for i in 0..16 {
            c = c.env(&format!("{}_SETTING_{i}", name.to_uppercase()), &format!("value-{i}-$(POD_NAME)"));
        }
        c.env_field("POD_NAME", "metadata.name")
            .field("resources", json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}))
            .field("readinessProbe", json!({"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5}))
            .field("livenessProbe", json!({"httpGet": {"path": "/live", "port": port}, "failureThreshold": 6}))
            .field("volumeMounts", json!([{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]))
            .field("terminationMessagePath", json!("/dev/termination-log"))
            .field("imagePullPolicy", json!("IfNotPresent"))
            .field("securityContext", json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}))
    };
    let managed: Vec<Value> = (0..6)
        .map(|i| {
            json!({"manager": format!("controller-{i}"), "operation": "Update", "apiVersion": "v1",
                   "time": "2026-11-01T10:00:00Z", "fieldsType": "FieldsV1",
                   "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}},
                                "f:spec": {"f:containers": {"k:{\"name\":\"checkout\"}": {".": {}, "f:env": {}, "f:image": {}}}}}})
        })
        .collect();
    let builder: PodBuilder = pod("")
        .meta("generateName", "checkout-7d9f8c6b5-".into())
        .meta("namespace", "shop".into())
        .meta("managedFields", managed.into())
        .label("app", "checkout")
        .label("pod-template-hash", "7d9f8c6b5")
        .label("app.kubernetes.io/version", "2.14.3")
        .annotation("kubectl.kubernetes.io/last-applied-configuration", &"x".repeat(2400))
        .owner("ReplicaSet", "checkout-7d9f8c6b5")
        .init_container(container("migrate").image("registry.example.com/shop/migrate:2.14.3"))
        .container(app("checkout", 8080))
        .container(app("worker", 8081))
        .container(app("cache", 6379))
        .spec("volumes", json!([{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]))
        .spec("tolerations", json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
    builder.build()
}

fn wide() -> Value {
    (0..200)
        .fold(pod("batch"), |p, i| p.container(container(&format!("c{i}")).image("busybox:1.36").env("X", "1")))
        .build()
}

fn config() -> Config {
    Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() }
}

fn benches(c: &mut Criterion) {
    let config = config();
    let ns = NamespaceMeta::default();
    let namespaces = Fixed::default();
    let cases = [("minimal", minimal()), ("production-10k", production()), ("containers-200", wide())];
    let mut engine = c.benchmark_group("engine");
    for (name, object) in &cases {
        let size = serde_json::to_vec(object).map_or(0, |b| b.len());
        engine.throughput(Throughput::Bytes(size as u64));
        let target = Target::new(WorkloadKind::Pod, "shop", &ns, &config);
        assert!(!mutate(object, &target).patch.0.is_empty(), "{name} must be instrumented");
        engine.bench_with_input(BenchmarkId::new("mutate", format!("{name}/{size}B")), object, |b, o| {
            b.iter(|| mutate(std::hint::black_box(o), &target))
        });
    }
    let mut with_sidecar = config.clone();
    with_sidecar.sidecar.enabled = true;
    let target = Target::new(WorkloadKind::Pod, "shop", &ns, &with_sidecar);
    let production = &cases[1].1;
    assert!(mutate(production, &target).explanation.sidecar.starts_with("added"));
    engine.bench_function("mutate/production-10k+sidecar", |b| {
        b.iter(|| mutate(std::hint::black_box(production), &target))
    });
    let owners = otel_injector::engine::workload::Owners { deployment: Some("checkout".into()), ..Default::default() };
    let inputs = otel_injector::engine::inject::collector::Inputs {
        namespace: "shop",
        owners: &owners,
        signals: &with_sidecar.signals,
        sampling_ratio: 0.5,
        headers: &with_sidecar.headers,
        sidecar: &with_sidecar.sidecar,
    };
    engine.bench_function("collector/render-yaml", |b| {
        b.iter(|| otel_injector::engine::inject::collector::render(std::hint::black_box(&inputs)))
    });
    engine.finish();
    let mut full = c.benchmark_group("admission");
    for (name, object) in &cases {
        let body = serde_json::to_vec(&review(object, "CREATE", "shop")).expect("json");
        full.throughput(Throughput::Bytes(body.len() as u64));
        full.bench_with_input(BenchmarkId::new("review", format!("{name}/{}B", body.len())), &body, |b, body| {
            b.iter(|| admission::review(std::hint::black_box(body), &config, &namespaces).expect("answered"))
        });
    }
    full.finish();
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
