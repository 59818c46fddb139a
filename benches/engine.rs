//! Engine benchmarks on three pod sizes: the pure engine (`inject::mutate_json`: the object's JSON text in, reading
//! it included; the decision, the patch and the status out) and the whole admission path (`admission::review`:
//! bytes in, response bytes out, the envelope and base64 included); and the worst legal reviews of a hostile tenant.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::inject::{Target, mutate_json};
use otel_injector::engine::policy::NamespaceMeta;
use otel_injector::engine::workload::WorkloadKind;
use otel_injector::testing::fixtures::{container, pod, review, review_text};
use otel_injector::webhook::admission;
use serde_json::Value;

fn minimal() -> Value {
    pod("web").container(container("app").image("nginx:1.27")).build()
}

/// As many containers as the limits allow.
fn wide() -> Value {
    (0..otel_injector::engine::limits::CONTAINERS)
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
    let cases = [
        ("minimal", minimal()),
        ("production-10k", otel_injector::testing::fixtures::production_pod()),
        ("containers-100", wide()),
    ];
    let mut engine = c.benchmark_group("engine");
    for (name, object) in &cases {
        let text = object.to_string();
        engine.throughput(Throughput::Bytes(text.len() as u64));
        let target = Target::new(WorkloadKind::Pod, "shop", &ns, &config);
        assert!(!mutate_json(&text, &target).patch.is_empty(), "{name} must be instrumented");
        engine.bench_with_input(BenchmarkId::new("mutate", format!("{name}/{}B", text.len())), &text, |b, t| {
            b.iter(|| mutate_json(std::hint::black_box(t), &target))
        });
    }
    let mut with_sidecar = config.clone();
    with_sidecar.sidecar.enabled = true;
    let target = Target::new(WorkloadKind::Pod, "shop", &ns, &with_sidecar);
    let production = cases[1].1.to_string();
    assert!(mutate_json(&production, &target).explanation.sidecar.starts_with("added"));
    engine.bench_function("mutate/production-10k+sidecar", |b| {
        b.iter(|| mutate_json(std::hint::black_box(&production), &target))
    });
    // The Java agent asked for on every container (by image volume, on a current API server).
    let mut with_agent: serde_json::Value = cases[1].1.clone();
    with_agent["metadata"]["annotations"]["otel-injector.io/inject-java"] = "true".into();
    let with_agent = with_agent.to_string();
    let current = otel_injector::engine::syntax::KubeVersion::parse("1.37").ok();
    let target = Target { server_version: current, ..Target::new(WorkloadKind::Pod, "shop", &ns, &config) };
    assert!(mutate_json(&with_agent, &target).explanation.notes.iter().any(|n| n.starts_with("agents: java")));
    engine.bench_function("mutate/production-10k+java-agent", |b| {
        b.iter(|| mutate_json(std::hint::black_box(&with_agent), &target))
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
    // The YAML emitter on the document (the reference, and the fallback for names YAML quotes), and the same text
    // written from the configuration's pieces (what every sidecar gets).
    engine.bench_function("collector/render-yaml", |b| {
        b.iter(|| otel_injector::engine::inject::collector::render(std::hint::black_box(&inputs)))
    });
    use otel_injector::engine::inject::collector::text::{Form, Pieces};
    let pieces = Pieces::new(&with_sidecar.headers, &with_sidecar.sidecar);
    engine.bench_function("collector/write-from-pieces", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(2048);
            assert!(pieces.write(std::hint::black_box(&inputs), Form::EnvJson, &mut out));
            out
        })
    });
    engine.finish();
    let mut full = c.benchmark_group("admission");
    for (name, object) in &cases {
        let body = review_text("admission.k8s.io/v1", &review(object, "CREATE", "shop")["request"]).into_bytes();
        full.throughput(Throughput::Bytes(body.len() as u64));
        full.bench_with_input(BenchmarkId::new("review", format!("{name}/{}B", body.len())), &body, |b, body| {
            b.iter(|| admission::review(std::hint::black_box(body), &config, &namespaces).expect("answered"))
        });
    }
    full.finish();
    // The worst legal reviews a tenant can send (3 MiB objects; a 7 MiB UPDATE): each must cost under 50 ms of CPU
    // (docs/operations.md, "Limits of one object"), against about 20 µs for the 10 KB pod above.
    let hostile_config = otel_injector::testing::hostile::config();
    let mut worst = c.benchmark_group("hostile");
    worst.sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    for (name, body) in otel_injector::testing::hostile::all(otel_injector::testing::hostile::MAX_OBJECT) {
        worst.throughput(Throughput::Bytes(body.len() as u64));
        worst.bench_with_input(BenchmarkId::new("review", format!("{name}/{}B", body.len())), &body, |b, body| {
            b.iter(|| admission::review(std::hint::black_box(body.as_bytes()), &hostile_config, &namespaces))
        });
    }
    worst.finish();
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
