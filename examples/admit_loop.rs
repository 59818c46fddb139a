//! Runs the `/mutate` handler N times in-process on the load test's review, for profilers (`perf record`,
//! `valgrind --tool=callgrind --toggle-collect='admit_loop::run*'`): `admit_loop MODE N` with MODE `off`, `local` or
//! `dead` (exporting over gRPC to a port that refuses), or `engine` (the engine alone, then reading the object alone
//! and into a `serde_json::Value`, on the benches' ~10 KB pod, or with `OBJECT=review` on the review's object).
//! `admit_loop compare N ROUNDS` runs `off`, `local` and `dead` in turns of N admissions and prints each one's median
//! against `off` (what docs/speed.md reports for tracing's cost).
//! MODE `live` exports to the receiver at `OTLP_SINK` (start `examples/otlp_sink FILE`, which writes it to FILE).
//! `SIDECAR=1` turns the collector sidecar on for every pod.
#![allow(missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::syntax::Protocol;
use otel_injector::telemetry::traces::Setup;
use otel_injector::telemetry::{self, LogFormat};
use otel_injector::webhook::mutate::mutate;
use otel_injector::webhook::state::{AppState, Parts};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/admission-reviews/kw__replicaset-pod-create-generatename.req.json"
    );
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the corpus review")).expect("JSON");
    otel_injector::testing::fixtures::review_text("admission.k8s.io/v1", &request).into_bytes()
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
        _ => otel_injector::testing::fixtures::production_pod().to_string(),
    };
    let config = config();
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
    // Of which reading the object into the engine's view.
    let started = std::time::Instant::now();
    for _ in 0..n {
        let view = otel_injector::engine::pod_view::PodView::parse(std::hint::black_box(&object), WorkloadKind::Pod);
        assert!(view.is_ok());
    }
    eprintln!("  of which reading it: {:.2} µs", started.elapsed().as_secs_f64() * 1e6 / n as f64);
    // Against reading it into a `serde_json::Value` (what the minimal webhook does with the whole review).
    let started = std::time::Instant::now();
    for _ in 0..n {
        let value: serde_json::Value = serde_json::from_str(std::hint::black_box(&object)).expect("JSON");
        assert!(value.is_object());
    }
    eprintln!("  (into a serde_json::Value: {:.2} µs)", started.elapsed().as_secs_f64() * 1e6 / n as f64);
}

/// `--default inject`, with the collector sidecar on every pod when `SIDECAR=1`.
fn config() -> Config {
    let mut config = Config { default: DefaultMode::Inject, ..Config::default() };
    config.sidecar.enabled = std::env::var("SIDECAR").as_deref() == Ok("1");
    config
}

/// One way of tracing, set up: its runtime, subscriber and state.
struct Mode {
    name: &'static str,
    rt: tokio::runtime::Runtime,
    dispatch: tracing::Dispatch,
    state: AppState,
    telemetry: otel_injector::telemetry::Telemetry,
}

fn mode(name: &'static str) -> Mode {
    let setup = match name {
        "off" => Setup::Disabled,
        "local" => Setup::Local,
        "dead" => Setup::Export { endpoint: "http://127.0.0.1:1".to_owned(), transport: Protocol::Grpc },
        "live" => Setup::Export {
            endpoint: std::env::var("OTLP_SINK").expect("live: OTLP_SINK, the endpoint examples/otlp_sink wrote"),
            transport: Protocol::Grpc,
        },
        other => panic!("unknown mode {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (subscriber, telemetry) = {
        let _runtime = rt.enter();
        let format = if std::env::var("LOG").as_deref() == Ok("text") { LogFormat::Text } else { LogFormat::Json };
        telemetry::subscriber(format, "info", false, BoxMakeWriter::new(std::io::sink), Some(setup))
            .expect("subscriber")
    };
    let state =
        AppState::new(Parts { trace_ids: telemetry.trace_ids(), ..Parts::new(config(), Arc::new(Fixed::default())) });
    Mode { name, rt, dispatch: subscriber.into(), state, telemetry }
}

/// `off`, `local` and `dead` in turns of `n` admissions, `rounds` times, so that the machine's drift falls on all
/// three alike: the median time per admission of each, and its ratio to `off`.
fn compare(n: usize, rounds: usize) {
    let body = body();
    let modes = [mode("off"), mode("local"), mode("dead")];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..=rounds {
        for (i, m) in modes.iter().enumerate() {
            let started = std::time::Instant::now();
            run(&m.rt, &m.state, &m.dispatch, &body, n);
            if round > 0 {
                times[i].push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
            }
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let off = median(&mut times[0].clone());
    for (m, t) in modes.iter().zip(times.iter_mut()) {
        let at = median(t);
        eprintln!(
            "{:>5}: {at:.2} µs per admission (median of {rounds} turns of {n}), {:+.1}% against off",
            m.name,
            (at / off - 1.0) * 100.0
        );
    }
    for mut m in modes {
        m.rt.block_on(m.telemetry.shutdown(std::time::Duration::from_millis(200)));
    }
}

/// User and system CPU seconds of this process so far (all threads), from `/proc/self/stat`.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or_default();
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    otel_injector::webhook::tls::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "off".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    match name.as_str() {
        "engine" => return engine(n),
        "compare" => return compare(n, args.next().and_then(|r| r.parse().ok()).unwrap_or(15)),
        _ => {}
    }
    let name: &'static str = Box::leak(name.into_boxed_str());
    let mut m = mode(name);
    let body = body();
    run(&m.rt, &m.state, &m.dispatch, &body, 200);
    let (started, cpu) = (std::time::Instant::now(), process_cpu());
    run(&m.rt, &m.state, &m.dispatch, &body, n);
    // The process's CPU includes the exporter's threads, which the handler's own time does not.
    std::thread::sleep(std::time::Duration::from_millis(300));
    eprintln!(
        "{name}: {:.2} µs per admission, {:.2} µs of the process's CPU",
        started.elapsed().as_secs_f64() * 1e6 / n as f64 - 300_000.0 / n as f64,
        (process_cpu() - cpu) * 1e6 / n as f64
    );
    m.rt.block_on(m.telemetry.shutdown(std::time::Duration::from_millis(200)));
}
