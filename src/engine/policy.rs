//! Who gets instrumented and with which settings: annotations, labels, namespace and config → decision (SPEC §2).

use std::collections::BTreeMap;
use std::fmt;

use crate::engine::config::{Config, DefaultMode, LANGUAGES, Language};
use crate::engine::keys;
use crate::engine::limits;
use crate::engine::pod_view::PodView;
use crate::engine::syntax::{self, Protocol, Signal};
use crate::engine::warnings::{Warnings, clip};

/// A Namespace's labels and annotations, as the policy sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl NamespaceMeta {
    /// Whether the policy reads a namespace label or annotation of this key (`otel-injector.io/*`,
    /// `resource.opentelemetry.io/*`, the OpenTelemetry Operator's `instrumentation.opentelemetry.io/inject-*`).
    pub fn reads(key: &str) -> bool {
        key.starts_with("otel-injector.io/")
            || key.starts_with(keys::RESOURCE_PREFIX)
            || key.starts_with(keys::OPERATOR_INJECT_PREFIX)
    }

    /// Only the labels and annotations the policy reads (see [`NamespaceMeta::reads`]), so a cache does not hold or
    /// copy the rest (e.g. `kubectl.kubernetes.io/last-applied-configuration`).
    pub(crate) fn relevant<'a>(
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let keep = |(k, v): (&'a String, &'a String)| Self::reads(k).then(|| (k.clone(), v.clone()));
        Self {
            labels: labels.into_iter().filter_map(keep).collect(),
            annotations: annotations.into_iter().filter_map(keep).collect(),
        }
    }
}

/// Where a setting's value came from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// An annotation on the pod or pod template.
    Annotation,
    /// A label on the pod or pod template.
    Label,
    /// An annotation on the namespace.
    NamespaceAnnotation,
    /// A label on the namespace.
    NamespaceLabel,
    /// The config file (or its default).
    Config,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Annotation => "annotation",
            Self::Label => "label",
            Self::NamespaceAnnotation => "namespace annotation",
            Self::NamespaceLabel => "namespace label",
            Self::Config => "config",
        })
    }
}

/// A resolved setting and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<T> {
    /// The value in force.
    pub value: T,
    /// Its source.
    pub origin: Origin,
}

/// A resolved setting serialises as its value alone: where it came from does not change what is injected.
impl<T: serde::Serialize> serde::Serialize for Resolved<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

/// Whether the object is instrumented, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Instrument it.
    pub inject: bool,
    /// Human-readable reason, e.g. `namespace annotation otel-injector.io/inject=true`.
    pub reason: String,
    /// The reason as one of a few codes (a metric label, a span attribute).
    pub cause: Cause,
}

/// Why the engine decided as it did, as a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The `inject` setting, from where it was found.
    Setting(Origin),
    /// The namespace is excluded by config (or is a system namespace).
    ExcludedNamespace,
    /// A controller owns the object: its own template is instrumented instead.
    ControllerOwned,
    /// An UPDATE of a Job, whose pod template is immutable.
    JobUpdate,
    /// An UPDATE that leaves the pod template unchanged.
    TemplateUnchanged,
    /// The object does not have the shape of its kind.
    Unreadable,
    /// The object is beyond one of the engine's limits (`crate::engine::limits`).
    OverLimit,
    /// The caller stopped waiting before the engine was done.
    Deadline,
}

impl Cause {
    /// The code: `annotation`, `label`, `namespace_annotation`, `namespace_label`, `default`,
    /// `excluded_namespace`, `controller_owned`, `job_update`, `template_unchanged`, `unreadable`, `over_limit` or
    /// `deadline`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Setting(Origin::Annotation) => "annotation",
            Self::Setting(Origin::Label) => "label",
            Self::Setting(Origin::NamespaceAnnotation) => "namespace_annotation",
            Self::Setting(Origin::NamespaceLabel) => "namespace_label",
            Self::Setting(Origin::Config) => "default",
            Self::ExcludedNamespace => "excluded_namespace",
            Self::ControllerOwned => "controller_owned",
            Self::JobUpdate => "job_update",
            Self::TemplateUnchanged => "template_unchanged",
            Self::Unreadable => "unreadable",
            Self::OverLimit => "over_limit",
            Self::Deadline => "deadline",
        }
    }
}

