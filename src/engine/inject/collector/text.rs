//! The collector configuration written as text: what depends on the configuration in use is rendered once into
//! [`Pieces`] (the exporter by the YAML emitter itself), and each pod's values are filled in between them, with no
//! document built and no emitter run. The text is byte for byte what [`super::render`] writes (a test holds every
//! variant to it); a pod whose names YAML would have to quote is left to [`super::render`].

use std::collections::BTreeMap;

use serde_json::json;

use super::{EXPORTER, GRPC_PORT, HTTP_PORT, Inputs, POD_ATTRIBUTES, chain, exporters, extensions, fixed_processors};
use crate::engine::config::SidecarConfig;
use crate::engine::inject::env;
use crate::engine::json_string;
use crate::engine::syntax::Signal;
use crate::engine::workload::Owners;

/// One stretch of constant text in the two forms it is written in: YAML, and that YAML as the inside of the JSON
/// string of an env var's value the kubelet expands (`$` doubled, then escaped for JSON).
#[derive(Debug)]
struct Piece {
    yaml: String,
    json: String,
}

impl Piece {
    fn new(yaml: String) -> Self {
        let mut json = String::with_capacity(yaml.len() + yaml.len() / 8);
        push_env_json(&mut json, &yaml);
        Self { yaml, json }
    }
}

/// Appends `yaml` in [`Form::EnvJson`]: escaped for the kubelet's `$(…)` expansion, then for a JSON string.
fn push_env_json(out: &mut String, yaml: &str) {
    json_string::push_inner(out, &env::escape(yaml));
}

/// Which form of the text to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The YAML the collector reads.
    Yaml,
    /// The value of the sidecar's `OTEL_COLLECTOR_CONFIG` as it stands in the patch: escaped for the kubelet's
    /// `$(…)` expansion, then for the inside of a JSON string.
    EnvJson,
}

/// The constant stretches of the configuration for one exporter (gateway endpoint, TLS and headers), in document
/// order; each pod's namespace, owners, sampling and signals go between them.
#[derive(Debug)]
pub struct Pieces {
    /// `exporters`, `extensions`, and `processors` down to `memory_limiter`.
    head: Piece,
    /// Up to the sampler's percentage.
    sampler: Piece,
    /// From `resource` up to the namespace's value.
    resource: Piece,
    /// After the namespace's value: the pod's own attributes, read from the sidecar's environment.
    pod: Piece,
    /// Each owner attribute up to its value, by key.
    owners: Vec<(&'static str, Piece)>,
    /// An end of line.
    newline: Piece,
    /// `receivers` and `service` down to `pipelines:`.
    service: Piece,
    /// Each signal's pipeline, in the document's (name) order: without a sampler, and with one.
    pipelines: Vec<(Signal, Piece, Piece)>,
    /// The collector's own telemetry, to the end.
    tail: Piece,
}

impl Pieces {
    /// The pieces for an exporter with these headers and this sidecar configuration.
    pub fn new(headers: &BTreeMap<String, String>, sidecar: &SidecarConfig) -> Self {
        let head = json!({
            "exporters": exporters(headers, sidecar),
            "extensions": extensions(),
            "processors": fixed_processors(),
        });
        let head = serde_yaml_ng::to_string(&head).unwrap_or_default();
        let entry = |key: &str| format!("    - action: insert\n      key: {key}\n      value: ");
        let mut pod = String::from("\n");
        for (key, helper) in POD_ATTRIBUTES {
            pod.push_str(&entry(key));
            pod.push_str(&format!("${{env:{}}}\n", helper.var()));
        }
        let mut signals = Signal::ALL;
        signals.sort_by_key(|s| s.as_str());
        let pipeline = |signal: Signal, sampling: bool| {
            let mut text =
                format!("    {}:\n      exporters:\n      - {EXPORTER}\n      processors:\n", signal.as_str());
            chain(signal, sampling).iter().for_each(|p| text.push_str(&format!("      - {p}\n")));
            text.push_str("      receivers:\n      - otlp\n");
            Piece::new(text)
        };
        Self {
            head: Piece::new(head),
            sampler: Piece::new("  probabilistic_sampler:\n    sampling_percentage: ".to_owned()),
            resource: Piece::new(format!("  resource:\n    attributes:\n{}", entry("k8s.namespace.name"))),
            pod: Piece::new(pod),
            owners: Owners::KEYS.into_iter().map(|key| (key, Piece::new(entry(key)))).collect(),
            newline: Piece::new("\n".to_owned()),
            service: Piece::new(format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: localhost:{GRPC_PORT}\n      \
                 http:\n        endpoint: localhost:{HTTP_PORT}\nservice:\n  extensions:\n  - health_check\n  \
                 pipelines:\n"
            )),
            pipelines: signals.into_iter().map(|s| (s, pipeline(s, false), pipeline(s, true))).collect(),
            tail: Piece::new("  telemetry:\n    metrics:\n      level: none\n".to_owned()),
        }
    }

    /// Appends the configuration for `inputs` in `form`; `false`, having appended nothing, when a value would need
    /// YAML quoting or escaping (then [`super::render`] writes it).
    pub fn write(&self, inputs: &Inputs<'_>, form: Form, out: &mut String) -> bool {
        let sampling = super::samples(inputs);
        let mut number = ryu::Buffer::new();
        let percentage = sampling.then(|| super::sampling_percentage(inputs.sampling_ratio));
        if percentage.is_some_and(|p| !p.is_finite())
            || inputs.signals.is_empty()
            || !plain(inputs.namespace)
            || inputs.owners.attributes().any(|(key, name)| !plain(name) || self.owner(key).is_none())
        {
            return false;
        }
        let piece = |p: &Piece, out: &mut String| {
            out.push_str(match form {
                Form::Yaml => &p.yaml,
                Form::EnvJson => &p.json,
            })
        };
        // Plain values (see `plain`) and numbers read the same in every form: nothing in them is escaped.
        piece(&self.head, out);
        if let Some(p) = percentage {
            piece(&self.sampler, out);
            out.push_str(number.format_finite(p));
            piece(&self.newline, out);
        }
        piece(&self.resource, out);
        out.push_str(inputs.namespace);
        piece(&self.pod, out);
        for (key, name) in inputs.owners.attributes() {
            if let Some(owner) = self.owner(key) {
                piece(owner, out);
                out.push_str(name);
                piece(&self.newline, out);
            }
        }
        piece(&self.service, out);
        for (signal, without, with) in &self.pipelines {
            if inputs.signals.contains(signal) {
                piece(if sampling { with } else { without }, out);
            }
        }
        piece(&self.tail, out);
        true
    }

    /// Appends the configuration for `inputs` in `form`: from the pieces, or, for names YAML must quote, as
    /// [`super::render`] writes it.
    pub fn write_or_render(&self, inputs: &Inputs<'_>, form: Form, out: &mut String) {
        if self.write(inputs, form, out) {
            return;
        }
        let yaml = super::render(inputs);
        match form {
            Form::Yaml => out.push_str(&yaml),
            Form::EnvJson => push_env_json(out, &yaml),
        }
    }

    fn owner(&self, key: &str) -> Option<&Piece> {
        self.owners.iter().find(|(k, _)| *k == key).map(|(_, p)| p)
    }
}

/// Whether the YAML emitter writes `s` as it is, and it needs no escaping for the kubelet or JSON either: a
/// Kubernetes name that starts with a letter and does not read as `null` or a boolean. A name starting with a digit
/// may read as a number (`1e3`), which YAML quotes.
fn plain(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !matches!(s, "null" | "true" | "false")
}

#[cfg(test)]
mod tests;
