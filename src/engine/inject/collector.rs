//! The sidecar collector's configuration, generated per pod (SPEC §6): OTLP receivers on localhost,
//! `memory_limiter`, `resource` (the pod's Kubernetes attributes), optional `probabilistic_sampler`, `batch`, and an
//! OTLP exporter to the gateway with the tenant header; `health_check` for the probes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::env::Helper;
use crate::engine::config::SidecarConfig;
use crate::engine::syntax::Signal;
use crate::engine::workload::Owners;

pub mod text;

/// The OTLP gRPC port the sidecar listens on (localhost).
pub(crate) const GRPC_PORT: u16 = 4317;
/// The OTLP HTTP port the sidecar listens on (localhost).
pub(crate) const HTTP_PORT: u16 = 4318;
/// The `health_check` extension's port, probed by the kubelet.
pub(crate) const HEALTH_PORT: u16 = 13133;
/// The env var carrying the pod IP, which `health_check` binds to so the kubelet can reach it.
pub(crate) const POD_IP_VAR: &str = "OTEL_COLLECTOR_POD_IP";
/// The pod's own attributes, read by the collector from the sidecar's environment.
const POD_ATTRIBUTES: [(&str, Helper); 3] =
    [("k8s.pod.name", Helper::PodName), ("k8s.pod.uid", Helper::PodUid), ("k8s.node.name", Helper::NodeName)];
/// The exporter's component name (`otlp` is its deprecated alias since collector v0.144).
const EXPORTER: &str = "otlp_grpc";

/// What the configuration depends on.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The workloads owning the pod.
    pub owners: &'a Owners,
    /// Signals with a pipeline.
    pub signals: &'a [Signal],
    /// Head sampling ratio; a `probabilistic_sampler` is added below 1.
    pub sampling_ratio: f64,
    /// Headers of the exporter (the tenant header).
    pub headers: &'a BTreeMap<String, String>,
    /// The sidecar section of the config.
    pub sidecar: &'a SidecarConfig,
}

/// Escapes a literal for the collector's `${…}` expansion.
fn literal(s: &str) -> Value {
    Value::String(s.replace('$', "$$"))
}

fn env_ref(var: &str) -> Value {
    Value::String(format!("${{env:{var}}}"))
}

