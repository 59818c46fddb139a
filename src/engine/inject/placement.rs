//! Where the collector sidecar goes: a native sidecar (an init container that keeps running) where the API server
//! has them, else a classic one.

use crate::engine::config::SidecarMode;
use crate::engine::syntax::KubeVersion;

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

    /// The pod spec list it goes in.
    pub fn list(self) -> &'static str {
        match self {
            Self::Native => "initContainers",
            Self::Classic => "containers",
        }
    }
}

/// Where the sidecar goes under `mode` on an API server of `version` (unknown: no cluster, or preview without
/// `--kube-version`), and why, in a few words.
pub(crate) fn decide(mode: SidecarMode, version: Option<KubeVersion>) -> (Placement, String) {
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