/// The settings in force for one object after precedence. Serialised, they are the settings part of the status
/// hash (see [`crate::engine::inject::status::settings_hash`]): a field added here is hashed too.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Settings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Resolved<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Resolved<Protocol>,
    /// Head sampling ratio.
    pub sampling_ratio: Resolved<f64>,
    /// `OTEL_PROPAGATORS`.
    pub propagators: Resolved<Vec<String>>,
    /// Exported signals.
    pub signals: Resolved<Vec<Signal>>,
    /// Add the collector sidecar (hashed with the sidecar's configuration and placement, not here).
    #[serde(skip)]
    pub sidecar: Resolved<bool>,
    /// The `service-name` annotation, if valid.
    pub service_name: Option<String>,
    /// The `container-names` annotation, if set.
    pub container_names: Option<Vec<String>>,
    /// Static and annotated resource attributes (config < namespace < pod), in a stable order.
    pub attributes: Vec<(String, String)>,
    /// The language agents asked for, in [`LANGUAGES`] order (not serialised when none, so an object without
    /// agents hashes as it always did).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "agent_names")]
    pub agents: Vec<Resolved<&'static Language>>,
}

fn agent_names<S: serde::Serializer>(agents: &[Resolved<&'static Language>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(agents.iter().map(|a| a.value.name))
}

/// The places one setting is looked up, highest precedence first.
struct Lookup<'a> {
    view: &'a PodView<'a>,
    ns: &'a NamespaceMeta,
}

impl Lookup<'_> {
    fn candidates(&self, key: &str, labels_too: bool) -> Vec<(Origin, &str)> {
        let mut found = Vec::with_capacity(2);
        if let Some(v) = self.view.annotation(key) {
            found.push((Origin::Annotation, v));
        }
        if labels_too && let Some(v) = self.view.label(key) {
            found.push((Origin::Label, v));
        }
        if let Some(v) = self.ns.annotations.get(key) {
            found.push((Origin::NamespaceAnnotation, v.as_str()));
        }
        if labels_too && let Some(v) = self.ns.labels.get(key) {
            found.push((Origin::NamespaceLabel, v.as_str()));
        }
        found
    }

    /// The first valid value of `key`, else `fallback`; every invalid value on the way is a warning.
    fn resolve<T>(
        &self,
        warnings: &mut Warnings,
        key: &str,
        labels_too: bool,
        parse: impl Fn(&str) -> Result<T, String>,
        fallback: T,
        show: impl Fn(&T) -> String,
    ) -> Resolved<T> {
        let mut rejected = Vec::new();
        let mut winner = None;
        for (origin, raw) in self.candidates(key, labels_too) {
            match parse(raw) {
                Ok(value) => {
                    winner = Some(Resolved { value, origin });
                    break;
                }
                Err(reason) => rejected.push((origin, raw, reason)),
            }
        }
        let resolved = winner.unwrap_or(Resolved { value: fallback, origin: Origin::Config });
        for (origin, raw, reason) in rejected {
            let head = format!("{key}={:?} on {origin} ignored: {reason}; using {} value ", clip(raw), resolved.origin);
            warnings.push(fit(head, &show(&resolved.value)));
        }
        resolved
    }
}

