//! The configuration file of SPEC §7: every key with its default, unknown keys rejected, errors naming the field.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::engine::syntax::{self, Protocol, Signal};
use crate::engine::workload::WorkloadKind;

mod agents;
pub use agents::{Activation, AgentConfig, AgentsConfig, Delivery, InitContainerConfig, LANGUAGES, Language};

/// Namespaces never instrumented: `excludedNamespaces` adds to these, it never replaces them.
pub(crate) const ALWAYS_EXCLUDED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The collector image the sidecar runs unless the config names another.
pub const DEFAULT_COLLECTOR_IMAGE: &str = "otel/opentelemetry-collector-contrib:0.165.0";

/// The cluster-wide decision when no annotation or label decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultMode {
    /// Instrument everything not opted out.
    Inject,
    /// Instrument only what opts in.
    Skip,
}

/// How the collector sidecar is added to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SidecarMode {
    /// Native where the API server supports it (≥ 1.29, or its version is unknown), classic elsewhere.
    Auto,
    /// An `initContainers` entry with `restartPolicy: Always` (Kubernetes ≥ 1.29).
    Native,
    /// A regular entry in `containers`.
    Classic,
}

/// Compute resources of the sidecar, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// `resources.requests`.
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// `resources.limits`.
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

/// The least memory the collector sidecar can run in (its Go runtime soft limit is set to 80% of this).
const MIN_SIDECAR_MEMORY: &str = "16Mi";

impl Resources {
    /// Checks resources as the API server would and a bit more: known resource names, valid non-negative
    /// quantities, requests not above limits, and at least `min_memory` as the memory limit. `at` names the field.
    fn validate(&self, at: &str, min_memory: &str) -> Result<(), ConfigError> {
        let known =
            |name: &str| matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
        let mut values = BTreeMap::new();
        for (section, list) in [("requests", &self.requests), ("limits", &self.limits)] {
            for (name, q) in list {
                let field = format!("{at}.{section}.{name}");
                if !known(name) {
                    return Err(invalid(field, "unknown resource (cpu, memory, ephemeral-storage, hugepages-<size>)"));
                }
                let value = syntax::quantity(q).ok_or_else(|| {
                    invalid(
                        &field,
                        syntax::check_quantity(q).err().unwrap_or_else(|| format!("{q:?} is not a quantity")),
                    )
                })?;
                if value < 0.0 {
                    return Err(invalid(field, format!("{q:?} must not be negative")));
                }
                values.insert((section, name.as_str()), value);
            }
        }
        for (name, limit) in &self.limits {
            if let (Some(request), Some(max)) =
                (values.get(&("requests", name.as_str())), values.get(&("limits", name.as_str())))
                && request > max
            {
                let request = &self.requests[name];
                return Err(invalid(format!("{at}.requests.{name}"), format!("{request} is above the limit {limit}")));
            }
        }
        let min = syntax::quantity(min_memory).unwrap_or_default();
        if values.get(&("limits", "memory")).is_some_and(|m| *m < min) {
            return Err(invalid(format!("{at}.limits.memory"), format!("must be at least {min_memory}")));
        }
        Ok(())
    }
}

impl Default for Resources {
    fn default() -> Self {
        let list = |cpu: &str, memory: &str| {
            BTreeMap::from([("cpu".to_owned(), cpu.to_owned()), ("memory".to_owned(), memory.to_owned())])
        };
        Self { requests: list("50m", "64Mi"), limits: list("500m", "256Mi") }
    }
}

/// TLS of the sidecar's exporter to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExporterTls {
    /// Plain gRPC, no TLS (the usual in-cluster gateway).
    pub insecure: bool,
    /// TLS without verifying the gateway's certificate.
    pub insecure_skip_verify: bool,
    /// CA bundle path inside the collector container (mounted by you).
    pub ca_file: Option<String>,
}

impl Default for ExporterTls {
    fn default() -> Self {
        Self { insecure: true, insecure_skip_verify: false, ca_file: None }
    }
}

/// The `sidecar` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SidecarConfig {
    /// The default for the `otel-injector.io/sidecar` annotation.
    pub enabled: bool,
    /// Native (init container) or classic (regular container) sidecar.
    pub mode: SidecarMode,
    /// The collector image.
    pub image: String,
    /// Where the sidecar sends (`host:port` or URL of the cluster gateway).
    pub exporter_endpoint: String,
    /// Requests and limits of the sidecar container.
    pub resources: Resources,
    /// TLS towards `exporterEndpoint`.
    pub tls: ExporterTls,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: SidecarMode::Auto,
            image: DEFAULT_COLLECTOR_IMAGE.to_owned(),
            exporter_endpoint: "otel-collector.monitoring.svc.cluster.local:4317".to_owned(),
            resources: Resources::default(),
            tls: ExporterTls::default(),
        }
    }
}