/// The processors every configuration has, before the per-pod ones.
fn fixed_processors() -> Map<String, Value> {
    let mut processors = Map::new();
    processors.insert(
        "memory_limiter".into(),
        json!({"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 25}),
    );
    processors.insert("batch".into(), json!({"send_batch_size": 1024, "timeout": "1s"}));
    processors
}

/// The exporter to the gateway, with the tenant header and TLS.
fn exporters(headers: &BTreeMap<String, String>, sidecar: &SidecarConfig) -> Value {
    let tls = &sidecar.tls;
    let tls = if tls.insecure {
        json!({"insecure": true})
    } else {
        let mut t = json!({"insecure": false, "insecure_skip_verify": tls.insecure_skip_verify});
        if let Some(ca) = &tls.ca_file {
            t["ca_file"] = literal(ca);
        }
        t
    };
    let mut exporter = json!({"endpoint": literal(&sidecar.exporter_endpoint), "tls": tls});
    if !headers.is_empty() {
        let headers: Map<String, Value> = headers.iter().map(|(k, v)| (k.clone(), literal(v))).collect();
        exporter["headers"] = Value::Object(headers);
    }
    json!({EXPORTER: exporter})
}

/// `health_check`, for the kubelet's probes.
fn extensions() -> Value {
    // Bracketed, so an IPv6 pod IP makes a valid address (Go reads `[10.0.0.5]:13133` as well).
    json!({"health_check": {"endpoint": format!("[${{env:{POD_IP_VAR}}}]:{HEALTH_PORT}")}})
}

/// The head sampler's percentage of traces kept, to six decimals.
fn sampling_percentage(ratio: f64) -> f64 {
    (ratio * 100.0 * 1e6).round() / 1e6
}

/// Whether the configuration has a head sampler: below a ratio of 1, and only for traces (without a traces pipeline
/// the sampler would be defined but unused).
fn samples(inputs: &Inputs<'_>) -> bool {
    inputs.sampling_ratio < 1.0 && inputs.signals.contains(&Signal::Traces)
}

/// The processors of one signal's pipeline, in order.
fn chain(signal: Signal, sampling: bool) -> Vec<&'static str> {
    let mut chain = vec!["memory_limiter", "resource"];
    if sampling && signal == Signal::Traces {
        chain.push("probabilistic_sampler");
    }
    chain.push("batch");
    chain
}

/// The collector configuration as a document: what [`render`] writes, and what tests read back.
pub fn config(inputs: &Inputs<'_>) -> Value {
    let mut attributes = vec![("k8s.namespace.name", literal(inputs.namespace))];
    attributes.extend(POD_ATTRIBUTES.map(|(key, helper)| (key, env_ref(helper.var()))));
    attributes.extend(inputs.owners.attributes().map(|(k, v)| (k, literal(v))));
    // `insert`: attributes the application already sends keep their values.
    let actions: Vec<Value> =
        attributes.into_iter().map(|(key, value)| json!({"key": key, "value": value, "action": "insert"})).collect();

    let mut processors = fixed_processors();
    processors.insert("resource".into(), json!({"attributes": actions}));
    let sampling = samples(inputs);
    if sampling {
        processors.insert(
            "probabilistic_sampler".into(),
            json!({"sampling_percentage": sampling_percentage(inputs.sampling_ratio)}),
        );
    }

    let mut pipelines = Map::new();
    for signal in Signal::ALL.into_iter().filter(|s| inputs.signals.contains(s)) {
        pipelines.insert(
            signal.as_str().into(),
            json!({"receivers": ["otlp"], "processors": chain(signal, sampling), "exporters": [EXPORTER]}),
        );
    }

    json!({
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": format!("localhost:{GRPC_PORT}")},
            "http": {"endpoint": format!("localhost:{HTTP_PORT}")},
        }}},
        "processors": processors,
        "exporters": exporters(inputs.headers, inputs.sidecar),
        "extensions": extensions(),
        "service": {
            "extensions": ["health_check"],
            // No internal metrics endpoint: it would take a port (8888) inside the application's pod.
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": pipelines,
        },
    })
}

/// The configuration as the YAML the collector reads from `--config=env:OTEL_COLLECTOR_CONFIG`, by the YAML
/// emitter: the reference [`text::Pieces`] are held to, and what they fall back to.
pub fn render(inputs: &Inputs<'_>) -> String {
    serde_yaml_ng::to_string(&config(inputs)).unwrap_or_default()
}

