//! The `otel-injector.io/status` annotation: what was done, why, a hash of the settings it was done with, and per
//! container a record of the values the webhook set (see [`super::record`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::placement::Placement;
use crate::engine::config::{AgentsConfig, Config, Delivery, SidecarConfig};
use crate::engine::keys;
use crate::engine::pod_view::PodView;
use crate::engine::policy::Settings;

/// Bumped whenever the engine would inject differently for the same settings.
const ENGINE_REVISION: u32 = 2;

/// The annotation's JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Containers instrumented.
    pub containers: Vec<String>,
    /// The collector sidecar: `added`, `off`, or `refused: <why>`.
    pub sidecar: String,
    /// The pod-wide `service.name` (absent when each container is named after itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The rule that chose `service.name`.
    pub service_name_from: String,
    /// Why the object is instrumented.
    pub reason: String,
    /// Hash of the effective settings, to find drift against a changed config.
    pub hash: String,
    /// Per container, what the webhook set (a [`super::record::Record`]'s text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Containers instrumented although they draw variables from a Secret, which the webhook never reads (an
    /// `OTEL_*` variable there is overridden by the webhook's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_fed: Vec<String>,
    /// Containers whose SDK reads a declarative configuration file (`OTEL_CONFIG_FILE`): their exporter settings are
    /// left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_file: Vec<String>,
    /// Per container, the language agents the webhook activated there (so it can take them back or bring them up
    /// to date later, as it does its variables).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, Vec<String>>,
    /// How those agents reach their containers: `image-volume` or `init-container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_delivery: Option<String>,
}

impl Status {
    /// The status the object already carries, if it is ours and readable.
    pub fn read(view: &PodView<'_>) -> Option<Self> {
        serde_json::from_str(view.annotation(keys::STATUS)?).ok()
    }

    /// The annotation value: compact JSON with fields in a fixed order.
    pub(crate) fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Everything that decides what gets injected, in a canonical form for hashing.
#[derive(Serialize)]
struct HashInput<'a> {
    revision: u32,
    #[serde(flatten)]
    settings: &'a Settings,
    headers: &'a BTreeMap<String, String>,
    service_namespace: Option<&'a str>,
    skip_containers: &'a [String],
    sidecar: Option<(&'a SidecarConfig, Placement)>,
    namespace: &'a str,
    service_name_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agents: Option<(&'a AgentsConfig, Delivery)>,
}

/// A short, stable hash of everything that shapes the injection (16 hex digits of SHA-256): the settings in force,
/// where a sidecar goes, and the object's namespace and `service.name` (so a manifest copied elsewhere does not
/// pass for current).
///
/// The [`Settings`] are hashed whole; the configuration's fields are taken apart without `..`, so a field added to
/// [`Config`] does not compile until it is hashed here or said not to shape the injection.
pub(crate) fn settings_hash(
    settings: &Settings,
    config: &Config,
    placement: Placement,
    delivery: Delivery,
    namespace: &str,
    service_name: Option<&str>,
) -> String {
    let Config {
        headers,
        service_namespace,
        skip_containers,
        sidecar,
        // Decide whether an object is instrumented, not how.
        default: _,
        excluded_namespaces: _,
        workloads: _,
        // Defaults of the settings, hashed as the settings in force.
        endpoint: _,
        protocol: _,
        sampling_ratio: _,
        propagators: _,
        signals: _,
        resource_attributes: _,
        // The server's, not the injection's.
        max_request_bytes: _,
        // Hashed with the agents asked for, only when some are (an object without agents hashes as before).
        agents,
        // Made from the fields above.
        derived: _,
    } = config;
    let input = HashInput {
        revision: ENGINE_REVISION,
        settings,
        headers,
        service_namespace: service_namespace.as_deref(),
        skip_containers,
        sidecar: settings.sidecar.value.then_some((sidecar, placement)),
        namespace,
        service_name_value: service_name,
        agents: (!settings.agents.is_empty()).then_some((agents, delivery)),
    };
    // Written out first, then hashed in one call: the serialiser's many small writes cost more as hash updates.
    let mut text = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut text, &input);
    let digest = Sha256::digest(&text);
    let mut hex = String::with_capacity(16);
    for b in digest.iter().take(8) {
        let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::policy::{self, NamespaceMeta};
    use crate::engine::warnings::Warnings;
    use crate::engine::workload::WorkloadKind;
    use serde_json::{Value, json};

    fn hash_of(annotations: Value, config: &Config) -> String {
        let pod = json!({"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "a"}]}});
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let settings = policy::settings(&view, &NamespaceMeta::default(), config, &mut Warnings::default());
        settings_hash(&settings, config, Placement::Native, Delivery::InitContainer, "shop", Some("web"))
    }

    #[test]
    fn hash_is_stable_and_tracks_every_setting() {
        let base = hash_of(json!({}), &Config::default());
        assert_eq!(base.len(), 16);
        // Pinned: a hash written by one version must be what the next computes for the same settings, or every
        // instrumented object would look stale after an upgrade.
        assert_eq!(base, "b33102ee4460de31");
        assert_eq!(base, hash_of(json!({}), &Config::default()));
        assert_eq!(base, hash_of(json!({"unrelated": "x"}), &Config::default()));
        // Where a setting comes from is not hashed, only its value.
        let default_endpoint = Config::default().endpoint;
        assert_eq!(base, hash_of(json!({keys::ENDPOINT: default_endpoint}), &Config::default()));
        for annotations in [
            json!({keys::ENDPOINT: "http://other:4317"}),
            json!({keys::PROTOCOL: "http/protobuf"}),
            json!({keys::SAMPLING_RATIO: "0.5"}),
            json!({keys::PROPAGATORS: "b3"}),
            json!({keys::SIGNALS: "traces"}),
            json!({keys::SIDECAR: "true"}),
            json!({keys::SERVICE_NAME: "x"}),
            json!({keys::CONTAINER_NAMES: "a"}),
            json!({"resource.opentelemetry.io/team": "x"}),
            json!({"otel-injector.io/inject-java": "true"}),
        ] {
            assert_ne!(base, hash_of(annotations.clone(), &Config::default()), "{annotations}");
        }
        let mut config = Config::default();
        config.headers.insert("X-Scope-OrgID".into(), "prod".into());
        assert_ne!(base, hash_of(json!({}), &config));
    }

    #[test]
    fn annotation_round_trips_with_fixed_field_order() {
        let status = Status {
            containers: vec!["app".into()],
            sidecar: "off".into(),
            service_name: Some("shop".into()),
            service_name_from: "pod name".into(),
            reason: "cluster default (inject)".into(),
            hash: "0123456789abcdef".into(),
            env: [("app".to_owned(), "SN=abcdef".to_owned())].into(),
            secret_fed: Vec::new(),
            config_file: Vec::new(),
            agents: BTreeMap::new(),
            agent_delivery: None,
        };
        let text = status.to_annotation();
        assert_eq!(
            text,
            r#"{"containers":["app"],"sidecar":"off","serviceName":"shop","serviceNameFrom":"pod name","reason":"cluster default (inject)","hash":"0123456789abcdef","env":{"app":"SN=abcdef"}}"#
        );
        let pod = json!({"metadata": {"annotations": {keys::STATUS: text}}, "spec": {"containers": []}});
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        assert_eq!(Status::read(&view), Some(status));
        let garbage = json!({"metadata": {"annotations": {keys::STATUS: "{"}}, "spec": {"containers": []}});
        let json = garbage.to_string();
        assert_eq!(Status::read(&PodView::parse(&json, WorkloadKind::Pod).expect("valid")), None);
    }
}
