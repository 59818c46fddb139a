//! The collector sidecar (SPEC §6): whether it can be added, the container, and recognising one already there.

use super::collector::text::Form;
use super::collector::{self, GRPC_PORT, HEALTH_PORT, HTTP_PORT};
use super::env;
use super::placement::Placement;
use super::status::Status;
use crate::engine::config::{Config, Resources as SidecarResources, SidecarMode};
use crate::engine::patch::{self, Json, Ops};
use crate::engine::pod_view::{Container, PodView};
use crate::engine::policy::Settings;
use crate::engine::syntax::{self, Protocol};

/// The sidecar's container name.
pub(crate) const NAME: &str = "otel-collector";
/// The env var holding the generated configuration.
pub(crate) const CONFIG_VAR: &str = "OTEL_COLLECTOR_CONFIG";
/// The value of [`MARKER_VAR`].
pub(crate) const MARKER_VALUE: &str = "otel-injector";
/// The env var that marks the container as the webhook's own (a user's collector may be named the same and read
/// its configuration from the same variable).
pub(crate) const MARKER_VAR: &str = "OTEL_INJECTOR_SIDECAR";

/// What happens about the sidecar for one pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sidecar {
    /// Not requested.
    Off,
    /// Ours is already in the pod (re-admission, reinvocation, a Pod from an injected template), at this index of
    /// its list.
    Present(Placement, usize),
    /// To be added (see [`container`]), placed as decided by [`super::placement::decide`] for the reason given.
    Add(Placement, String),
    /// Requested, but adding it would break the pod; the reason is returned as a warning.
    Refused(String),
}

impl Sidecar {
    /// Whether the applications export to a sidecar.
    pub(crate) fn in_use(&self) -> bool {
        matches!(self, Self::Present(..) | Self::Add(..))
    }

