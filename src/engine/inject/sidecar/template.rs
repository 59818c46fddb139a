//! The sidecar container as text, made once for the configuration in use (held in its [`Config::derived`]): the
//! container's JSON around its collector configuration, and that configuration's constant [`Pieces`]. Each pod then
//! costs its own values copied in, not a document built, emitted as YAML and serialised as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{CONFIG_VAR, MARKER_VAR, NAME};
use crate::engine::config::{Config, SidecarConfig};
use crate::engine::inject::collector::text::Pieces;
use crate::engine::inject::collector::{HEALTH_PORT, POD_IP_VAR};
use crate::engine::inject::env::Helper;
use crate::engine::inject::placement::Placement;
use crate::engine::syntax;

/// Stands in for the configuration's value while the container's JSON is written.
const HOLE: &str = "\u{0}otel-injector-collector-configuration\u{0}";

/// What the webhook writes for every sidecar under one configuration.
#[derive(Debug)]
pub(crate) struct Template {
    /// The configuration it was made from (its headers and sidecar section).
    headers: BTreeMap<String, String>,
    sidecar: SidecarConfig,
    /// The collector configuration's constant text.
    pub(crate) pieces: Pieces,
    /// The container's JSON before and after the collector configuration's value, as a native sidecar and as a
    /// classic one.
    native: (String, String),
    classic: (String, String),
    /// `GOMEMLIMIT`, when the sidecar has a memory limit.
    pub(crate) go_memory_limit: Option<String>,
}

impl Template {
    fn new(config: &Config) -> Self {
        let sidecar = &config.sidecar;
        // The Go runtime's soft limit at 80% of the container's memory limit, so GC works before the OOM killer
        // does. The config guarantees at least 16Mi, so this is never 0MiB.
        let go_memory_limit = sidecar
            .resources
            .limits
            .get("memory")
            .and_then(|m| syntax::quantity(m))
            .map(|bytes| format!("{}MiB", (bytes * 0.8 / 1048576.0) as u64));
        let around = |placement| {
            let text = container(sidecar, go_memory_limit.as_deref(), placement).to_string();
            let mut hole = String::new();
            crate::engine::json_string::push_inner(&mut hole, HOLE);
            let (before, after) = text.split_once(hole.as_str()).unwrap_or((&text, ""));
            (before.to_owned(), after.to_owned())
        };
        Self {
            headers: config.headers.clone(),
            sidecar: sidecar.clone(),
            pieces: Pieces::new(&config.headers, sidecar),
            native: around(Placement::Native),
            classic: around(Placement::Classic),
            go_memory_limit,
        }
    }

    /// The template for `config`: the one made with it, or a new one if the configuration was changed in place since.
    pub(crate) fn of(config: &Config) -> Arc<Self> {
        let made = config.derived.get_or_init(|| Self::new(config));
        made.filter(|t| t.headers == config.headers && t.sidecar == config.sidecar)
            .unwrap_or_else(|| Arc::new(Self::new(config)))
    }

    /// The container's JSON before and after the collector configuration's value (inside its JSON string).
    pub(crate) fn around(&self, placement: Placement) -> (&str, &str) {
        let (before, after) = match placement {
            Placement::Native => &self.native,
            Placement::Classic => &self.classic,
        };
        (before, after)
    }

    /// The sidecar's image.
    pub(crate) fn image(&self) -> &str {
        &self.sidecar.image
    }
}

/// The sidecar container, its collector configuration's value a [`HOLE`].
fn container(sidecar: &SidecarConfig, go_memory_limit: Option<&str>, placement: Placement) -> Value {
    let mut env = vec![json!({"name": MARKER_VAR, "value": super::MARKER_VALUE})];
    env.extend([Helper::PodName, Helper::PodUid, Helper::NodeName].map(Helper::entry));
    env.push(json!({"name": POD_IP_VAR, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}));
    if let Some(limit) = go_memory_limit {
        env.push(json!({"name": "GOMEMLIMIT", "value": limit}));
    }
    env.push(json!({"name": CONFIG_VAR, "value": HOLE}));
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
