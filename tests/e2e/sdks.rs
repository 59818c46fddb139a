//! What the application sees (issue 20), judged by real SDKs: pods admitted through the current control plane, each
//! container's environment resolved as the kubelet would (`engine::kubelet_env`), then an application using only the
//! SDK's environment-based setup exports a span, a metric and a log to receivers that record where each export
//! arrived, over which transport, with which headers and resource. Python 1.45 (`opentelemetry-instrument`) and
//! Node.js (`@opentelemetry/sdk-node` 0.223, `new NodeSDK()`), Go (v1.47 with contrib's autoexport and autoprop
//! v0.72) and Java (1.68, the autoconfigure module).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use otel_injector::engine::kubelet_env;
use otel_injector::testing::sdk_sink::{Export, SdkSink, Signal, Transport};
use serde_json::{Value, json};

use super::harness::{Cluster, Webhook, eventually, pod};

impl Sdk {
    /// The gateway's and a vendor's loopback address for this SDK's test (each SDK's test runs beside the others',
    /// and the sidecar test's collector holds 127.0.0.1:4317 and :4318).
    fn addresses(self) -> (&'static str, &'static str) {
        match self {
            Self::Python => ("127.0.0.2", "127.0.0.3"),
            Self::Node => ("127.0.0.4", "127.0.0.5"),
            Self::Go => ("127.0.0.6", "127.0.0.7"),
            Self::Java => ("127.0.0.8", "127.0.0.9"),
            Self::Rust => ("127.0.0.11", "127.0.0.12"),
        }
    }
}

fn config(gateway: &str) -> String {
    format!(
        "default: inject\nworkloads: [Pod, Deployment]\nendpoint: http://{gateway}:4317\nheaders: {{X-Scope-OrgID: prod}}\n\
         resourceAttributes: {{k8s.cluster.name: sdk-test, team: shop floor}}\nserviceNamespace: shop\n"
    )
}

/// ConfigMaps' data by name, as the kubelet would read them for `envFrom`.
type ConfigMaps = BTreeMap<String, BTreeMap<String, String>>;

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

/// An SDK the tests run, and how its application is started.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    /// `opentelemetry-instrument python tools/sdks/python/app.py`.
    Python,
    /// `node tools/sdks/node/app.js` (`new NodeSDK()`).
    Node,
    /// tools/sdks/go, built (autoexport, autoprop, the resource from the environment).
    Go,
    /// `java App` with the autoconfigure module (`AutoConfiguredOpenTelemetrySdk.initialize()`).
    Java,
    /// tools/sdks/rust, built (0.33: the exporters read endpoint and headers; the application picks the transport).
    Rust,
}

impl Sdk {
    fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Node => "node",
            Self::Go => "go",
            Self::Java => "java",
            Self::Rust => "rust",
        }
    }

    /// Runs the application with exactly the environment the kubelet would give container `app` (and what the
    /// language needs to find its packages: PATH, NODE_PATH).
    fn run(self, dir: &Path, pod: &Value, config_maps: &ConfigMaps) -> (BTreeMap<String, String>, Vec<String>) {
        let (vars, out) = self.launch(dir, pod, config_maps);
        assert!(
            out.status.success(),
            "{self:?}: the application exits cleanly: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (vars, fields(&out.stdout))
    }

    /// Starts the application as [`Sdk::run`] does, whatever becomes of it.
    fn launch(self, dir: &Path, pod: &Value, config_maps: &ConfigMaps) -> (BTreeMap<String, String>, Output) {
        let env = kubelet_env::resolve(pod, "app", &|name| config_maps.get(name).cloned()).expect("resolves");
        let vars: BTreeMap<String, String> = env.texts().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let mut cmd = match self {
            Self::Python => {
                let mut cmd = Command::new(dir.join("bin/opentelemetry-instrument"));
                cmd.arg(dir.join("bin/python")).arg("tools/sdks/python/app.py").env_clear();
                cmd.env("PATH", dir.join("bin"));
                cmd
            }
            Self::Node => {
                let mut cmd = Command::new("node");
                cmd.arg("tools/sdks/node/app.js").env_clear();
                cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("NODE_PATH", dir.join("node_modules"));
                cmd
            }
            Self::Go | Self::Rust => {
                let mut cmd = Command::new(dir.join("app"));
                cmd.env_clear();
                cmd
            }
            Self::Java => {
                let mut cmd = Command::new("java");
                let classpath = format!("{}/lib/*:{}/classes", dir.display(), dir.display());
                cmd.args(["-cp", &classpath, "App"]).env_clear();
                cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
                cmd
            }
        };
        let out = cmd.envs(&vars).output().expect("the application runs");
        (vars, out)
    }
}

