//! No tenant can hurt the webhook: whatever one namespace's objects hold and whoever reaches its ports, the work per
//! review, the memory held and the time taken stay bounded, and everybody else is answered.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use base64::Engine;
use common::TestServer;
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::inject::{self, Stop, Target};
use otel_injector::engine::limits;
use otel_injector::engine::policy::{Cause, NamespaceMeta};
use otel_injector::engine::workload::WorkloadKind;
use otel_injector::testing::fixtures::{container, pod};
use otel_injector::testing::hostile;
use otel_injector::webhook::admission;
use otel_injector::webhook::state::{AppState, Parts};
use serde_json::Value;

/// The CPU time the calling thread has used (Linux: `/proc/thread-self/stat`, in clock ticks of 10 ms).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split(' ')
        .filter_map(|f| f.parse().ok())
        .collect();
    // After the command's name: state (not a number), ppid, …; utime and stime are fields 14 and 15 of the line.
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The largest answer a review may get: the patch limit in base64, and the envelope and warnings around it.
const ANSWER_BYTES: usize = limits::PATCH_BYTES * 4 / 3 + 16 * 1024;

/// What each hostile review must come to.
fn expected(name: &str) -> &'static str {
    match name {
        "references-at-limits" | "many-attributes" | "amplified" | "many-mounts" | "many-volumes" => "instrumented",
        _ => "over_limit",
    }
}

#[test]
fn every_hostile_review_costs_little_cpu_and_gets_a_bounded_answer() {
    // Release builds take at most ~31 ms each (docs/operations.md, "Limits of one object"); a debug build is about ten times slower. Before
    // this was bounded, these took from 5 s to minutes of CPU, and answers ran to hundreds of MiB.
    let bound = Duration::from_millis(1500);
    let config = hostile::config();
    for (name, review) in hostile::all(hostile::MAX_OBJECT) {
        let before = thread_cpu();
        let answer = admission::review(review.as_bytes(), &config, &Fixed::default()).expect("a valid review");
        let cpu = thread_cpu() - before;
        assert!(cpu < bound, "{name}: {cpu:?} of CPU");
        assert!(answer.body.len() <= ANSWER_BYTES, "{name}: a {}-byte answer", answer.body.len());
        assert!(answer.warnings.len() <= limits::WARNINGS + 1, "{name}: {} warnings", answer.warnings.len());
        let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
        assert_eq!(body["response"]["allowed"], true, "{name}");
        match expected(name) {
            "over_limit" => {
                assert_eq!((answer.decision.as_str(), answer.cause), ("skipped", "over_limit"), "{name}");
                assert!(body["response"]["patch"].is_null(), "{name}: left unchanged");
                let warning = answer.warnings.first().map(String::as_str).unwrap_or_default();
                assert!(warning.starts_with("otel-injector left this ") && warning.contains("limit"), "{warning}");
            }
            _ => {
                assert_eq!(answer.decision.as_str(), "instrumented", "{name}: {:?}", answer.warnings);
                // The patch applies to the object as sent, as the API server would apply it.
                let review: Value = serde_json::from_str(&review).expect("JSON");
                let patch = base64::engine::general_purpose::STANDARD
                    .decode(body["response"]["patch"].as_str().expect("a patch"))
                    .expect("base64");
                let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON Patch");
                let mut object = review["request"]["object"].clone();
                json_patch::patch(&mut object, &patch).expect("applies");
            }
        }
    }
}

#[test]
fn the_engine_does_no_work_for_a_caller_that_stopped_waiting() {
    let object = pod("web").annotation("otel-injector.io/inject", "true").container(container("app")).build();
    let config = hostile::config();
    let ns = NamespaceMeta::default();
    let stopped = || true;
    let target = Target { stop: Stop::when(&stopped), ..Target::new(WorkloadKind::Pod, "shop", &ns, &config) };
    let mutation = inject::mutate(&object, &target);
    assert!(mutation.patch.is_empty());
    assert_eq!(mutation.explanation.decision.cause, Cause::Deadline);
    let target = Target::new(WorkloadKind::Pod, "shop", &ns, &config);
    assert!(!inject::mutate(&object, &target).patch.is_empty(), "instrumented while someone waits");
}

/// Answers `body` at `uri` with the handler in-process: status and body.
async fn handle(state: &AppState, uri: &str, body: String) -> (u16, String) {
    use axum::response::IntoResponse;
    let request =
        Request::post(uri).header("content-type", "application/json").body(Body::from(body)).expect("request");
    let response = otel_injector::webhook::mutate::mutate(State(state.clone()), request).await.into_response();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn small_review() -> String {
    let object = pod("web").annotation("otel-injector.io/inject", "true").container(container("app")).build();
    hostile::pod_review(&object)
}

#[tokio::test]
async fn a_review_whose_deadline_has_passed_is_not_worked_on() {
    let state = AppState::new(Parts::new(hostile::config(), std::sync::Arc::new(Fixed::default())));
    let (status, text) = handle(&state, "/mutate?timeout=0s", small_review()).await;
    assert_eq!(status, 504, "{text}");
    assert!(text.starts_with("the caller's deadline (0ns) passed before the review was answered"), "{text}");
    let metrics = state.metrics.encode();
    assert!(metrics.contains("otel_injector_admission_errors_total{reason=\"deadline\"} 1"), "{metrics}");
    let (status, _) = handle(&state, "/mutate?timeout=10s", small_review()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_timeout_beyond_any_duration_is_read_as_the_longest_the_api_server_sends() {
    let server = TestServer::start(hostile::config()).await;
    for timeout in ["18446744073709551615s", "18446744073709551615ms", "5124095576030431h"] {
        let response = server
            .client(false)
            .post(format!("{}?timeout={timeout}", server.url()))
            .header("content-type", "application/json")
            .body(small_review())
            .send()
            .await
            .expect("an answer, not a reset");
        assert_eq!(response.status(), 200, "{timeout}");
    }
    server.server.shutdown().await;
}

#[test]
fn the_largest_answer_stays_within_its_bound() {
    let review = hostile::pod_review(&hostile::large_answer());
    let answer = admission::review(review.as_bytes(), &hostile::config(), &Fixed::default()).expect("valid");
    assert_eq!(answer.decision.as_str(), "instrumented");
    assert!((1_000_000..=ANSWER_BYTES).contains(&answer.body.len()), "{} bytes", answer.body.len());
}
