//! What the application sees (issue 20), judged by real SDKs: pods admitted through the current control plane, each
//! container's environment resolved as the kubelet would (`engine::kubelet_env`), then an application using only the
//! SDK's environment-based setup exports a span, a metric and a log to receivers that record where each export
//! arrived, over which transport, with which headers and resource. Python 1.45 (`opentelemetry-instrument`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use otel_injector::engine::kubelet_env;
use otel_injector::testing::sdk_sink::{Export, SdkSink, Signal, Transport};
use serde_json::{Value, json};

use super::harness::{Cluster, Webhook, eventually, pod};

/// The gateway (gRPC and HTTP) and a vendor's endpoint, on loopback addresses of their own: the sidecar test's
/// collector holds 127.0.0.1:4317 and :4318.
const GATEWAY_GRPC: &str = "127.0.0.2:4317";
const GATEWAY_HTTP: &str = "127.0.0.2:4318";
const VENDOR_HTTP: &str = "127.0.0.3:4318";

const CONFIG: &str = "default: inject
endpoint: http://127.0.0.2:4317
headers: {X-Scope-OrgID: prod}
resourceAttributes: {k8s.cluster.name: sdk-test}
";

fn sdk_dir(sdk: &str) -> PathBuf {
    let out = Command::new("scripts/sdks.sh").arg(sdk).output().expect("scripts/sdks.sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The pod as stored, once the scheduler has placed it (its node name is the kubelet's to give).
fn scheduled(cluster: &Cluster, ns: &str, object: &Value) -> Value {
    let name = object["metadata"]["name"].as_str().expect("named").to_owned();
    cluster.create(ns, object);
    eventually(Duration::from_secs(30), || {
        let stored = cluster.get(&["pod", &name, "-n", ns]);
        stored["spec"]["nodeName"].is_string().then_some(stored)
    })
    .expect("scheduled")
}

/// Runs the Python application with exactly the environment the kubelet would give container `app`.
fn run_python(sdk: &Path, pod: &Value) -> BTreeMap<String, String> {
    let env = kubelet_env::resolve(pod, "app", &|_| None).expect("resolves");
    let vars: BTreeMap<String, String> = env.texts().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let out = Command::new(sdk.join("bin/opentelemetry-instrument"))
        .arg(sdk.join("bin/python"))
        .arg("tools/sdks/python/app.py")
        .env_clear()
        .env("PATH", sdk.join("bin"))
        .envs(&vars)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the application exits cleanly: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    vars
}

/// Where each signal arrived: (signal, address, transport), sorted.
fn arrivals(exports: &[Export]) -> Vec<(Signal, String, Transport)> {
    let mut seen: Vec<(Signal, String, Transport)> =
        exports.iter().map(|e| (e.signal, e.at.clone(), e.transport)).collect();
    seen.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    seen.dedup();
    seen
}

fn all_three(exports: &[Export]) -> bool {
    [Signal::Traces, Signal::Metrics, Signal::Logs].iter().all(|s| exports.iter().any(|e| e.signal == *s))
}

#[test]
fn python_sends_what_the_webhook_meant_where_it_meant_it() {
    let sdk = sdk_dir("python");
    let (sink, _) = SdkSink::start(&[
        (GATEWAY_GRPC, Transport::Grpc),
        (GATEWAY_HTTP, Transport::Http),
        (VENDOR_HTTP, Transport::Http),
    ]);
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, CONFIG);
    let ns = hook.namespace(&[]);
    let run = |object: &Value| {
        sink.clear();
        let stored = scheduled(cluster, &ns, object);
        let vars = run_python(&sdk, &stored);
        let exports = sink.wait_until(Duration::from_secs(20), all_three);
        // Anything late would arrive now.
        std::thread::sleep(Duration::from_millis(300));
        (stored, vars, sink.exports().into_iter().chain(exports).collect::<Vec<_>>())
    };
    let grpc = |s: Signal| (s, GATEWAY_GRPC.to_owned(), Transport::Grpc);

    // The common path: every signal to the gateway over gRPC, with the tenant header and the pod's attributes.
    let (stored, vars, exports) = run(&pod("plain", &[], &["app"]));
    assert_eq!(arrivals(&exports), [grpc(Signal::Traces), grpc(Signal::Metrics), grpc(Signal::Logs)], "{vars:?}");
    for e in &exports {
        assert_eq!(e.headers.get("x-scope-orgid").map(String::as_str), Some("prod"), "{e:?}");
        assert_eq!(e.resource.get("service.name").map(String::as_str), Some("plain"), "{e:?}");
        assert_eq!(e.resource.get("k8s.namespace.name"), Some(&ns), "{e:?}");
        assert_eq!(e.resource.get("k8s.pod.name").map(String::as_str), Some("plain"));
        assert_eq!(e.resource.get("k8s.pod.uid").map(String::as_str), stored["metadata"]["uid"].as_str());
        assert_eq!(e.resource.get("k8s.node.name").map(String::as_str), stored["spec"]["nodeName"].as_str());
        assert_eq!(e.resource.get("k8s.container.name").map(String::as_str), Some("app"));
        assert_eq!(e.resource.get("k8s.cluster.name").map(String::as_str), Some("sdk-test"));
    }

    // Finding 1: traces to the user's own endpoint on HTTP; the gateway's header and protocol stay off them.
    let mut vendor = pod("vendor", &[], &["app"]);
    vendor["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": format!("http://{VENDOR_HTTP}/v1/traces")}]);
    let (_, vars, exports) = run(&vendor);
    assert_eq!(
        arrivals(&exports),
        [(Signal::Traces, VENDOR_HTTP.to_owned(), Transport::Http), grpc(Signal::Metrics), grpc(Signal::Logs)],
        "{vars:?}"
    );
    for e in &exports {
        let header = e.headers.get("x-scope-orgid").map(String::as_str);
        assert_eq!(header, (e.signal != Signal::Traces).then_some("prod"), "the gateway's header only to it: {e:?}");
    }

    // Finding 3: an endpoint on 4318 without a protocol annotation gets HTTP, and everything arrives.
    let http = pod("http", &[("otel-injector.io/endpoint", "http://127.0.0.2:4318")], &["app"]);
    let (_, vars, exports) = run(&http);
    let on_http = |s: Signal| (s, GATEWAY_HTTP.to_owned(), Transport::Http);
    assert_eq!(
        arrivals(&exports),
        [on_http(Signal::Traces), on_http(Signal::Metrics), on_http(Signal::Logs)],
        "{vars:?}"
    );

    // Finding 4: the user's own service.name in OTEL_RESOURCE_ATTRIBUTES is theirs.
    let mut named = pod("named", &[], &["app"]);
    named["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.name=checkout,team=shop"}]);
    let (_, vars, exports) = run(&named);
    assert!(all_three(&exports), "{vars:?}: {exports:?}");
    for e in &exports {
        assert_eq!(e.resource.get("service.name").map(String::as_str), Some("checkout"), "{e:?}");
        assert_eq!(e.resource.get("team").map(String::as_str), Some("shop"));
        assert_eq!(e.resource.get("k8s.pod.name").map(String::as_str), Some("named"), "ours merged beside");
    }
}