/// Problems that would stop a collector from starting: a pipeline naming an undefined component, or a defined
/// component no pipeline uses (the collector rejects both). Empty when the document is consistent.
pub fn inconsistencies(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let names = |section: &str| -> Vec<String> {
        config.get(section).and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    let pipelines = config.pointer("/service/pipelines").and_then(Value::as_object);
    if pipelines.is_none_or(|p| p.is_empty()) {
        problems.push("service.pipelines is empty".to_owned());
    }
    for section in ["receivers", "processors", "exporters"] {
        let defined = names(section);
        let mut used = Vec::new();
        for (name, pipeline) in pipelines.into_iter().flatten() {
            for component in pipeline.get(section).and_then(Value::as_array).into_iter().flatten() {
                let component = component.as_str().unwrap_or_default().to_owned();
                if !defined.contains(&component) {
                    problems.push(format!("pipeline {name} uses undefined {section} {component}"));
                }
                used.push(component);
            }
        }
        problems.extend(defined.iter().filter(|d| !used.contains(d)).map(|d| format!("{section} {d} is never used")));
    }
    let extensions = names("extensions");
    let enabled: Vec<String> = config
        .pointer("/service/extensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    problems.extend(enabled.iter().filter(|e| !extensions.contains(e)).map(|e| format!("extension {e} is undefined")));
    problems
        .extend(extensions.iter().filter(|e| !enabled.contains(e)).map(|e| format!("extension {e} is never enabled")));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::ExporterTls;
    use rstest::rstest;

    fn inputs<'a>(
        signals: &'a [Signal],
        ratio: f64,
        headers: &'a BTreeMap<String, String>,
        sidecar: &'a SidecarConfig,
        owners: &'a Owners,
    ) -> Inputs<'a> {
        Inputs { namespace: "shop", owners, signals, sampling_ratio: ratio, headers, sidecar }
    }

    fn parsed(inputs: &Inputs<'_>) -> Value {
        serde_yaml_ng::from_str(&render(inputs)).expect("the rendered configuration is YAML")
    }

    #[rstest]
    #[case(&[Signal::Traces, Signal::Metrics, Signal::Logs], 1.0)]
    #[case(&[Signal::Traces, Signal::Metrics, Signal::Logs], 0.25)]
    #[case(&[Signal::Traces], 0.5)]
    #[case(&[Signal::Metrics], 0.5)]
    #[case(&[Signal::Logs, Signal::Metrics], 1.0)]
    fn every_variant_is_internally_consistent(#[case] signals: &[Signal], #[case] ratio: f64) {
        let (headers, sidecar, owners) = (BTreeMap::new(), SidecarConfig::default(), Owners::default());
        let config = parsed(&inputs(signals, ratio, &headers, &sidecar, &owners));
        assert_eq!(inconsistencies(&config), Vec::<String>::new(), "{config}");
        let pipelines = config["service"]["pipelines"].as_object().expect("pipelines");
        let names: Vec<&str> = pipelines.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = signals.iter().map(|s| s.as_str()).collect();
        want.sort();
        assert_eq!(names, want, "one pipeline per signal");
    }

    #[test]
    fn receivers_bind_to_localhost_and_health_check_to_the_pod_ip() {
        let (headers, sidecar, owners) = (BTreeMap::new(), SidecarConfig::default(), Owners::default());
        let config = parsed(&inputs(&Signal::ALL, 1.0, &headers, &sidecar, &owners));
        assert_eq!(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], "localhost:4317");
        assert_eq!(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"], "localhost:4318");
        assert_eq!(config["extensions"]["health_check"]["endpoint"], "[${env:OTEL_COLLECTOR_POD_IP}]:13133");
        assert_eq!(config["service"]["telemetry"]["metrics"]["level"], "none");
    }

    #[test]
    fn pipeline_order_and_sampler_only_on_traces_below_one() {
        let (headers, sidecar, owners) = (BTreeMap::new(), SidecarConfig::default(), Owners::default());
        let config = parsed(&inputs(&Signal::ALL, 0.25, &headers, &sidecar, &owners));
        let chain = |s: &str| config["service"]["pipelines"][s]["processors"].clone();
        assert_eq!(chain("traces"), json!(["memory_limiter", "resource", "probabilistic_sampler", "batch"]));
        assert_eq!(chain("metrics"), json!(["memory_limiter", "resource", "batch"]));
        assert_eq!(config["processors"]["probabilistic_sampler"]["sampling_percentage"], 25.0);
        let full = parsed(&inputs(&Signal::ALL, 1.0, &headers, &sidecar, &owners));
        assert!(full["processors"].get("probabilistic_sampler").is_none());
        assert_eq!(config["processors"]["memory_limiter"]["limit_percentage"], 80);
    }

    #[test]
    fn exporter_carries_endpoint_tenant_header_and_tls() {
        let headers = BTreeMap::from([("X-Scope-OrgID".to_owned(), "prod".to_owned())]);
        let mut sidecar =
            SidecarConfig { exporter_endpoint: "gateway.monitoring:4317".into(), ..SidecarConfig::default() };
        let owners = Owners::default();
        let config = parsed(&inputs(&Signal::ALL, 1.0, &headers, &sidecar, &owners));
        let exporter = &config["exporters"]["otlp_grpc"];
        assert_eq!(exporter["endpoint"], "gateway.monitoring:4317");
        assert_eq!(exporter["headers"]["X-Scope-OrgID"], "prod");
        assert_eq!(exporter["tls"], json!({"insecure": true}));
        sidecar.tls = ExporterTls { insecure: false, insecure_skip_verify: false, ca_file: Some("/ca/ca.crt".into()) };
        let config = parsed(&inputs(&Signal::ALL, 1.0, &headers, &sidecar, &owners));
        assert_eq!(
            config["exporters"]["otlp_grpc"]["tls"],
            json!({"insecure": false, "insecure_skip_verify": false, "ca_file": "/ca/ca.crt"})
        );
    }

    #[test]
    fn resource_processor_adds_the_pods_kubernetes_attributes() {
        let (headers, sidecar) = (BTreeMap::new(), SidecarConfig::default());
        let owners =
            Owners { deployment: Some("web".into()), replicaset: Some("web-5d8f".into()), ..Owners::default() };
        let config = parsed(&inputs(&Signal::ALL, 1.0, &headers, &sidecar, &owners));
        let actions = config["processors"]["resource"]["attributes"].as_array().expect("list");
        let get =
            |key: &str| actions.iter().find(|a| a["key"] == key).map(|a| (a["value"].clone(), a["action"].clone()));
        assert_eq!(get("k8s.namespace.name"), Some((json!("shop"), json!("insert"))));
        assert_eq!(get("k8s.pod.name").map(|v| v.0), Some(json!("${env:OTEL_RESOURCE_ATTRIBUTES_POD_NAME}")));
        assert_eq!(get("k8s.pod.uid").map(|v| v.0), Some(json!("${env:OTEL_RESOURCE_ATTRIBUTES_POD_UID}")));
        assert_eq!(get("k8s.node.name").map(|v| v.0), Some(json!("${env:OTEL_RESOURCE_ATTRIBUTES_NODE_NAME}")));
        assert_eq!(get("k8s.deployment.name").map(|v| v.0), Some(json!("web")));
        assert_eq!(get("k8s.replicaset.name").map(|v| v.0), Some(json!("web-5d8f")));
    }

    #[test]
    fn literals_cannot_trigger_collector_expansion() {
        let headers = BTreeMap::from([("Authorization".to_owned(), "Bearer ${env:SECRET}".to_owned())]);
        let (sidecar, owners) = (SidecarConfig::default(), Owners::default());
        let config = parsed(&inputs(&Signal::ALL, 1.0, &headers, &sidecar, &owners));
        assert_eq!(config["exporters"]["otlp_grpc"]["headers"]["Authorization"], "Bearer $${env:SECRET}");
    }

    #[test]
    fn the_checker_finds_broken_configurations() {
        let broken = json!({
            "receivers": {"otlp": {}, "zipkin": {}},
            "processors": {"batch": {}},
            "exporters": {"otlp_grpc": {}},
            "extensions": {"health_check": {}, "pprof": {}},
            "service": {"extensions": ["health_check", "zpages"], "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch", "filter"], "exporters": ["otlp_grpc"]}}}
        });
        let problems = inconsistencies(&broken);
        for expected in [
            "receivers zipkin is never used",
            "pipeline traces uses undefined processors filter",
            "extension zpages is undefined",
            "extension pprof is never enabled",
        ] {
            assert!(problems.iter().any(|p| p == expected), "{expected} missing from {problems:?}");
        }
        assert_eq!(inconsistencies(&json!({"service": {"pipelines": {}}})), ["service.pipelines is empty"]);
    }
}
