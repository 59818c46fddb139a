//! What tracing costs an admission: the `/mutate` handler (a real ~9.5 KB Pod CREATE from the corpus, body read,
//! parse, engine, answer, metrics, its JSON log line) with
//! - `off`: no tracer (`OTEL_SDK_DISABLED=true`), logs only;
//! - `local`: no endpoint (the default): no tracer, trace ids made for the logs;
//! - `dead-refusing`: exporting over gRPC to a port that refuses;
//! - `dead-black-hole`: exporting over HTTP to a port that accepts and never answers;
//! - `live`: exporting over gRPC to an in-process receiver.
//!
//! - `off-again`: `off` once more, last, to show how far the run drifted.
//!
//! The target: with the collector dead, within 10% of `off`.
#![allow(missing_docs)]

use otel_injector::testing::otlp;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use criterion::{Criterion, criterion_group, criterion_main};
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::syntax::Protocol;
use otel_injector::telemetry::traces::Setup;
use otel_injector::telemetry::{self, LogFormat};
use otel_injector::webhook::mutate::mutate;
use otel_injector::webhook::state::{AppState, Parts};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The captured review the load test also sends.
fn body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/admission-reviews/kw__replicaset-pod-create-generatename.req.json"
    );
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the corpus review")).expect("JSON");
    otel_injector::testing::fixtures::review_text("admission.k8s.io/v1", &request).into_bytes()
}

fn export(endpoint: &str, transport: Protocol) -> Option<Setup> {
    let endpoint = match transport {
        Protocol::Grpc => endpoint.to_owned(),
        Protocol::HttpProtobuf => format!("{endpoint}/v1/traces"),
    };
    Some(Setup::Export { endpoint, transport })
}

fn benches(c: &mut Criterion) {
    otel_injector::webhook::tls::install_crypto_provider();
    let body = body();
    let receiver = otlp::Receiver::start(otlp::Transport::Grpc);
    let refusing = otlp::refusing();
    let (hole, _listener, _held) = otlp::black_hole();
    let variants = [
        ("off", Some(Setup::Disabled)),
        ("local", Some(Setup::Local)),
        ("dead-refusing", export(&refusing, Protocol::Grpc)),
        ("dead-black-hole", export(&hole, Protocol::HttpProtobuf)),
        ("live", export(&receiver.endpoint, Protocol::Grpc)),
        // Again at the end: how far the machine drifted during the run.
        ("off-again", Some(Setup::Disabled)),
    ];
    let mut group = c.benchmark_group("admission-traced");
    group.measurement_time(Duration::from_secs(4));
    for (name, setup) in variants {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let (subscriber, mut telemetry) = {
            let _runtime = rt.enter();
            telemetry::subscriber(LogFormat::Json, "info", false, BoxMakeWriter::new(std::io::sink), setup)
                .expect("subscriber")
        };
        let dispatch: tracing::Dispatch = subscriber.into();
        let config = Config { default: DefaultMode::Inject, ..Config::default() };
        let state =
            AppState::new(Parts { trace_ids: telemetry.trace_ids(), ..Parts::new(config, Arc::new(Fixed::default())) });
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = Request::post("/mutate")
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .expect("request");
                let response = rt.block_on(mutate(State(state.clone()), request).with_subscriber(dispatch.clone()));
                assert_eq!(response.status(), 200);
            });
        });
        rt.block_on(telemetry.shutdown(Duration::from_millis(200)));
    }
    group.finish();
    eprintln!("spans received by the live receiver: {}", receiver.spans().len());
}

criterion_group!(tracing_benches, benches);
criterion_main!(tracing_benches);
