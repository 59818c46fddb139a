//! Runs the `/mutate` handler N times in-process on the load test's review, for profilers (`perf record`,
//! `valgrind --tool=callgrind --toggle-collect='admit_loop::run*'`): `admit_loop MODE N` with MODE `off`, `local` or
//! `dead` (exporting over gRPC to a port that refuses), or `engine` (the engine alone, on the benches' ~10 KB pod, or
//! with `OBJECT=review` on the review's object).
#![allow(missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::values::Protocol;
use otel_injector::telemetry::traces::{Setup, TraceIds};
use otel_injector::telemetry::{self, LogFormat};
use otel_injector::webhook::mutate::mutate;
use otel_injector::webhook::server::AppState;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/admission-reviews/kw__replicaset-pod-create-generatename.req.json"
    );
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the corpus review")).expect("JSON");
    otel_injector::fixtures::review_text("admission.k8s.io/v1", &request).into_bytes()
}

#[inline(never)]
fn run(rt: &tokio::runtime::Runtime, state: &AppState, dispatch: &tracing::Dispatch, body: &[u8], n: usize) {
    for _ in 0..n {
        let request = Request::post("/mutate")
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .expect("request");
        let response = rt.block_on(mutate(State(state.clone()), request).with_subscriber(dispatch.clone()));
        assert_eq!(response.status(), 200);
    }
}

#[inline(never)]
fn run_engine(object: &str, target: &otel_injector::engine::inject::Target<'_>, n: usize) {
    for _ in 0..n {
        let mutation = otel_injector::engine::inject::mutate_json(std::hint::black_box(object), target);
        assert!(!mutation.patch.0.is_empty());
    }
}

fn engine(n: usize) {
    use otel_injector::engine::inject::Target;
    use otel_injector::engine::policy::NamespaceMeta;
    use otel_injector::engine::workload::WorkloadKind;
    // The benches' ~10 KB production pod, or the load test review's object.
    let object = match std::env::var("OBJECT").as_deref() {
        Ok("review") => {
            serde_json::from_slice::<serde_json::Value>(&body()).expect("JSON")["request"]["object"].to_string()
        }
        _ => otel_injector::fixtures::production_pod().to_string(),
    };
    let config = Config { default: DefaultMode::Inject, ..Config::default() };
    let ns = NamespaceMeta::default();
    let target = Target::new(WorkloadKind::Pod, "shop", &ns, &config);
    run_engine(&object, &target, 1000);
    let started = std::time::Instant::now();
    run_engine(&object, &target, n);
    eprintln!(
        "engine: {:.2} µs per object of {} bytes",
        started.elapsed().as_secs_f64() * 1e6 / n as f64,
        object.len()
    );
}

fn main() {
    otel_injector::webhook::tls::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "off".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    if mode == "engine" {
        return engine(n);
    }
    let setup = match mode.as_str() {
        "off" => Setup::Disabled,
        "local" => Setup::Local,
        "dead" => Setup::Export { endpoint: "http://127.0.0.1:1".to_owned(), transport: Protocol::Grpc },
        other => panic!("unknown mode {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let ids = TraceIds::of(Some(&setup));
    let (subscriber, telemetry) = {
        let _runtime = rt.enter();
        let format = if std::env::var("LOG").as_deref() == Ok("text") { LogFormat::Text } else { LogFormat::Json };
        telemetry::subscriber(format, "info", false, BoxMakeWriter::new(std::io::sink), Some(setup))
            .expect("subscriber")
    };
    let dispatch: tracing::Dispatch = subscriber.into();
    let config = Config { default: DefaultMode::Inject, ..Config::default() };
    let mut state = AppState::new(config, Arc::new(Fixed::default()));
    state.trace_ids = ids;
    let body = body();
    run(&rt, &state, &dispatch, &body, 200);
    let started = std::time::Instant::now();
    run(&rt, &state, &dispatch, &body, n);
    eprintln!("{mode}: {:.2} µs per admission", started.elapsed().as_secs_f64() * 1e6 / n as f64);
    rt.block_on(telemetry.shutdown(std::time::Duration::from_millis(200)));
}