    /// The `sidecar` field of the status annotation: `native`, `classic` (with the reason when `auto` had to fall
    /// back, as `decided` by [`super::placement::decide`]), `off`, or `refused: <why>`. The same whether the sidecar is added now or
    /// found already there.
    pub fn status(&self, mode: SidecarMode, decided: &(Placement, String)) -> String {
        match self {
            Self::Off => "off".to_owned(),
            Self::Present(Placement::Classic, _) | Self::Add(Placement::Classic, _)
                if mode == SidecarMode::Auto && decided.0 == Placement::Classic =>
            {
                format!("classic: {}", decided.1)
            }
            Self::Present(p, _) | Self::Add(p, _) => p.as_str().to_owned(),
            Self::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// Whether a container is the sidecar this webhook adds: its name and its marker variable, whatever the API
/// server defaulted since (pull policy, termination message path, …). Sidecars added before the marker existed
/// are recognised by their configuration variable when the webhook's own status says it added one.
pub(crate) fn is_ours(c: &Container<'_>, status: Option<&Status>) -> bool {
    let added_one = status.is_some_and(|s| ["native", "classic", "added"].iter().any(|p| s.sidecar.starts_with(p)));
    c.name == NAME && (c.env_var(MARKER_VAR).is_some() || (added_one && c.env_var(CONFIG_VAR).is_some()))
}

/// The webhook's own sidecar in the pod, if there is one: where, and at which index of its list.
pub fn find(view: &PodView<'_>, status: Option<&Status>) -> Option<(Placement, usize)> {
    let native = view.init_containers.iter().find(|c| is_ours(c, status)).map(|c| (Placement::Native, c.index));
    native.or_else(|| view.containers.iter().find(|c| is_ours(c, status)).map(|c| (Placement::Classic, c.index)))
}

/// Decides about the sidecar; `placement` is where a new one would go (see [`super::placement::decide`]), `status` what the
/// object's status annotation says.
pub(crate) fn plan(
    view: &PodView<'_>,
    settings: &Settings,
    placement: (Placement, String),
    status: Option<&Status>,
    resources: &SidecarResources,
) -> Sidecar {
    if !settings.sidecar.value {
        return Sidecar::Off;
    }
    if let Some((p, index)) = find(view, status) {
        return Sidecar::Present(p, index);
    }
    let all = || view.init_containers.iter().chain(&view.containers);
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
    if view.os.as_deref() == Some("windows") {
        return Sidecar::Refused("a Windows pod cannot run the Linux collector".to_owned());
    }
    if let Some(why) = no_room(view, resources) {
        return Sidecar::Refused(why);
    }
    Sidecar::Add(placement.0, placement.1)
}

/// Why the pod's own resources (`spec.resources`) cannot hold the sidecar's requests beside its containers', if
/// they cannot: the API server refuses a pod whose containers (and sidecars) ask for more than the pod has.
fn no_room(view: &PodView<'_>, sidecar: &SidecarResources) -> Option<String> {
    let pod = view.resources.as_ref()?;
    let sidecars = view.init_containers.iter().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let running = view.containers.iter().chain(sidecars);
    for resource in ["cpu", "memory"] {
        let Some(room) = pod.counted(resource) else { continue };
        let asked = sidecar.requests.get(resource).or_else(|| sidecar.limits.get(resource));
        let Some(ours) = asked.and_then(|q| syntax::quantity(q)) else { continue };
        let used: f64 = running.clone().filter_map(|c| c.resources.as_ref()?.counted(resource)).sum();
        if used + ours > room {
            return Some(format!(
                "pod resources ({resource} {}) leave no room for its {}",
                pod.text(resource).unwrap_or_default(),
                asked.map(String::as_str).unwrap_or_default()
            ));
        }
    }
    None
}

/// Operations that bring the webhook's own sidecar (at `index` of its list) up to date with what it would be given
/// now: its image and the values of its marker, memory limit and generated configuration, the fields whose text the
/// API server never rewrites (the defaults it fills in elsewhere are left alone).
pub(crate) fn refresh(
    view: &PodView<'_>,
    settings: &Settings,
    config: &Config,
    namespace: &str,
    (placement, index): (Placement, usize),
) -> Ops {
    let mut ops = Ops::default();
    let list = match placement {
        Placement::Native => &view.init_containers,
        Placement::Classic => &view.containers,
    };
    let Some(c) = list.iter().find(|c| c.index == index) else { return ops };
    let template = Template::of(config);
    let path = patch::container(view.base, placement.list(), index);
    let image = template.image();
    if c.image.as_deref() != Some(image) {
        ops.replace(patch::child(&path, ["image"]), Json::str(image));
    }
    let inputs = inputs(view, settings, config, namespace);
    let mut yaml = String::new();
    template.pieces.write_or_render(&inputs, Form::Yaml, &mut yaml);
    let configuration = env::escape(&yaml);
    let memory = template.go_memory_limit.as_deref().map(|limit| ("GOMEMLIMIT", limit));
    let wanted = [Some((MARKER_VAR, MARKER_VALUE)), memory, Some((CONFIG_VAR, &configuration))];
    for (name, value) in wanted.into_iter().flatten() {
        let env = c.env.as_ref();
        let first = env.and_then(|env| env.first(name));
        if let Some(i) =
            first.filter(|&i| env.and_then(|env| env.get(i)).and_then(|e| e.value.as_deref()) != Some(value))
        {
            ops.replace(patch::child(&path, ["env".to_owned(), i.to_string(), "value".to_owned()]), Json::str(value));
        }
    }
    ops
}

/// The endpoint applications export to when the sidecar runs.
pub(crate) fn local_endpoint(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Grpc => "http://localhost:4317",
        Protocol::HttpProtobuf => "http://localhost:4318",
    }
}

/// What the collector configuration of `view`'s sidecar depends on.
fn inputs<'a>(
    view: &'a PodView<'_>,
    settings: &'a Settings,
    config: &'a Config,
    namespace: &'a str,
) -> collector::Inputs<'a> {
    collector::Inputs {
        namespace,
        owners: &view.owners,
        signals: &settings.signals.value,
        sampling_ratio: settings.sampling_ratio.value,
        headers: &config.headers,
        sidecar: &config.sidecar,
    }
}

/// The sidecar container for this pod, with its generated collector configuration, as the patch's JSON: the
/// configuration's [`Template`] with the pod's values copied in.
pub fn container(
    view: &PodView<'_>,
    settings: &Settings,
    config: &Config,
    namespace: &str,
    placement: Placement,
) -> Json {
    let template = Template::of(config);
    let inputs = inputs(view, settings, config, namespace);
    let (before, after) = template.around(placement);
    let mut text = String::with_capacity(before.len() + 3 * 1024 + after.len());
    text.push_str(before);
    template.pieces.write_or_render(&inputs, Form::EnvJson, &mut text);
    text.push_str(after);
    Json::text(text)
}

mod template;
use template::Template;

#[cfg(test)]
mod tests;
