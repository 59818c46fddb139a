//! The variables a container draws from `envFrom` (SPEC §4): they are the user's, as much as `env` entries are. The
//! kubelet lets `env` beat `envFrom`, so a variable the webhook added to `env` would silently replace a ConfigMap's;
//! the edge reads the ConfigMaps (a bounded, cached lookup) and hands what it found to the engine. Secrets are never
//! read: a container fed by one is instrumented as usual (the webhook's variables win over a Secret's of the same
//! name), with a warning, unless `otel-injector.io/env-from-secret: skip` leaves it alone.

use std::collections::{BTreeMap, HashMap};

use crate::engine::pod_view::{Container, EnvSourceKind};
use crate::engine::warnings::clip;

/// What the edge found of one ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Its data (the keys a container may draw; values of at most what the engine reads).
    Data(BTreeMap<String, String>),
    /// It does not exist (an optional source then adds nothing; a required one keeps the pod from starting).
    Missing,
    /// It could not be read; why.
    Unknown(String),
}

/// The ConfigMaps of the object's namespace that its containers draw from, as the edge found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMaps(HashMap<String, Found>);

impl ConfigMaps {
    /// Records what was found of ConfigMap `name`.
    pub fn insert(&mut self, name: impl Into<String>, found: Found) {
        self.0.insert(name.into(), found);
    }

    /// What was found of ConfigMap `name`; `None` when it was not looked up.
    pub fn get(&self, name: &str) -> Option<&Found> {
        self.0.get(name)
    }
}

/// The variables one container draws from `envFrom`, as far as they are known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Drawn {
    /// Each variable's name (with its source's prefix) and value, the later source winning, as in the kubelet.
    pub vars: HashMap<String, (String, String)>,
    /// The Secrets it draws from.
    pub secrets: Vec<String>,
    /// ConfigMaps it draws from that are not known, with why.
    pub unknown: Vec<(String, String)>,
}

impl Drawn {
    /// The value of `name` drawn from a ConfigMap, if any.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|(v, _)| v.as_str())
    }

    /// The ConfigMap `name` is drawn from, if any.
    pub(crate) fn source(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|(_, s)| s.as_str())
    }
}

/// What container `c` draws from `envFrom`, given the ConfigMaps the edge found. Only variables the engine reads
/// (`OTEL_*`) are kept.
pub(crate) fn drawn(c: &Container<'_>, config_maps: Option<&ConfigMaps>) -> Drawn {
    let mut out = Drawn::default();
    for source in &c.env_from {
        match source.kind {
            EnvSourceKind::Secret => out.secrets.push(source.name.to_string()),
            // Not looked up at all: nothing to say about it.
            EnvSourceKind::ConfigMap if config_maps.is_none() => {}
            EnvSourceKind::ConfigMap => match config_maps.and_then(|m| m.get(&source.name)) {
                Some(Found::Data(data)) => {
                    for (key, value) in data {
                        let name = format!("{}{key}", source.prefix);
                        if name.starts_with("OTEL_") {
                            out.vars.insert(name, (value.clone(), source.name.to_string()));
                        }
                    }
                }
                Some(Found::Missing) => {}
                Some(Found::Unknown(why)) => out.unknown.push((source.name.to_string(), why.clone())),
                None => out.unknown.push((source.name.to_string(), "not given".to_owned())),
            },
        }
    }
    out
}

/// The warnings about what `c` draws that the webhook cannot see.
pub(crate) fn warnings(c: &Container<'_>, drawn: &Drawn) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(secret) = drawn.secrets.first() {
        out.push(format!(
            "container {}: Secret {} (envFrom) is never read, its OTEL_* are overridden; env-from-secret: skip opts out",
            clip(&c.name),
            clip(secret)
        ));
    }
    if let Some((name, why)) = drawn.unknown.first() {
        out.push(format!(
            "container {}: ConfigMap {} (envFrom) unknown ({}); its OTEL_* may be overridden",
            clip(&c.name),
            clip(name),
            clip(why)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pod_view::PodView;
    use crate::engine::workload::WorkloadKind;
    use serde_json::json;

    #[test]
    fn config_map_keys_with_their_prefix_are_drawn_the_later_source_winning() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "envFrom": [
            {"configMapRef": {"name": "a"}},
            {"prefix": "OTEL_", "configMapRef": {"name": "b"}},
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "gone", "optional": true}},
            {"configMapRef": {"name": "unread"}}
        ]}]}});
        let text = pod.to_string();
        let view = PodView::parse(&text, WorkloadKind::Pod).expect("valid");
        let mut maps = ConfigMaps::default();
        let data =
            |pairs: &[(&str, &str)]| Found::Data(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        maps.insert("a", data(&[("OTEL_SERVICE_NAME", "a"), ("DB_HOST", "db")]));
        maps.insert("b", data(&[("SERVICE_NAME", "b"), ("EXPORTER_OTLP_ENDPOINT", "http://mine:4318")]));
        maps.insert("gone", Found::Missing);
        let drawn = drawn(&view.containers[0], Some(&maps));
        assert_eq!(drawn.value("OTEL_SERVICE_NAME"), Some("b"), "the later source wins");
        assert_eq!(drawn.source("OTEL_EXPORTER_OTLP_ENDPOINT"), Some("b"));
        assert_eq!(drawn.value("DB_HOST"), None, "only what the engine reads");
        assert_eq!(drawn.secrets, ["creds"]);
        assert_eq!(drawn.unknown, [("unread".to_owned(), "not given".to_owned())]);
        assert_eq!(super::drawn(&view.containers[0], None).unknown, [], "not looked up at all: nothing to say");
        let warnings = warnings(&view.containers[0], &drawn);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("Secret creds") && warnings[1].contains("ConfigMap unread"), "{warnings:?}");
    }
}