/// The propagation fields the application printed (`fields:a,b,c`).
fn fields(stdout: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("fields:")).unwrap_or_default();
    line.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect()
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

/// Every finding the SDKs judge, for one SDK.
fn the_sdk_sends_what_the_webhook_meant_where_it_meant_it(sdk: Sdk) {
    // One SDK's applications at a time, and never beside the hostile tenants' tests (see `HEAVY`).
    let _turn = super::harness::HEAVY.blocking_lock();
    let dir = sdk_dir(sdk.name());
    let (gateway, vendor) = sdk.addresses();
    let (gateway_grpc, gateway_http, vendor_http) =
        (format!("{gateway}:4317"), format!("{gateway}:4318"), format!("{vendor}:4318"));
    let (sink, _) = SdkSink::start(&[
        (&gateway_grpc, Transport::Grpc),
        (&gateway_http, Transport::Http),
        (&vendor_http, Transport::Http),
    ]);
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, &config(gateway));
    let ns = hook.namespace(&[]);
    let mut config_maps = ConfigMaps::new();
    let vendor_map: BTreeMap<String, String> =
        [("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("http://{vendor_http}"))].into();
    cluster.create(
        &ns,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vendor"}, "data": vendor_map}),
    );
    config_maps.insert("vendor".to_owned(), vendor_map);
    let run = |object: &Value| {
        sink.clear();
        let stored = scheduled(cluster, &ns, object);
        let (vars, fields) = sdk.run(&dir, &stored, &config_maps);
        // The application flushed before it exited; what is still on its way has a few seconds.
        let exports = sink.wait_until(Duration::from_secs(5), all_three);
        // Anything late would arrive now.
        std::thread::sleep(Duration::from_millis(300));
        let exports = sink.exports().into_iter().chain(exports).collect::<Vec<_>>();
        (stored, (vars, fields), exports)
    };
    let grpc = |s: Signal| (s, gateway_grpc.clone(), Transport::Grpc);

    // The common path: every signal to the gateway over gRPC, with the tenant header and the pod's attributes.
    let (stored, (vars, fields), exports) = run(&pod("plain", &[], &["app"]));
    // (Rust's SDK reads no OTEL_PROPAGATORS: what it propagates is the application's own choice.)
    for field in ["baggage", "traceparent", "tracestate"].iter().filter(|_| !matches!(sdk, Sdk::Rust)) {
        assert!(fields.iter().any(|f| f == field), "{sdk:?} propagates {field}: {fields:?}");
    }
    assert_eq!(
        arrivals(&exports),
        [grpc(Signal::Traces), grpc(Signal::Metrics), grpc(Signal::Logs)],
        "{sdk:?}: {vars:?}"
    );
    for e in &exports {
        assert_eq!(e.headers.get("x-scope-orgid").map(String::as_str), Some("prod"), "{e:?}");
        assert_eq!(e.resource.get("service.name").map(String::as_str), Some("plain"), "{e:?}");
        assert_eq!(e.resource.get("k8s.namespace.name"), Some(&ns), "{e:?}");
        assert_eq!(e.resource.get("k8s.pod.name").map(String::as_str), Some("plain"));
        assert_eq!(e.resource.get("k8s.pod.uid").map(String::as_str), stored["metadata"]["uid"].as_str());
        assert_eq!(e.resource.get("k8s.node.name").map(String::as_str), stored["spec"]["nodeName"].as_str());
        assert_eq!(e.resource.get("k8s.container.name").map(String::as_str), Some("app"));
        assert_eq!(e.resource.get("k8s.cluster.name").map(String::as_str), Some("sdk-test"));
        assert_eq!(e.resource.get("service.namespace").map(String::as_str), Some("shop"));
        // Written percent-encoded (`shop%20floor`), as the specification asks; Rust's SDK does not decode it.
        let team = if matches!(sdk, Sdk::Rust) { "shop%20floor" } else { "shop floor" };
        assert_eq!(e.resource.get("team").map(String::as_str), Some(team), "{sdk:?}");
        assert_eq!(e.resource.get("service.version").map(String::as_str), Some("1.0"), "the image tag");
    }

    // The sampler: a ratio of 0 keeps every trace out, and nothing else.
    let (_, (vars, _), exports) = run(&pod("unsampled", &[("otel-injector.io/sampling-ratio", "0")], &["app"]));
    assert_eq!(arrivals(&exports), [grpc(Signal::Metrics), grpc(Signal::Logs)], "{sdk:?}: {vars:?}");

    // Finding 1: traces to the user's own endpoint on HTTP; the gateway's header and protocol stay off them.
    let mut vendor = pod("vendor", &[], &["app"]);
    vendor["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": format!("http://{vendor_http}/v1/traces")}]);
    let (_, (vars, _), exports) = run(&vendor);
    assert_eq!(
        arrivals(&exports),
        [(Signal::Traces, vendor_http.clone(), Transport::Http), grpc(Signal::Metrics), grpc(Signal::Logs)],
        "{vars:?}"
    );
    for e in &exports {
        let header = e.headers.get("x-scope-orgid").map(String::as_str);
        assert_eq!(header, (e.signal != Signal::Traces).then_some("prod"), "the gateway's header only to it: {e:?}");
    }

    // Finding 3: an endpoint on 4318 without a protocol annotation gets HTTP, and everything arrives.
    let endpoint = format!("http://{gateway_http}");
    let http = pod("http", &[("otel-injector.io/endpoint", &endpoint)], &["app"]);
    let (_, (vars, _), exports) = run(&http);
    let on_http = |s: Signal| (s, gateway_http.clone(), Transport::Http);
    assert_eq!(
        arrivals(&exports),
        [on_http(Signal::Traces), on_http(Signal::Metrics), on_http(Signal::Logs)],
        "{vars:?}"
    );

    // Finding 2: an endpoint drawn from a ConfigMap through envFrom stays in force: every signal to it, over the
    // protocol its port says, without the gateway's header.
    let mut drawing = pod("drawing", &[], &["app"]);
    drawing["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "vendor"}}]);
    let (_, (vars, _), exports) = run(&drawing);
    let at_vendor = |s: Signal| (s, vendor_http.clone(), Transport::Http);
    assert_eq!(
        arrivals(&exports),
        [at_vendor(Signal::Traces), at_vendor(Signal::Metrics), at_vendor(Signal::Logs)],
        "{sdk:?}: {vars:?}"
    );
    assert!(exports.iter().all(|e| !e.headers.contains_key("x-scope-orgid")), "{exports:?}");

    // Finding 7: b3 from one annotation, and what each SDK makes of it (the webhook warns about it).
    let b3 = pod("b3", &[("otel-injector.io/propagators", "tracecontext,b3")], &["app"]);
    let stored = scheduled(cluster, &ns, &b3);
    let (vars, out) = sdk.launch(&dir, &stored, &config_maps);
    let (started, fields) = (out.status.success(), self::fields(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match sdk {
        // Python and Java's autoconfigure refuse to start without the package that has it
        // (opentelemetry-propagator-b3; opentelemetry-extension-trace-propagators).
        Sdk::Python | Sdk::Java => assert!(!started && stderr.contains("b3"), "{sdk:?}: {vars:?}: {stderr}"),
        // Node.js's NodeSDK and Go's autoprop have it built in.
        Sdk::Node | Sdk::Go => assert!(started && fields.iter().any(|f| f == "b3"), "{sdk:?}: {fields:?}: {stderr}"),
        // Rust's SDK reads no OTEL_PROPAGATORS: the application starts, propagating what it set up itself.
        Sdk::Rust => assert!(started, "{stderr}"),
    }

    // Finding 5: a pod its controller made from an instrumented Deployment template carries its ReplicaSet's name.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "shop/web:1.2"}]}}}});
    cluster.create(&ns, &deployment);
    let made = eventually(Duration::from_secs(60), || {
        let pods = cluster.get(&["pods", "-n", &ns, "-l", "app=web"]);
        pods["items"].as_array()?.iter().find(|p| p["spec"]["nodeName"].is_string()).cloned()
    })
    .expect("the Deployment's pod, scheduled");
    let replica_set = made["metadata"]["ownerReferences"][0]["name"].as_str().expect("its ReplicaSet").to_owned();
    sink.clear();
    let (vars, _) = sdk.run(&dir, &made, &config_maps);
    let exports = sink.wait_until(Duration::from_secs(5), all_three);
    assert!(all_three(&exports), "{sdk:?}: {vars:?}");
    for e in &exports {
        assert_eq!(e.resource.get("k8s.replicaset.name"), Some(&replica_set), "{sdk:?}: {e:?}");
        assert_eq!(e.resource.get("k8s.deployment.name").map(String::as_str), Some("web"));
    }

    // Finding 6: an attribute of ours too long once encoded is dropped alone; every other attribute arrives
    // (Node.js would discard the whole list for it).
    let motto = "é".repeat(100);
    let long = pod("long", &[("resource.opentelemetry.io/motto", &motto)], &["app"]);
    let (_, (vars, _), exports) = run(&long);
    assert!(all_three(&exports), "{sdk:?}: {vars:?}");
    for e in &exports {
        assert!(!e.resource.contains_key("motto"), "{e:?}");
        assert_eq!(e.resource.get("k8s.pod.name").map(String::as_str), Some("long"), "{sdk:?}: {e:?}");
    }

    // Finding 4: the user's own service.name in OTEL_RESOURCE_ATTRIBUTES is theirs.
    let mut named = pod("named", &[], &["app"]);
    named["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.name=checkout,team=shop"}]);
    let (_, (vars, _), exports) = run(&named);
    assert!(all_three(&exports), "{vars:?}: {exports:?}");
    for e in &exports {
        assert_eq!(e.resource.get("service.name").map(String::as_str), Some("checkout"), "{e:?}");
        assert_eq!(e.resource.get("team").map(String::as_str), Some("shop"));
        assert_eq!(e.resource.get("k8s.pod.name").map(String::as_str), Some("named"), "ours merged beside");
    }
}

