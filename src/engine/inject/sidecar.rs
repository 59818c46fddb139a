//! The collector sidecar (SPEC §6): whether it can be added, the container, and recognising one already there.

use serde_json::{Value, json};

use super::collector::{self, GRPC_PORT, HEALTH_PORT, HTTP_PORT, POD_IP_VAR};
use super::env::{self, Helper};
use crate::engine::config::{Config, SidecarMode};
use crate::engine::object::{Container, PodView};
use crate::engine::policy::Settings;
use crate::engine::values::{self, KubeVersion, Protocol};

/// The sidecar's container name.
pub const NAME: &str = "otel-collector";
/// The env var holding the generated configuration; its presence marks the container as ours.
pub const CONFIG_VAR: &str = "OTEL_COLLECTOR_CONFIG";

/// Where the sidecar runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// An `initContainers` entry with `restartPolicy: Always`.
    Native,
    /// A regular entry in `containers`.
    Classic,
}

impl Placement {
    /// `native` or `classic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Classic => "classic",
        }
    }
}

/// Where the sidecar goes under `mode` on an API server of `version` (unknown: no cluster, or preview without
/// `--kube-version`), and why, in a few words.
pub fn placement(mode: SidecarMode, version: Option<KubeVersion>) -> (Placement, String) {
    match (mode, version) {
        (SidecarMode::Native, _) => (Placement::Native, "sidecar.mode native".to_owned()),
        (SidecarMode::Classic, _) => (Placement::Classic, "sidecar.mode classic".to_owned()),
        (SidecarMode::Auto, None) => (Placement::Native, "sidecar.mode auto, server version unknown".to_owned()),
        (SidecarMode::Auto, Some(v)) if v.has_native_sidecars() => {
            (Placement::Native, format!("sidecar.mode auto, Kubernetes {v} has native sidecars"))
        }
        (SidecarMode::Auto, Some(v)) => {
            (Placement::Classic, format!("Kubernetes {v} lacks native sidecars ({}+)", KubeVersion::NATIVE_SIDECARS))
        }
    }
}

/// What happens about the sidecar for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Sidecar {
    /// Not requested.
    Off,
    /// Ours is already in the pod (re-admission, reinvocation, a Pod from an injected template).
    Present(Placement),
    /// To be added (see [`container`]), placed as decided by [`placement`] for the reason given.
    Add(Placement, String),
    /// Requested, but adding it would break the pod; the reason is returned as a warning.
    Refused(String),
}

impl Sidecar {
    /// Whether the applications export to a sidecar.
    pub fn in_use(&self) -> bool {
        matches!(self, Self::Present(_) | Self::Add(..))
    }

    /// The `sidecar` field of the status annotation: `native`, `classic` (with the reason when `auto` had to fall
    /// back), `off`, or `refused: <why>`.
    pub fn status(&self, mode: SidecarMode) -> String {
        match self {
            Self::Off => "off".to_owned(),
            Self::Present(p) => p.as_str().to_owned(),
            Self::Add(Placement::Classic, why) if mode == SidecarMode::Auto => format!("classic: {why}"),
            Self::Add(p, _) => p.as_str().to_owned(),
            Self::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// Whether a container is the sidecar this webhook adds: its name and its configuration variable, whatever the
/// API server defaulted since (pull policy, termination message path, …).
pub fn is_ours(c: &Container<'_>) -> bool {
    c.name == NAME && c.env_var(CONFIG_VAR).is_some()
}

/// Decides about the sidecar; `placement` is where a new one would go (see [`placement`]).
pub fn plan(view: &PodView<'_>, settings: &Settings, placement: (Placement, String)) -> Sidecar {
    if !settings.sidecar.value {
        return Sidecar::Off;
    }
    let all = || view.init_containers.iter().chain(&view.containers);
    if view.init_containers.iter().any(is_ours) {
        return Sidecar::Present(Placement::Native);
    }
    if view.containers.iter().any(is_ours) {
        return Sidecar::Present(Placement::Classic);
    }
    if all().any(|c| c.name == NAME) {
        return Sidecar::Refused(format!("a container named {NAME} already exists"));
    }
    if view.host_network {
        return Sidecar::Refused("the pod uses hostNetwork, its ports would bind on the node".to_owned());
    }
    let reserved = [i64::from(GRPC_PORT), i64::from(HTTP_PORT), i64::from(HEALTH_PORT)];
    if let Some((c, port)) = all().find_map(|c| c.ports.iter().find(|p| reserved.contains(p)).map(|p| (c, p))) {
        return Sidecar::Refused(format!("container {} uses port {port}, which the sidecar needs", c.name));
    }
    if settings.signals.value.is_empty() {
        return Sidecar::Refused("no signals are enabled".to_owned());
    }
    Sidecar::Add(placement.0, placement.1)
}

/// The endpoint applications export to when the sidecar runs.
pub fn local_endpoint(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Grpc => "http://localhost:4317",
        Protocol::HttpProtobuf => "http://localhost:4318",
    }
}

/// The sidecar container for this pod, with its generated collector configuration.
pub fn container(
    view: &PodView<'_>,
    settings: &Settings,
    config: &Config,
    namespace: &str,
    placement: Placement,
) -> Value {
    let sidecar = &config.sidecar;
    let inputs = collector::Inputs {
        namespace,
        owners: &view.owners,
        signals: &settings.signals.value,
        sampling_ratio: settings.sampling_ratio.value,
        headers: &config.headers,
        sidecar,
    };
    let collector_yaml = collector::render(&inputs);
    let mut env: Vec<Value> = [Helper::PodName, Helper::PodUid, Helper::NodeName].map(Helper::entry).to_vec();
    env.push(json!({"name": POD_IP_VAR, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}));
    // The Go runtime's soft limit at 80% of the container's memory limit, so GC works before the OOM killer does.
    if let Some(bytes) = sidecar.resources.limits.get("memory").and_then(|m| values::memory_bytes(m)) {
        env.push(json!({"name": "GOMEMLIMIT", "value": format!("{}MiB", bytes / 10 * 8 / (1024 * 1024))}));
    }
    // The kubelet would expand `$(…)` and `$$` in the value; escaped, the collector sees its config verbatim.
    env.push(json!({"name": CONFIG_VAR, "value": env::escape(&collector_yaml)}));
    let probe = json!({"httpGet": {"path": "/", "port": HEALTH_PORT}, "periodSeconds": 10, "failureThreshold": 3});
    let mut c = json!({
        "name": NAME,
        "image": sidecar.image,
        "args": [format!("--config=env:{CONFIG_VAR}")],
        "env": env,
        "resources": {"requests": sidecar.resources.requests, "limits": sidecar.resources.limits},
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "livenessProbe": probe,
        "readinessProbe": probe,
    });
    if placement == Placement::Native {
        c["restartPolicy"] = "Always".into();
    }
    c
}

#[cfg(test)]
mod tests;