/// Decides whether the object is instrumented (SPEC §2 precedence).
pub(crate) fn decide(
    view: &PodView<'_>,
    namespace: &str,
    ns: &NamespaceMeta,
    config: &Config,
    warnings: &mut Warnings,
) -> Decision {
    if config.excludes(namespace) {
        let reason = format!("namespace {namespace} is excluded");
        return Decision { inject: false, reason, cause: Cause::ExcludedNamespace };
    }
    let fallback = config.default == DefaultMode::Inject;
    let lookup = Lookup { view, ns };
    let resolved = lookup.resolve(warnings, keys::INJECT, true, syntax::parse_bool, fallback, bool::to_string);
    if resolved.origin == Origin::Annotation
        && let Some(label) = view.label(keys::INJECT).and_then(|l| syntax::parse_bool(l).ok())
        && label != resolved.value
    {
        warnings.push(format!(
            "label {k}={label} and annotation {k}={} disagree; the annotation wins",
            resolved.value,
            k = keys::INJECT
        ));
    }
    // An agent asked for where nothing as specific says `inject: false` opts the object in (SPEC §10).
    if !resolved.value
        && let Some((agent, key)) = agent_requests(&lookup, config, &mut Warnings::default())
            .into_iter()
            .filter(|(a, _)| a.value && a.origin < resolved.origin)
            .min_by_key(|(a, _)| a.origin)
    {
        let reason = format!("{} {key}=true", agent.origin);
        return Decision { inject: true, reason, cause: Cause::Setting(agent.origin) };
    }
    let reason = match resolved.origin {
        Origin::Config => format!("cluster default ({})", if fallback { "inject" } else { "skip" }),
        origin => format!("{origin} {}={}", keys::INJECT, resolved.value),
    };
    Decision { inject: resolved.value, reason, cause: Cause::Setting(resolved.origin) }
}

/// Each language's agent setting (`inject-<language>` annotations on the pod or namespace, and the OpenTelemetry
/// Operator's when the config says so: ours wins at the same level), with the key that decided it.
fn agent_requests(
    lookup: &Lookup<'_>,
    config: &Config,
    warnings: &mut Warnings,
) -> Vec<(Resolved<bool>, &'static str)> {
    // Most objects name no agent anywhere: one pass over the few annotations kept says so.
    let operator = config.agents.operator_annotations;
    let agent_key = |k: &str| LANGUAGES.iter().any(|l| l.key == k || operator && l.operator_key == k);
    let named =
        lookup.view.annotations().any(|(k, _)| agent_key(k)) || lookup.ns.annotations.keys().any(|k| agent_key(k));
    if !named {
        return Vec::new();
    }
    LANGUAGES
        .iter()
        .map(|language| {
            let ours = lookup.resolve(warnings, language.key, false, syntax::parse_bool, false, bool::to_string);
            if !config.agents.operator_annotations {
                return (ours, language.key);
            }
            let theirs =
                lookup.resolve(warnings, language.operator_key, false, syntax::parse_bool, false, bool::to_string);
            if theirs.origin < ours.origin { (theirs, language.operator_key) } else { (ours, language.key) }
        })
        .collect()
}

