//! The webhook's own telemetry, against the real `serve` process: a server span per admission at an in-process
//! OTLP receiver (gRPC and HTTP/protobuf), continuing the caller's `traceparent`; logs that carry the span's ids,
//! one JSON object per line with each key once, no colour on a pipe; admissions unaffected when the collector is
//! away; `/metrics` that the reference OpenMetrics parser reads and whose counters move.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::{Serve, pair_in};
use otel_injector::testing::fixtures::{container, pod, review};
use otel_injector::testing::otlp::{Received, Receiver, Transport, black_hole, refusing};
use serde_json::Value;

/// A caller's trace: trace id, parent span id.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Webhook {
    serve: Serve,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Webhook {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pair_in(dir.path());
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let args = ["--default", "inject", "--tls-cert", cert.to_str().expect("utf-8"), "--tls-key"];
        let mut args = args.to_vec();
        args.push(key.to_str().expect("utf-8"));
        let serve = Serve::start_with(&args, env);
        otel_injector::webhook::tls::install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA");
        let client = reqwest::Client::builder().tls_certs_only([ca]).http1_only().build().expect("client");
        Self { serve, client, _dir: dir }
    }

    /// POSTs a Pod CREATE review with `uid` (and `traceparent` when given): status, and how long the answer took.
    async fn admit(&self, uid: &str, traceparent: Option<&str>) -> (u16, Duration) {
        let mut body = review(&pod("").container(container("app").image("shop/web:1.2")).build(), "CREATE", "shop");
        body["request"]["uid"] = uid.into();
        body["request"]["object"]["metadata"] = serde_json::json!({"generateName": "web-", "namespace": "shop"});
        self.post(serde_json::to_vec(&body).expect("json"), traceparent).await
    }

    async fn post(&self, body: Vec<u8>, traceparent: Option<&str>) -> (u16, Duration) {
        let mut request = self.client.post(self.serve.url()).header("content-type", "application/json").body(body);
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp).header("baggage", "tenant=shop");
        }
        let started = Instant::now();
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        (status, started.elapsed())
    }
}

/// Exports quickly (100 ms batches) to `endpoint` over `protocol`.
fn exporting<'a>(endpoint: &'a str, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

fn server_spans(spans: &[Received]) -> Vec<&Received> {
    spans.iter().filter(|s| s.kind == 2).collect()
}