/// The whole configuration; every field has a default so the webhook runs with no file at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// The cluster-wide decision when no annotation decides.
    pub default: DefaultMode,
    /// Namespaces never instrumented, whatever their annotations say.
    pub excluded_namespaces: Vec<String>,
    /// The kinds the webhook mutates.
    pub workloads: Vec<WorkloadKind>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Protocol,
    /// `OTEL_TRACES_SAMPLER_ARG`, 0.0–1.0.
    pub sampling_ratio: f64,
    /// `OTEL_PROPAGATORS`.
    pub propagators: Vec<String>,
    /// Signals exported; the others' exporters are set to `none`.
    pub signals: Vec<Signal>,
    /// `service.namespace`, when set.
    pub service_namespace: Option<String>,
    /// Static resource attributes, e.g. `k8s.cluster.name`.
    pub resource_attributes: BTreeMap<String, String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, e.g. `X-Scope-OrgID`.
    pub headers: BTreeMap<String, String>,
    /// Containers never instrumented (service-mesh proxies).
    pub skip_containers: Vec<String>,
    /// The collector sidecar.
    pub sidecar: SidecarConfig,
    /// Largest AdmissionReview body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Language agents (SPEC §10).
    pub agents: AgentsConfig,
    /// Text made once from this configuration (the sidecar's, see `inject::sidecar::template`).
    #[serde(skip)]
    pub derived: Derived,
}

/// A value computed once from a [`Config`] by the module that uses it, held beside the configuration so that it is
/// made again only when the configuration is (a reload). It is not part of the configuration: never serialised,
/// always equal, and a clone starts empty. Its maker checks that it was made from the configuration it is read with,
/// so a configuration changed in place after a read is not served stale text.
#[derive(Default)]
pub struct Derived(OnceLock<Arc<dyn Any + Send + Sync>>);

impl Derived {
    /// The value, made by `make` on the first call; `None` if it holds a value of another type.
    pub(crate) fn get_or_init<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<Arc<T>> {
        let any = self.0.get_or_init(|| Arc::new(make()));
        Arc::clone(any).downcast::<T>().ok()
    }
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "Derived(made)" } else { "Derived(empty)" })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default: DefaultMode::Skip,
            excluded_namespaces: ALWAYS_EXCLUDED.map(str::to_owned).to_vec(),
            workloads: vec![WorkloadKind::Pod],
            endpoint: "http://otel-collector.monitoring.svc.cluster.local:4317".to_owned(),
            protocol: Protocol::Grpc,
            sampling_ratio: 1.0,
            propagators: vec!["tracecontext".to_owned(), "baggage".to_owned()],
            signals: vec![Signal::Traces, Signal::Metrics, Signal::Logs],
            service_namespace: None,
            resource_attributes: BTreeMap::new(),
            headers: BTreeMap::new(),
            skip_containers: vec!["istio-proxy".to_owned(), "linkerd-proxy".to_owned()],
            sidecar: SidecarConfig::default(),
            max_request_bytes: 7 * 1024 * 1024,
            agents: AgentsConfig::default(),
            derived: Derived::default(),
        }
    }
}