/// Resolves every setting for an instrumented object: pod > namespace > config.
pub fn settings(view: &PodView<'_>, ns: &NamespaceMeta, config: &Config, warnings: &mut Warnings) -> Settings {
    let lookup = Lookup { view, ns };
    let endpoint =
        lookup.resolve(warnings, keys::ENDPOINT, false, syntax::parse_endpoint, config.endpoint.clone(), String::clone);
    let protocol =
        lookup.resolve(warnings, keys::PROTOCOL, false, Protocol::parse, config.protocol, Protocol::to_string);
    let protocol = follow_port(&endpoint, protocol, warnings);
    let sampling_ratio = lookup.resolve(
        warnings,
        keys::SAMPLING_RATIO,
        false,
        syntax::parse_ratio,
        config.sampling_ratio,
        f64::to_string,
    );
    let propagators = lookup.resolve(
        warnings,
        keys::PROPAGATORS,
        false,
        syntax::parse_propagators,
        config.propagators.clone(),
        |v| v.join(","),
    );
    let extra: Vec<&str> =
        propagators.value.iter().map(String::as_str).filter(|p| !syntax::BUILT_IN_PROPAGATORS.contains(p)).collect();
    if !extra.is_empty() {
        warnings.push(format!(
            "propagators {} (from {}) need extra SDK packages; Python apps without them exit at start-up",
            extra.join(","),
            propagators.origin
        ));
    }
    let signals = lookup.resolve(warnings, keys::SIGNALS, false, syntax::parse_signals, config.signals.clone(), |v| {
        v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    });
    let sidecar =
        lookup.resolve(warnings, keys::SIDECAR, false, syntax::parse_bool, config.sidecar.enabled, bool::to_string);

    let service_name = view.annotation(keys::SERVICE_NAME).and_then(|v| match v.trim() {
        "" => {
            warnings.push(format!("{}=\"\" ignored: must not be empty", keys::SERVICE_NAME));
            None
        }
        name => Some(name.to_owned()),
    });
    let container_names = view.annotation(keys::CONTAINER_NAMES).map(syntax::split_list).filter(|names| {
        if names.is_empty() {
            warnings.push(format!(
                "{}=\"\" on annotation ignored: names no container; using every app container",
                keys::CONTAINER_NAMES
            ));
        }
        !names.is_empty()
    });
    if let Some(names) = &container_names {
        let present: std::collections::HashSet<&str> = view.containers.iter().map(|c| c.name.as_ref()).collect();
        for missing in names.iter().filter(|n| !present.contains(n.as_str())) {
            warnings.push(format!(
                "{} names {:?}, which is not a container here",
                keys::CONTAINER_NAMES,
                clip(missing)
            ));
        }
    }

    let agents = agent_requests(&lookup, config, warnings)
        .into_iter()
        .zip(LANGUAGES.iter())
        .filter(|((wanted, _), _)| wanted.value)
        .map(|((wanted, _), language)| Resolved { value: language, origin: wanted.origin })
        .collect();

    let mut attributes = Attributes::default();
    config.resource_attributes.iter().for_each(|(k, v)| attributes.set(k, v, Origin::Config, warnings));
    let ns_annotations = ns.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    add_annotated_attributes(&mut attributes, ns_annotations, Origin::NamespaceAnnotation, warnings);
    add_annotated_attributes(&mut attributes, view.annotations(), Origin::Annotation, warnings);
    attributes.over += view.attributes_not_kept;
    if attributes.over > 0 {
        warnings.push(format!(
            "{} resource attribute(s) ignored: over the limit of {}",
            attributes.over,
            limits::ATTRIBUTES
        ));
    }
    let attributes = attributes.list;

    Settings {
        endpoint,
        protocol,
        sampling_ratio,
        propagators,
        signals,
        sidecar,
        service_name,
        container_names,
        attributes,
        agents,
    }
}

/// The protocol in force: where it is not given at the endpoint's level or a more specific one, the endpoint's port
/// decides (4317 gRPC, 4318 HTTP; SDKs send what the protocol says, and nothing arrives on the other port); where a
/// protocol given there contradicts the port, it is kept and the user warned.
fn follow_port(
    endpoint: &Resolved<String>,
    protocol: Resolved<Protocol>,
    warnings: &mut Warnings,
) -> Resolved<Protocol> {
    let Some(by_port) = syntax::transport_of(&endpoint.value) else { return protocol };
    if protocol.origin > endpoint.origin {
        return Resolved { value: by_port, origin: endpoint.origin };
    }
    if protocol.value != by_port {
        warnings.push(format!(
            "{}={} on {} contradicts the endpoint: SDKs will send {} to {}, an {by_port} port",
            keys::PROTOCOL,
            protocol.value,
            protocol.origin,
            protocol.value,
            clip(&endpoint.value),
        ));
    }
    protocol
}

/// Resource attributes as they are gathered: at most [`limits::ATTRIBUTES`], each value within
/// [`limits::VALUE_CHARS`].
#[derive(Default)]
struct Attributes {
    list: Vec<(String, String)>,
    /// Where each key is in `list`.
    index: std::collections::HashMap<String, usize>,
    /// New keys not taken because the list was full.
    over: usize,
}