#[test]
fn python_sends_what_the_webhook_meant_where_it_meant_it() {
    the_sdk_sends_what_the_webhook_meant_where_it_meant_it(Sdk::Python);
}

#[test]
fn node_sends_what_the_webhook_meant_where_it_meant_it() {
    the_sdk_sends_what_the_webhook_meant_where_it_meant_it(Sdk::Node);
}

#[test]
fn go_sends_what_the_webhook_meant_where_it_meant_it() {
    the_sdk_sends_what_the_webhook_meant_where_it_meant_it(Sdk::Go);
}

#[test]
fn java_sends_what_the_webhook_meant_where_it_meant_it() {
    the_sdk_sends_what_the_webhook_meant_where_it_meant_it(Sdk::Java);
}

/// The sidecar path: a Python application exports to the collector sidecar on localhost, as the webhook set it up,
/// and the real Collector (built from the sidecar's components) forwards all three signals to the gateway with the
/// tenant header and the pod's attributes.
#[test]
fn python_through_the_collector_sidecar_reaches_the_gateway() {
    let _turn = super::harness::HEAVY.blocking_lock();
    let _ports = super::harness::SIDECAR_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = sdk_dir("python");
    let binary = super::collector::collector("sidecar");
    let gateway_grpc = "127.0.0.10:4317";
    let (sink, _) = SdkSink::start(&[(gateway_grpc, Transport::Grpc)]);
    let cluster = Cluster::shared();
    let config = format!(
        "default: inject\nheaders: {{X-Scope-OrgID: prod}}\nsidecar: {{enabled: true, exporterEndpoint: \"{gateway_grpc}\"}}\n"
    );
    let hook = Webhook::start(cluster, &config);
    let ns = hook.namespace(&[]);
    let mut stored = scheduled(cluster, &ns, &pod("sidecar", &[], &["app"]));
    // As the kubelet would know it once the pod runs (the collector's health check listens on the pod's IP).
    stored["status"]["podIP"] = "127.0.0.1".into();
    let collector_env = kubelet_env::resolve(&stored, "otel-collector", &|_| None).expect("the sidecar is there");
    let sidecar = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| stored["spec"][l].as_array().into_iter().flatten())
        .find(|c| c["name"] == "otel-collector")
        .expect("the sidecar")
        .clone();
    let args: Vec<&str> = sidecar["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let mut running = Command::new(&binary)
        .args(&args)
        .env_clear()
        .envs(collector_env.texts())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the collector starts");
    let healthy =
        eventually(Duration::from_secs(30), || std::net::TcpStream::connect("127.0.0.1:4317").ok().map(|_| ()));
    if healthy.is_none() {
        let _ = running.kill();
        let out = running.wait_with_output().expect("output");
        panic!("the sidecar never listened: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (vars, _) = Sdk::Python.run(&dir, &stored, &ConfigMaps::new());
    let exports = sink.wait_until(Duration::from_secs(20), all_three);
    let _ = running.kill();
    let _ = running.wait();
    assert!(all_three(&exports), "{vars:?}: {exports:?}");
    for e in &exports {
        assert_eq!(e.transport, Transport::Grpc);
        assert_eq!(e.headers.get("x-scope-orgid").map(String::as_str), Some("prod"), "the sidecar adds it: {e:?}");
        assert_eq!(e.resource.get("service.name").map(String::as_str), Some("sidecar"), "{e:?}");
        assert_eq!(e.resource.get("k8s.namespace.name"), Some(&ns));
        assert_eq!(e.resource.get("k8s.pod.uid").map(String::as_str), stored["metadata"]["uid"].as_str());
    }
}

#[test]
fn rust_sends_what_the_webhook_meant_where_it_meant_it() {
    the_sdk_sends_what_the_webhook_meant_where_it_meant_it(Sdk::Rust);
}