/// A configuration that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the schema (unknown key, wrong type).
    #[error("config {field}: {message}")]
    Parse {
        /// Dotted path of the offending field (an unknown key names itself).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("config {field}: {message}")]
    Invalid {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Whether a config document names `protocol` at its top level.
fn names_protocol(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Named {
        protocol: Option<serde::de::IgnoredAny>,
    }
    serde_yaml_ng::from_str::<Named>(text).is_ok_and(|n| n.protocol.is_some())
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

impl Config {
    /// Parses and validates a YAML document; an empty document gives the defaults.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        syntax::check_nesting(text).map_err(|m| ConfigError::Parse { field: "(document)".to_owned(), message: m })?;
        let mut config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let field = e.path().to_string();
                // serde_yaml_ng may start with its own `sidecar: ` path and ends with ` at line L column C`
                // (kept: it helps find the spot).
                let message = e.inner().to_string();
                let message = field
                    .match_indices('.')
                    .map(|(i, _)| &field[..i])
                    .chain([field.as_str()])
                    .find_map(|prefix| message.strip_prefix(prefix)?.strip_prefix(": "))
                    .unwrap_or(&message)
                    .to_owned();
                ConfigError::Parse { field, message }
            })?
        };
        // The protocol follows the endpoint's port (4317 gRPC, 4318 HTTP) unless the file names one.
        if !names_protocol(text)
            && let Some(protocol) = syntax::transport_of(&config.endpoint)
        {
            config.protocol = protocol;
        }
        // The file's list adds to the built-in one.
        let listed = std::mem::replace(&mut config.excluded_namespaces, ALWAYS_EXCLUDED.map(str::to_owned).to_vec());
        listed.iter().for_each(|ns| config.exclude(ns));
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        syntax::parse_endpoint(&self.endpoint).map_err(|m| invalid("endpoint", m))?;
        if let Some(by_port) = syntax::transport_of(&self.endpoint).filter(|p| *p != self.protocol) {
            return Err(invalid(
                "protocol",
                format!(
                    "{} contradicts the endpoint's port, which is OTLP's {by_port} port (SDKs would send {} to it); \
                     name {by_port} or leave protocol out",
                    self.protocol, self.protocol
                ),
            ));
        }
        syntax::parse_ratio(&self.sampling_ratio.to_string()).map_err(|m| invalid("samplingRatio", m))?;
        for (i, p) in self.propagators.iter().enumerate() {
            syntax::check_propagator(p).map_err(|m| invalid(format!("propagators[{i}]"), m))?;
        }
        if self.propagators.is_empty() {
            return Err(invalid("propagators", "must name at least one propagator (or `none`)"));
        }
        for key in self.resource_attributes.keys() {
            syntax::check_attribute_key(key).map_err(|m| invalid(format!("resourceAttributes.{key}"), m))?;
        }
        for name in self.headers.keys() {
            syntax::check_header_name(name).map_err(|m| invalid(format!("headers.{name}"), m))?;
        }
        if let Some(ns) = &self.service_namespace
            && ns.trim().is_empty()
        {
            return Err(invalid("serviceNamespace", "must not be empty (omit it or use null)"));
        }
        if self.max_request_bytes < 64 * 1024 {
            return Err(invalid("maxRequestBytes", "must be at least 65536 (an UPDATE review carries two objects)"));
        }
        if self.sidecar.image.trim().is_empty() {
            return Err(invalid("sidecar.image", "must not be empty"));
        }
        if self.sidecar.exporter_endpoint.trim().is_empty() {
            return Err(invalid("sidecar.exporterEndpoint", "must not be empty"));
        }
        if self.sidecar.tls.insecure && (self.sidecar.tls.ca_file.is_some() || self.sidecar.tls.insecure_skip_verify) {
            return Err(invalid(
                "sidecar.tls",
                "insecure: true turns TLS off; set it to false to use caFile or insecureSkipVerify",
            ));
        }
        self.sidecar.resources.validate("sidecar.resources", MIN_SIDECAR_MEMORY)?;
        self.agents.validate()
    }

    /// Whether a namespace is never instrumented: a built-in one, one in `excludedNamespaces`, or the webhook's own.
    pub(crate) fn excludes(&self, namespace: &str) -> bool {
        ALWAYS_EXCLUDED.contains(&namespace) || self.excluded_namespaces.iter().any(|n| n == namespace)
    }

    /// Whether objects of this kind are mutated.
    pub(crate) fn handles(&self, kind: WorkloadKind) -> bool {
        self.workloads.contains(&kind)
    }

    /// Adds a namespace to the excluded ones (the webhook's own, which it must never instrument).
    pub fn exclude(&mut self, namespace: &str) {
        if !namespace.is_empty() && !self.excluded_namespaces.iter().any(|n| n == namespace) {
            self.excluded_namespaces.push(namespace.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn empty_file_gives_the_spec_defaults() {
        let config = Config::from_yaml("").expect("defaults are valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.default, DefaultMode::Skip);
        assert_eq!(config.excluded_namespaces, ["kube-system", "kube-public", "kube-node-lease"]);
        assert_eq!(config.workloads, [WorkloadKind::Pod]);
        assert_eq!(config.endpoint, "http://otel-collector.monitoring.svc.cluster.local:4317");
        assert_eq!(config.protocol, Protocol::Grpc);
        assert_eq!(config.sampling_ratio, 1.0);
        assert_eq!(config.propagators, ["tracecontext", "baggage"]);
        assert_eq!(config.signals, [Signal::Traces, Signal::Metrics, Signal::Logs]);
        assert_eq!(config.service_namespace, None);
        assert!(config.resource_attributes.is_empty() && config.headers.is_empty());
        assert_eq!(config.skip_containers, ["istio-proxy", "linkerd-proxy"]);
        assert!(!config.sidecar.enabled);
        assert_eq!(config.sidecar.mode, SidecarMode::Auto);
        assert_eq!(config.sidecar.image, DEFAULT_COLLECTOR_IMAGE);
        assert_eq!(config.sidecar.exporter_endpoint, "otel-collector.monitoring.svc.cluster.local:4317");
        assert_eq!(config.sidecar.resources.requests["cpu"], "50m");
        assert_eq!(config.sidecar.resources.limits["memory"], "256Mi");
        assert_eq!(config.sidecar.tls, ExporterTls { insecure: true, insecure_skip_verify: false, ca_file: None });
        assert_eq!(config.max_request_bytes, 7_340_032);
    }

    #[test]
    fn every_key_parses() {
        let yaml = r#"
default: inject
excludedNamespaces: [kube-system]
workloads: [Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob]
endpoint: https://gateway.example:4318
protocol: http/protobuf
samplingRatio: 0.25
propagators: [tracecontext, baggage, b3]
signals: [traces]
serviceNamespace: shop
resourceAttributes: {k8s.cluster.name: prod, deployment.environment.name: prod}
headers: {X-Scope-OrgID: prod}
skipContainers: [istio-proxy]
sidecar:
  enabled: true
  mode: classic
  image: otel/opentelemetry-collector-contrib:0.165.0
  exporterEndpoint: gateway.monitoring:4317
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: "1", memory: 1Gi}}
  tls: {insecure: false, caFile: /etc/ssl/gateway/ca.crt}
maxRequestBytes: 1048576
"#;
        let config = Config::from_yaml(yaml).expect("valid");
        assert_eq!(config.default, DefaultMode::Inject);
        assert_eq!(config.workloads.len(), 7);
        assert_eq!(config.protocol, Protocol::HttpProtobuf);
        assert_eq!(config.sampling_ratio, 0.25);
        assert_eq!(config.signals, [Signal::Traces]);
        assert_eq!(config.service_namespace.as_deref(), Some("shop"));
        assert_eq!(config.headers["X-Scope-OrgID"], "prod");
        assert_eq!(config.sidecar.mode, SidecarMode::Classic);
        assert_eq!(config.sidecar.resources.limits["cpu"], "1");
        assert_eq!(config.sidecar.tls.ca_file.as_deref(), Some("/etc/ssl/gateway/ca.crt"));
        assert_eq!(config.max_request_bytes, 1_048_576);
    }

    #[rstest]
    #[case::http_port("endpoint: http://gw:4318", Protocol::HttpProtobuf)]
    #[case::grpc_port("endpoint: https://gw:4317", Protocol::Grpc)]
    #[case::other_port_keeps_the_default("endpoint: http://gw:8080", Protocol::Grpc)]
    #[case::named_on_another_port("endpoint: http://gw:8080\nprotocol: http/protobuf", Protocol::HttpProtobuf)]
    #[case::named_and_agreeing("endpoint: http://gw:4318\nprotocol: http/protobuf", Protocol::HttpProtobuf)]
    fn the_protocol_follows_the_endpoints_port_unless_the_file_names_one(#[case] yaml: &str, #[case] want: Protocol) {
        assert_eq!(Config::from_yaml(yaml).expect("valid").protocol, want);
    }

    #[rstest]
    #[case("defualt: inject", "defualt", "unknown field `defualt`")]
    #[case("sidecar: {imag: x}", "sidecar.imag", "unknown field `imag`")]
    #[case("sidecar: {resources: {request: {}}}", "sidecar.resources.request", "unknown field `request`")]
    #[case("default: maybe", "default", "unknown variant `maybe`")]
    #[case("protocol: http", "protocol", "unknown variant `http`")]
    #[case("workloads: [Pod, Deploymnet]", "workloads[1]", "unknown variant `Deploymnet`")]
    #[case("signals: [traces, profiles]", "signals[1]", "unknown variant `profiles`")]
    #[case("samplingRatio: high", "samplingRatio", "invalid type")]
    #[case("sidecar: {mode: sidecar}", "sidecar.mode", "unknown variant `sidecar`")]
    #[case("agents: {delivery: volume}", "agents.delivery", "unknown variant `volume`")]
    #[case("agents: {java: {img: x}}", "agents.java.img", "unknown field `img`")]
    #[case("agents: {ruby: {image: x}}", "agents.ruby", "unknown field `ruby`")]
    fn schema_errors_name_the_field(#[case] yaml: &str, #[case] field: &str, #[case] message: &str) {
        match Config::from_yaml(yaml) {
            Err(ConfigError::Parse { field: f, message: m }) => {
                assert_eq!(f, field);
                assert!(m.starts_with(message), "{m}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[rstest]
    #[case("samplingRatio: 2", "samplingRatio")]
    #[case("samplingRatio: -0.1", "samplingRatio")]
    #[case("endpoint: collector:4317", "endpoint")]
    #[case("endpoint: ftp://collector", "endpoint")]
    #[case("propagators: [tracecontext, w3c]", "propagators[1]")]
    #[case("propagators: []", "propagators")]
    #[case("resourceAttributes: {'bad key': x}", "resourceAttributes.bad key")]
    #[case("headers: {'X Org': x}", "headers.X Org")]
    #[case("serviceNamespace: ''", "serviceNamespace")]
    #[case("maxRequestBytes: 10", "maxRequestBytes")]
    #[case("sidecar: {image: ''}", "sidecar.image")]
    #[case("sidecar: {exporterEndpoint: ' '}", "sidecar.exporterEndpoint")]
    #[case("sidecar: {resources: {limits: {memory: lots}}}", "sidecar.resources.limits.memory")]
    #[case("sidecar: {resources: {limits: {memory: 100Ki}}}", "sidecar.resources.limits.memory")]
    #[case("sidecar: {resources: {limits: {memory: -1Gi}}}", "sidecar.resources.limits.memory")]
    #[case("sidecar: {resources: {requests: {cpu: '2'}, limits: {cpu: 500m}}}", "sidecar.resources.requests.cpu")]
    #[case("sidecar: {resources: {requests: {gpu: '1'}}}", "sidecar.resources.requests.gpu")]
    #[case(
        "sidecar: {resources: {requests: {memory: 1Gi}, limits: {memory: 256Mi}}}",
        "sidecar.resources.requests.memory"
    )]
    #[case("sidecar: {tls: {caFile: /ca.crt}}", "sidecar.tls")]
    #[case("endpoint: http://gw:4318\nprotocol: grpc", "protocol")]
    #[case("protocol: http/protobuf", "protocol")]
    #[case("agents: {java: {image: ''}}", "agents.java.image")]
    #[case("agents: {python: {image: 'a b'}}", "agents.python.image")]
    #[case("agents: {initContainer: {volumeSizeLimit: lots}}", "agents.initContainer.volumeSizeLimit")]
    #[case(
        "agents: {initContainer: {resources: {limits: {memory: 1Mi}}}}",
        "agents.initContainer.resources.limits.memory"
    )]
    fn invalid_values_name_the_field(#[case] yaml: &str, #[case] field: &str) {
        match Config::from_yaml(yaml) {
            Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected an invalid-value error, got {other:?}"),
        }
    }

    #[test]
    fn the_agents_section_reads_every_key() {
        let yaml = "agents:\n  delivery: image-volume\n  operatorAnnotations: true\n  java: {image: registry.local/java:1}\n\
                    \n  initContainer: {volumeSizeLimit: 300Mi, resources: {limits: {memory: 64Mi}}}\n";
        let config = Config::from_yaml(yaml).expect("valid");
        assert_eq!(config.agents.delivery, Delivery::ImageVolume);
        assert!(config.agents.operator_annotations);
        assert_eq!(config.agents.java.image, "registry.local/java:1");
        assert_eq!(config.agents.nodejs, AgentsConfig::default().nodejs, "the others keep their defaults");
        assert_eq!(config.agents.init_container.volume_size_limit, "300Mi");
        assert_eq!(Config::default().agents.delivery, Delivery::Auto);
        assert!(!Config::default().agents.operator_annotations, "off by default: the two never fight");
    }

    #[test]
    fn error_display_names_the_field() {
        let err = Config::from_yaml("samplingRatio: 3").expect_err("out of range");
        assert!(err.to_string().starts_with("config samplingRatio: "), "{err}");
    }

    #[test]
    fn own_namespace_is_excluded_once() {
        let mut config = Config::default();
        config.exclude("otel-injector");
        config.exclude("otel-injector");
        assert_eq!(config.excluded_namespaces.iter().filter(|n| *n == "otel-injector").count(), 1);
    }
}