fn by_uid<'a>(spans: &'a [Received], uid: &str) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| s.attr("admission.uid").as_deref() == Some(uid)).collect();
    assert_eq!(found.len(), 1, "exactly one server span for {uid}: {found:#?}");
    found[0]
}
/// The `admitted` log line of the review `uid`, every line parsed strictly. The lines come through a pipe read by
/// another thread, so the line may arrive a little after the answer: waited for, up to 10 s.
fn admitted_line(serve: &Serve, uid: &str) -> serde_json::Map<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = strict_json_lines(&serve.logs());
        if let Some(line) = lines.into_iter().find(|l| l["message"] == "admitted" && l["admission.uid"] == uid) {
            return line;
        }
        assert!(Instant::now() < deadline, "no admitted line for {uid}: {}", serve.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every log line as a JSON object, refusing any line with a key twice.
fn strict_json_lines(logs: &str) -> Vec<serde_json::Map<String, Value>> {
    logs.lines()
        .map(|line| {
            let mut de = serde_json::Deserializer::from_str(line);
            let keys = unique_keys(&mut de).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(!keys.is_empty());
            serde_json::from_str(line).expect("a JSON object")
        })
        .collect()
}

/// The top-level keys of a JSON object, failing on a duplicate.
fn unique_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeSet<String>, D::Error> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = BTreeSet<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen = BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                if !seen.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                }
            }
            Ok(seen)
        }
    }
    d.deserialize_map(Keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_span_per_admission_over_grpc_continuing_the_callers_trace() {
    let receiver = Receiver::start(Transport::Grpc);
    let webhook = Webhook::start(&exporting(&receiver.endpoint, "grpc"));
    assert_eq!(webhook.admit("continued", Some(TRACEPARENT)).await.0, 200);
    assert_eq!(webhook.admit("root", None).await.0, 200);
    assert_eq!(webhook.admit("malformed-parent", Some("00-xyz-00f067aa0ba902b7-01")).await.0, 200);
    assert_eq!(webhook.post(b"{\"kind\": 1}".to_vec(), None).await.0, 400);
    let spans = receiver.wait_for("", 4, Duration::from_secs(10));
    let servers = server_spans(&spans);
    assert_eq!(servers.len(), 4, "one server span per call: {servers:#?}");

    let continued = by_uid(&spans, "continued");
    assert_eq!(continued.name, "CREATE Pod");
    assert_eq!(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "the caller's trace");
    assert_eq!(continued.parent_span_id, "00f067aa0ba902b7", "the caller's span is the parent");
    for (key, want) in [
        ("k8s.namespace.name", "shop"),
        ("k8s.object.kind", "Pod"),
        ("k8s.object.name", "web-"),
        ("admission.operation", "CREATE"),
        ("admission.dry_run", "false"),
        ("admission.decision", "instrumented"),
        ("admission.reason", "default"),
        ("admission.containers", "app"),
        ("admission.sidecar", "not requested"),
        ("admission.patch_operations", "2"),
        ("admission.warnings", "0"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(continued.attr(key).as_deref(), Some(want), "{key} in {:#?}", continued.attributes);
    }
    assert!(!continued.attributes.contains_key("trace_id") && !continued.attributes.contains_key("span_id"));
    // Never an env value or the object: every attribute is short and none holds what the patch injects.
    for (key, value) in &continued.attributes {
        let text = value.to_string();
        assert!(text.len() < 100 && !text.contains("4317") && !text.contains("OTEL_"), "{key}={text}");
    }
    assert_eq!(continued.resource.get("service.name"), Some(&Value::from("otel-injector")));
    assert_eq!(continued.resource.get("service.version"), Some(&Value::from(env!("CARGO_PKG_VERSION"))));

    // One span per admission (SPEC §9): nothing under it, nothing else in its trace.
    let in_its_trace: Vec<&str> =
        spans.iter().filter(|s| s.trace_id == continued.trace_id).map(|s| s.span_id.as_str()).collect();
    assert_eq!(in_its_trace, [continued.span_id.as_str()], "{spans:#?}");
    assert!(spans.iter().all(|s| s.kind == 2), "every span is an admission's server span: {spans:#?}");

    for uid in ["root", "malformed-parent"] {
        let root = by_uid(&spans, uid);
        assert_eq!(root.parent_span_id, "", "{uid} starts a new trace");
        assert_ne!(root.trace_id, continued.trace_id);
    }
    let refused = servers.iter().find(|s| s.attr("error.type").is_some()).expect("the refused call has a span");
    assert_eq!(refused.attr("error.type").as_deref(), Some("malformed"));
    assert_eq!(refused.attr("http.response.status_code").as_deref(), Some("400"));
    assert_eq!(refused.status, 2, "error status");

    // The review's log line carries the span's ids, and every line is one object with each key once.
    let admitted = admitted_line(&webhook.serve, "continued");
    assert_eq!(admitted["trace_id"], continued.trace_id.as_str());
    assert_eq!(admitted["span_id"], continued.span_id.as_str());
    assert_eq!(admitted["k8s.object.name"], "web-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_also_go_over_http_protobuf_with_the_standard_headers_name_and_resource() {
    let receiver = Receiver::start(Transport::Http);
    let mut env = exporting(&receiver.endpoint, "http/protobuf");
    env.extend([
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=platform%20team"),
        ("OTEL_SERVICE_NAME", "injector-eu1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,k8s.cluster.name=eu1"),
    ]);
    let webhook = Webhook::start(&env);
    assert_eq!(webhook.admit("over-http", Some(TRACEPARENT)).await.0, 200);
    let spans = receiver.wait_for("CREATE Pod", 1, Duration::from_secs(10));
    let span = by_uid(&spans, "over-http");
    assert_eq!(
        (span.trace_id.as_str(), span.parent_span_id.as_str()),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    );
    assert_eq!(span.attr("k8s.namespace.name").as_deref(), Some("shop"));
    assert_eq!(span.tenant.as_deref(), Some("platform team"), "OTEL_EXPORTER_OTLP_HEADERS sent, URL-decoded");
    assert_eq!(span.resource.get("service.name"), Some(&Value::from("injector-eu1")));
    assert_eq!(span.resource.get("k8s.cluster.name"), Some(&Value::from("eu1")));
    assert_eq!(span.resource.get("deployment.environment.name"), Some(&Value::from("prod")));
    assert!(span.resource.contains_key("service.version"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_sampler_variables_decide_which_admissions_are_traced() {
    let receiver = Receiver::start(Transport::Grpc);
    let mut env = exporting(&receiver.endpoint, "grpc");
    env.extend([
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=grpc"),
    ]);
    let webhook = Webhook::start(&env);
    // Ratio 0: a root is never sampled; a caller's sampled trace is followed; a caller's unsampled one is not.
    assert_eq!(webhook.admit("root", None).await.0, 200);
    assert_eq!(webhook.admit("unsampled-parent", Some(&TRACEPARENT.replace("-01", "-00"))).await.0, 200);
    assert_eq!(webhook.admit("sampled-parent", Some(TRACEPARENT)).await.0, 200);
    receiver.wait_until(Duration::from_secs(10), |spans| {
        spans.iter().any(|s| s.attr("admission.uid").as_deref() == Some("sampled-parent"))
    });
    // Spans are batched in order: anything sent for the earlier admissions would have arrived by now.
    std::thread::sleep(Duration::from_millis(300));
    let spans = receiver.spans();
    let uids: BTreeSet<_> = server_spans(&spans).iter().filter_map(|s| s.attr("admission.uid")).collect();
    assert_eq!(uids, BTreeSet::from(["sampled-parent".to_owned()]));
    assert!(spans.iter().all(|s| s.tenant.as_deref() == Some("grpc")), "headers go as gRPC metadata too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_away_admissions_succeed_and_lost_spans_are_counted() {
    let refused = refusing();
    let (hole, _listener, _held) = black_hole();
    for (name, endpoint, protocol) in
        [("refusing", refused.as_str(), "grpc"), ("black hole", hole.as_str(), "http/protobuf")]
    {
        let mut env = exporting(endpoint, protocol);
        env.extend([("OTEL_EXPORTER_OTLP_TIMEOUT", "300"), ("OTEL_BSP_MAX_QUEUE_SIZE", "8")]);
        let webhook = Webhook::start(&env);
        let mut slowest = Duration::ZERO;
        // Four bursts of ten at once: one span per admission, ten at a time into a queue of 8, however fast the
        // exporter gives up on its batch (a test machine under load must not let the queue keep up).
        for burst in 0..4 {
            let uids: Vec<String> = (0..10).map(|i| format!("{name}-{burst}-{i}")).collect();
            let answers = futures::future::join_all(uids.iter().map(|uid| webhook.admit(uid, Some(TRACEPARENT)))).await;
            for (status, took) in answers {
                assert_eq!(status, 200, "{name}");
                slowest = slowest.max(took);
            }
        }
        assert!(slowest < Duration::from_millis(500), "{name}: slowest admission {slowest:?}");
        // More spans at once than the queue holds: some are dropped at once; what was queued fails to export.
        let started = Instant::now();
        let dropped = |reason: &str| {
            webhook.serve.metric(&format!("otel_injector_spans_dropped_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
        };
        while dropped("export_failed") == 0.0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{name}: slowest admission {slowest:?}; spans dropped: queue full {}, export failed {}",
            dropped("queue_full"),
            dropped("export_failed")
        );
        assert!(dropped("queue_full") > 0.0, "{name}");
        assert!(dropped("export_failed") > 0.0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_collector_is_away_no_span_is_recorded_the_logs_keep_ids_and_spans_resume_when_it_is_back() {
    let endpoint = refusing();
    let webhook = Webhook::start(&exporting(&endpoint, "grpc"));
    let dropped = || webhook.serve.metric("otel_injector_spans_dropped_total{reason=\"export_failed\"}").unwrap_or(0.0);
    // The first batch fails to export: the exporter backs off (1 s, then 2 s, ...).
    assert_eq!(webhook.admit("first", None).await.0, 200);
    let started = Instant::now();
    while dropped() == 0.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the failed export is counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = dropped();
    assert_eq!(webhook.admit("away", Some(TRACEPARENT)).await.0, 200);
    assert_eq!(dropped() - before, 1.0, "the admission's span is not recorded, and counted as dropped at once");
    let away = admitted_line(&webhook.serve, "away");
    assert_eq!(away["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the logs still carry the caller's trace");
    assert_eq!(away["span_id"].as_str().map(str::len), Some(16));

    // The collector comes back on the same address: once the backoff ends, admissions are traced again.
    let receiver = Receiver::start_at(Transport::Grpc, endpoint.trim_start_matches("http://"));
    let started = Instant::now();
    let mut i = 0;
    while receiver.spans().iter().all(|s| s.kind != 2) {
        assert!(started.elapsed() < Duration::from_secs(15), "spans resume after the backoff");
        assert_eq!(webhook.admit(&format!("back-{i}"), None).await.0, 200);
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let spans = receiver.wait_for("", 1, Duration::from_secs(5));
    assert!(spans.iter().all(|s| s.kind == 2 && s.parent_span_id.is_empty()), "admission spans only: {spans:#?}");
    let exported = receiver.spans();
    assert!(
        server_spans(&exported).iter().all(|s| s.attr("admission.uid").as_deref() != Some("away")),
        "the admission made while the collector was away was never recorded, so it never arrives: {exported:#?}"
    );
}

/// The stderr of `serve --dev-certs` with text logs after 1.5 s, with `env`.
fn text_logs(env: &[(&str, &str)]) -> String {
    let home = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(common::serve::BIN)
        .args(["serve", "--dev-certs", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("OTEL_INJECTOR_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn text_logs_carry_no_colour_codes_on_a_pipe_and_rust_log_sets_the_level() {
    let text = text_logs(&[("RUST_LOG", "")]);
    assert!(text.contains(" WARN ") && text.contains(" INFO "), "plain log lines: {text}");
    assert!(!text.contains('\u{1b}'), "escape codes in {text:?}");
    let quiet = text_logs(&[("RUST_LOG", "warn")]);
    assert!(quiet.contains(" WARN ") && !quiet.contains(" INFO "), "{quiet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_openmetrics_and_the_counters_move() {
    let webhook = Webhook::start(&[]);
    let before = webhook.serve.get("/metrics").1;
    for i in 0..3 {
        assert_eq!(webhook.admit(&format!("m{i}"), None).await.0, 200);
    }
    assert_eq!(webhook.post(b"[]".to_vec(), None).await.0, 400);
    let after = webhook.serve.get("/metrics").1;
    let parse = |text: &str| -> Value {
        let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"#;
        let mut child = Command::new(common::python())
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python runs");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("parsed");
        assert!(out.status.success(), "not OpenMetrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let (before, after) = (parse(&before), parse(&after));
    let sample = |m: &Value, key: &str| m.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let admitted = r#"otel_injector_admission_requests_total{"decision": "instrumented", "kind": "Pod", "operation": "CREATE", "reason": "default"}"#;
    assert_eq!(sample(&after, admitted) - sample(&before, admitted), 3.0, "{after:#}");
    let malformed = r#"otel_injector_admission_errors_total{"reason": "malformed"}"#;
    assert_eq!(sample(&after, malformed) - sample(&before, malformed), 1.0);
    let count = "otel_injector_admission_duration_seconds_count{}";
    assert_eq!(sample(&after, count) - sample(&before, count), 3.0);
    // The buckets resolve below the API server's first (5 ms); which of them these admissions fell into is timing.
    let below_5ms = after
        .as_object()
        .expect("samples")
        .keys()
        .filter_map(|k| k.strip_prefix(r#"otel_injector_admission_duration_seconds_bucket{"le": ""#))
        .filter_map(|le| le.trim_end_matches(r#""}"#).parse::<f64>().ok())
        .filter(|le| *le < 0.005)
        .count();
    assert!(below_5ms >= 5, "{below_5ms} buckets below 5 ms");
    let all = r#"otel_injector_admission_duration_seconds_bucket{"le": "+Inf"}"#;
    assert_eq!(sample(&after, all) - sample(&before, all), 3.0);
    let patches = "otel_injector_admission_patch_bytes_count{}";
    assert_eq!(sample(&after, patches) - sample(&before, patches), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_the_logs_still_carry_trace_ids_and_disabled_means_none() {
    let admitted = |webhook: &Webhook, uid: &str| admitted_line(&webhook.serve, uid);
    let webhook = Webhook::start(&[]);
    webhook.admit("with-caller", Some(TRACEPARENT)).await;
    webhook.admit("alone", None).await;
    let with_caller = admitted(&webhook, "with-caller");
    assert_eq!(with_caller["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the caller's trace");
    let span_id = with_caller["span_id"].as_str().expect("span_id");
    assert!(span_id.len() == 16 && span_id != "00f067aa0ba902b7", "a span of its own: {span_id}");
    let alone = admitted(&webhook, "alone");
    let trace_id = alone["trace_id"].as_str().expect("trace_id");
    assert!(trace_id.len() == 32 && trace_id != "4bf92f3577b34da6a3ce929d0e0e4736", "a new trace: {trace_id}");

    let disabled =
        Webhook::start(&[("OTEL_SDK_DISABLED", "true"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")]);
    disabled.admit("off", Some(TRACEPARENT)).await;
    let off = admitted(&disabled, "off");
    assert!(!off.contains_key("trace_id") && !off.contains_key("span_id"), "{off:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_names_are_the_webhooks_own_whatever_kind_a_caller_sends() {
    let receiver = Receiver::start(Transport::Grpc);
    let webhook = Webhook::start(&exporting(&receiver.endpoint, "grpc"));
    for i in 0..20 {
        let object = pod("").container(container("app")).build();
        let mut body = review(&object, "CREATE", "shop");
        body["request"]["uid"] = format!("made-up-{i}").into();
        body["request"]["kind"]["kind"] = format!("MadeUp{i}").into();
        assert_eq!(webhook.post(serde_json::to_vec(&body).expect("json"), None).await.0, 200);
    }
    let spans = receiver.wait_for("", 20, Duration::from_secs(10));
    let names: BTreeSet<&str> = server_spans(&spans).iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["CREATE other"]), "20 made-up kinds, one span name");
}