impl Attributes {
    /// Sets `key` to `value`, keeping the position of an earlier entry; a value too long is not used.
    fn set(&mut self, key: &str, value: &str, origin: Origin, warnings: &mut Warnings) {
        if !limits::value_fits(value) {
            warnings.push(format!(
                "resource attribute {} on {origin} ignored: its value is over {} characters",
                clip(key),
                limits::VALUE_CHARS
            ));
            return;
        }
        match self.index.get(key) {
            Some(&i) => value.clone_into(&mut self.list[i].1),
            None if self.list.len() >= limits::ATTRIBUTES => self.over += 1,
            None => {
                self.index.insert(key.to_owned(), self.list.len());
                self.list.push((key.to_owned(), value.to_owned()));
            }
        }
    }
}

/// Adds one level's `resource-attributes` list, then its `resource.opentelemetry.io/<key>` annotations.
fn add_annotated_attributes<'a>(
    attributes: &mut Attributes,
    annotations: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    origin: Origin,
    warnings: &mut Warnings,
) {
    if let Some((_, list)) = annotations.clone().find(|(k, _)| *k == keys::RESOURCE_ATTRIBUTES) {
        match syntax::parse_attributes(list) {
            Ok(pairs) => pairs.into_iter().for_each(|(k, v)| attributes.set(&k, &v, origin, warnings)),
            Err(reason) => {
                warnings.push(format!("{}={:?} on {origin} ignored: {reason}", keys::RESOURCE_ATTRIBUTES, clip(list)))
            }
        }
    }
    for (key, value) in annotations.filter_map(|(k, v)| Some((k.strip_prefix(keys::RESOURCE_PREFIX)?, v))) {
        match syntax::check_attribute_key(key) {
            Ok(()) => attributes.set(key, value, origin, warnings),
            Err(reason) => {
                warnings.push(format!("{}{} on {origin} ignored: {reason}", keys::RESOURCE_PREFIX, clip(key)))
            }
        }
    }
}

/// `head` followed by as much of `tail` as keeps the line within a warning's 120 characters.
fn fit(head: String, tail: &str) -> String {
    let budget = crate::engine::warnings::MAX_WARNING_CHARS.saturating_sub(head.chars().count());
    if tail.chars().count() <= budget {
        head + tail
    } else if budget >= 2 {
        format!("{head}{}…", tail.chars().take(budget - 1).collect::<String>())
    } else {
        head.trim_end().trim_end_matches(" value").to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workload::WorkloadKind;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn pod(annotations: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "p", "annotations": annotations, "labels": labels},
               "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]}})
    }

    fn ns(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> NamespaceMeta {
        let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        NamespaceMeta { annotations: map(annotations), labels: map(labels) }
    }

    fn decide_for(
        pod_ann: Option<&str>,
        pod_label: Option<&str>,
        ns_ann: Option<&str>,
        default: DefaultMode,
    ) -> (bool, Warnings) {
        let mut annotations = serde_json::Map::new();
        if let Some(v) = pod_ann {
            annotations.insert(keys::INJECT.into(), v.into());
        }
        let mut labels = serde_json::Map::new();
        if let Some(v) = pod_label {
            labels.insert(keys::INJECT.into(), v.into());
        }
        let object = pod(Value::Object(annotations), Value::Object(labels));
        let json = object.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let ns = ns(&ns_ann.map(|v| vec![(keys::INJECT, v)]).unwrap_or_default(), &[]);
        let config = Config { default, ..Config::default() };
        let mut warnings = Warnings::default();
        let d = decide(&view, "shop", &ns, &config, &mut warnings);
        (d.inject, warnings)
    }

    /// The precedence truth table: pod annotation > pod label > namespace > default.
    #[rstest]
    #[case(None, None, None, DefaultMode::Skip, false)]
    #[case(None, None, None, DefaultMode::Inject, true)]
    #[case(None, None, Some("true"), DefaultMode::Skip, true)]
    #[case(None, None, Some("false"), DefaultMode::Inject, false)]
    #[case(None, Some("true"), Some("false"), DefaultMode::Skip, true)]
    #[case(None, Some("false"), Some("true"), DefaultMode::Inject, false)]
    #[case(Some("true"), None, Some("false"), DefaultMode::Skip, true)]
    #[case(Some("false"), None, Some("true"), DefaultMode::Inject, false)]
    #[case(Some("true"), Some("false"), Some("false"), DefaultMode::Skip, true)]
    #[case(Some("false"), Some("true"), Some("true"), DefaultMode::Inject, false)]
    #[case(Some("true"), Some("true"), None, DefaultMode::Skip, true)]
    #[case(Some("false"), Some("false"), None, DefaultMode::Inject, false)]
    #[case(Some("maybe"), None, Some("true"), DefaultMode::Skip, true)]
    #[case(Some("maybe"), Some("false"), Some("true"), DefaultMode::Inject, false)]
    #[case(None, None, Some("yes"), DefaultMode::Inject, true)]
    fn inject_precedence(
        #[case] pod_ann: Option<&str>,
        #[case] pod_label: Option<&str>,
        #[case] ns_ann: Option<&str>,
        #[case] default: DefaultMode,
        #[case] want: bool,
    ) {
        assert_eq!(decide_for(pod_ann, pod_label, ns_ann, default).0, want);
    }

    #[test]
    fn disagreeing_label_and_annotation_warn() {
        let (inject, warnings) = decide_for(Some("true"), Some("false"), None, DefaultMode::Skip);
        assert!(inject);
        assert_eq!(
            warnings.as_slice(),
            [format!("label {0}=false and annotation {0}=true disagree; the annotation wins", keys::INJECT)]
        );
    }

    #[test]
    fn invalid_inject_value_warns_naming_value_and_replacement() {
        let (_, warnings) = decide_for(Some("maybe"), None, Some("true"), DefaultMode::Skip);
        assert_eq!(
            warnings.as_slice(),
            [format!(
                "{}=\"maybe\" on annotation ignored: must be true or false; using namespace annotation value true",
                keys::INJECT
            )]
        );
    }

    #[test]
    fn namespace_label_counts_and_excluded_namespaces_win() {
        let object = pod(json!({keys::INJECT: "true"}), json!({}));
        let json = object.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let mut w = Warnings::default();
        let d = decide(&view, "kube-system", &NamespaceMeta::default(), &Config::default(), &mut w);
        let reason = "namespace kube-system is excluded".into();
        assert_eq!(d, Decision { inject: false, reason, cause: Cause::ExcludedNamespace });

        let object = pod(json!({}), json!({}));
        let json = object.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let d = decide(&view, "shop", &ns(&[], &[(keys::INJECT, "true")]), &Config::default(), &mut w);
        assert_eq!(d.reason, "namespace label otel-injector.io/inject=true");
        assert!(d.inject);
    }

    fn settings_for(pod_ann: Value, ns_ann: &[(&str, &str)]) -> (Settings, Warnings) {
        let object = pod(pod_ann, json!({}));
        let json = object.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let mut config = Config::default();
        config.resource_attributes.insert("k8s.cluster.name".into(), "prod".into());
        config.resource_attributes.insert("team".into(), "platform".into());
        let mut warnings = Warnings::default();
        let s = settings(&view, &ns(ns_ann, &[]), &config, &mut warnings);
        (s, warnings)
    }

    #[rstest]
    #[case::endpoint(keys::ENDPOINT, "http://ns:4317", "http://pod:4318")]
    #[case::protocol(keys::PROTOCOL, "grpc", "http/protobuf")]
    #[case::ratio(keys::SAMPLING_RATIO, "0.5", "0.1")]
    #[case::propagators(keys::PROPAGATORS, "b3", "jaeger,baggage")]
    #[case::signals(keys::SIGNALS, "traces", "metrics,logs")]
    #[case::sidecar(keys::SIDECAR, "true", "false")]
    fn pod_beats_namespace_beats_config(#[case] key: &str, #[case] ns_value: &str, #[case] pod_value: &str) {
        let show = |s: &Settings| match key {
            keys::ENDPOINT => (s.endpoint.value.clone(), s.endpoint.origin),
            keys::PROTOCOL => (s.protocol.value.to_string(), s.protocol.origin),
            keys::SAMPLING_RATIO => (s.sampling_ratio.value.to_string(), s.sampling_ratio.origin),
            keys::PROPAGATORS => (s.propagators.value.join(","), s.propagators.origin),
            keys::SIGNALS => {
                (s.signals.value.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","), s.signals.origin)
            }
            _ => (s.sidecar.value.to_string(), s.sidecar.origin),
        };
        let (config_only, _) = settings_for(json!({}), &[]);
        assert_eq!(show(&config_only).1, Origin::Config);
        let (from_ns, _) = settings_for(json!({}), &[(key, ns_value)]);
        assert_eq!(show(&from_ns), (ns_value.to_owned(), Origin::NamespaceAnnotation));
        let (from_pod, w) = settings_for(json!({key: pod_value}), &[(key, ns_value)]);
        assert_eq!(show(&from_pod), (pod_value.to_owned(), Origin::Annotation));
        // (http/protobuf against the config's endpoint on 4317 is kept, with the warning of the next test; jaeger
        // needs a package: the test after.)
        assert_eq!(w.is_empty(), key != keys::PROTOCOL && key != keys::PROPAGATORS, "{w:?}");
    }

    #[rstest]
    #[case::built_in("tracecontext,baggage", None)]
    #[case::none("none", None)]
    #[case::b3("b3", Some("propagators b3 (from annotation) need extra SDK packages"))]
    #[case::several("tracecontext,xray,ottrace", Some("propagators xray,ottrace (from annotation)"))]
    fn propagators_beyond_tracecontext_and_baggage_are_a_warning(#[case] value: &str, #[case] want: Option<&str>) {
        let (s, w) = settings_for(json!({keys::PROPAGATORS: value}), &[]);
        assert_eq!(s.propagators.value.join(","), value, "still used: the warning only says what they need");
        match want {
            None => assert!(w.is_empty(), "{w:?}"),
            Some(start) => {
                assert_eq!(w.len(), 1);
                assert!(w.as_slice()[0].starts_with(start), "{w:?}");
            }
        }
    }

    #[rstest]
    // Not given at the endpoint's level or a more specific one: the port decides.
    #[case::pod_endpoint_4318(json!({keys::ENDPOINT: "http://gw:4318"}), &[], "http/protobuf", Origin::Annotation, false)]
    #[case::ns_endpoint_4318(json!({}), &[(keys::ENDPOINT, "http://gw:4318")], "http/protobuf", Origin::NamespaceAnnotation, false)]
    #[case::pod_endpoint_over_ns_protocol(json!({keys::ENDPOINT: "https://gw:4317"}), &[(keys::PROTOCOL, "http/protobuf")], "grpc", Origin::Annotation, false)]
    #[case::no_known_port(json!({keys::ENDPOINT: "http://gw:8080"}), &[], "grpc", Origin::Config, false)]
    #[case::no_port(json!({keys::ENDPOINT: "https://otlp.vendor.example"}), &[], "grpc", Origin::Config, false)]
    // Given at the same level or a more specific one: it wins, and a contradiction is a warning.
    #[case::both_on_pod(json!({keys::ENDPOINT: "http://gw:4318", keys::PROTOCOL: "http/protobuf"}), &[], "http/protobuf", Origin::Annotation, false)]
    #[case::contradiction_on_pod(json!({keys::ENDPOINT: "http://gw:4318", keys::PROTOCOL: "grpc"}), &[], "grpc", Origin::Annotation, true)]
    #[case::pod_protocol_over_ns_endpoint(json!({keys::PROTOCOL: "grpc"}), &[(keys::ENDPOINT, "http://gw:4318")], "grpc", Origin::Annotation, true)]
    #[case::ns_protocol_over_config_endpoint(json!({}), &[(keys::PROTOCOL, "http/protobuf")], "http/protobuf", Origin::NamespaceAnnotation, true)]
    fn the_protocol_follows_the_endpoints_port_unless_given_as_specifically(
        #[case] pod_ann: Value,
        #[case] ns_ann: &[(&str, &str)],
        #[case] protocol: &str,
        #[case] origin: Origin,
        #[case] warned: bool,
    ) {
        let (s, w) = settings_for(pod_ann, ns_ann);
        assert_eq!((s.protocol.value.as_str(), s.protocol.origin), (protocol, origin));
        assert_eq!(w.len(), usize::from(warned), "{w:?}");
        if warned {
            let w = &w.as_slice()[0];
            assert!(w.contains("contradicts the endpoint") && w.contains(&format!("SDKs will send {protocol}")), "{w}");
        }
    }

    #[rstest]
    #[case(keys::ENDPOINT, "collector:4317")]
    #[case(keys::PROTOCOL, "http")]
    #[case(keys::SAMPLING_RATIO, "2")]
    #[case(keys::PROPAGATORS, "w3c")]
    #[case(keys::SIGNALS, "profiles")]
    #[case(keys::SIDECAR, "yes")]
    fn invalid_pod_values_fall_back_to_namespace_with_a_warning(#[case] key: &str, #[case] bad: &str) {
        let (good, _) = settings_for(json!({}), &[]);
        let (s, warnings) = settings_for(json!({key: bad}), &[]);
        assert_eq!(s, good, "an invalid value must not change any setting");
        assert_eq!(warnings.len(), 1);
        let w = &warnings.as_slice()[0];
        assert!(w.starts_with(&format!("{key}={bad:?} on annotation ignored: ")), "{w}");
        assert!(w.contains("; using config value"), "{w}");
        assert!(w.chars().count() <= 120, "{w}");
    }

    #[test]
    fn resource_attributes_merge_config_namespace_pod() {
        let (s, w) = settings_for(
            json!({"resource.opentelemetry.io/team": "checkout", keys::RESOURCE_ATTRIBUTES: "tier=web,region=eu"}),
            &[(keys::RESOURCE_ATTRIBUTES, "team=shop,tier=backend"), ("resource.opentelemetry.io/cost-center", "42")],
        );
        assert!(w.is_empty());
        let got: Vec<(&str, &str)> = s.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("k8s.cluster.name", "prod"),
                ("team", "checkout"),
                ("tier", "web"),
                ("cost-center", "42"),
                ("region", "eu"),
            ]
        );
    }

    #[test]
    fn invalid_attribute_list_is_ignored_with_a_warning() {
        let (s, w) = settings_for(json!({keys::RESOURCE_ATTRIBUTES: "team"}), &[]);
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(
            w.as_slice(),
            [format!("{}=\"team\" on annotation ignored: \"team\" is not key=value", keys::RESOURCE_ATTRIBUTES)]
        );
    }

    #[test]
    fn service_name_and_container_names() {
        let (s, w) = settings_for(json!({keys::SERVICE_NAME: " checkout ", keys::CONTAINER_NAMES: "app, ghost"}), &[]);
        assert_eq!(s.service_name.as_deref(), Some("checkout"));
        assert_eq!(s.container_names, Some(vec!["app".to_owned(), "ghost".to_owned()]));
        assert_eq!(w.as_slice(), [format!("{} names \"ghost\", which is not a container here", keys::CONTAINER_NAMES)]);
        let (s, w) = settings_for(json!({keys::SERVICE_NAME: " "}), &[]);
        assert_eq!(s.service_name, None);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn namespace_meta_keeps_only_what_the_policy_reads() {
        let labels: BTreeMap<String, String> =
            [(keys::INJECT, "true"), ("team", "a")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
        let annotations: BTreeMap<String, String> = [
            (keys::SAMPLING_RATIO, "0.5"),
            ("resource.opentelemetry.io/team", "shop"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let meta = NamespaceMeta::relevant(&labels, &annotations);
        assert_eq!(meta.labels.keys().collect::<Vec<_>>(), [keys::INJECT]);
        assert_eq!(
            meta.annotations.keys().collect::<Vec<_>>(),
            [keys::SAMPLING_RATIO, "resource.opentelemetry.io/team"]
        );
    }

    #[test]
    fn clip_shortens_long_values() {
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"x".repeat(100)).chars().count(), 41);
    }
}
