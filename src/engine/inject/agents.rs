//! Language agents (SPEC §10): which containers get which agent, how its files reach them (an image volume, or an
//! init container copying them into an `emptyDir`), and the variable that activates it, extended and never replaced.
//!
//! Everything the webhook adds is named for the agent (`otel-agent-<language>`) and recorded in the status, so a later
//! admission brings it up to date or takes it back, as it does its variables.

use std::borrow::Cow;

use super::env::Edit;
use super::env_from::Drawn;
use super::status::Status;
use crate::engine::config::{Activation, Config, Delivery, LANGUAGES, Language};
use crate::engine::patch::{self, Json, Ops, child, item};
use crate::engine::pod_view::{Container, PodView};
use crate::engine::policy::Settings;
use crate::engine::syntax::KubeVersion;
use crate::engine::warnings::{Warnings, clip};

/// How agents reach containers on a server of `version` under the configured delivery.
pub(crate) fn delivery(configured: Delivery, version: Option<KubeVersion>) -> Delivery {
    match (configured, version) {
        (Delivery::Auto, Some(v)) if v >= KubeVersion::IMAGE_VOLUMES => Delivery::ImageVolume,
        (Delivery::Auto, _) => Delivery::InitContainer,
        (configured, _) => configured,
    }
}

/// Why [`delivery`] chose as it did, in a few words.
fn why(configured: Delivery, version: Option<KubeVersion>) -> String {
    match (configured, version) {
        (Delivery::Auto, Some(v)) if v >= KubeVersion::IMAGE_VOLUMES => {
            format!("agents.delivery auto, Kubernetes {v} has image volumes")
        }
        (Delivery::Auto, Some(v)) => {
            format!("agents.delivery auto, Kubernetes {v} lacks image volumes ({}+)", KubeVersion::IMAGE_VOLUMES)
        }
        (Delivery::Auto, None) => "agents.delivery auto, server version unknown".to_owned(),
        (configured, _) => format!("agents.delivery {}", configured.as_str()),
    }
}

/// The agents of one object: those asked for that the pod can take, and how they are delivered.
#[derive(Debug)]
pub(crate) struct PodAgents {
    /// Asked for, and not refused for the whole pod.
    pub wanted: Vec<&'static Language>,
    /// The delivery in force.
    pub delivery: Delivery,
    /// Why that delivery.
    pub why: String,
    /// Recorded by an earlier admission, per container.
    previous: std::collections::BTreeMap<String, Vec<String>>,
    /// Whether what an earlier admission added is brought up to date (its settings changed).
    refresh: bool,
}

impl PodAgents {
    /// Decides which of the agents `settings` asks for this pod can take; what it cannot is a warning.
    pub(crate) fn plan(
        view: &PodView<'_>,
        settings: &Settings,
        config: &Config,
        version: Option<KubeVersion>,
        previous: Option<&Status>,
        refresh: bool,
        warnings: &mut Warnings,
    ) -> Self {
        let delivery = delivery(config.agents.delivery, version);
        let previous = previous.map(|p| p.agents.clone()).unwrap_or_default();
        let mut wanted = Vec::new();
        let no_room = match delivery {
            Delivery::InitContainer => init_no_room(view, &config.agents.init_container.resources),
            _ => None,
        };
        for asked in &settings.agents {
            let language = asked.value;
            if let Some(why) = &no_room {
                warnings.push(format!("otel-injector added no {} agent: {why}", language.name));
                continue;
            }
            if view.os.as_deref() == Some("windows") {
                warnings
                    .push(format!("otel-injector added no {} agent: a Windows pod gets no Linux agent", language.name));
                continue;
            }
            let volume = view.volumes.iter().flatten().any(|(_, v)| v == language.volume);
            let init = view.init_containers.iter().any(|c| c.name == language.volume);
            if (volume || init) && !in_status(&previous, language) {
                let what = if volume { "a volume" } else { "an init container" };
                warnings.push(format!(
                    "otel-injector added no {} agent: {what} named {} is already there and is not the webhook's",
                    language.name, language.volume
                ));
                continue;
            }
            wanted.push(language);
        }
        // Said only where an agent is added (the words cost an allocation on every admission otherwise).
        let why = if wanted.is_empty() { String::new() } else { why(config.agents.delivery, version) };
        Self { wanted, delivery, why, previous, refresh }
    }

    /// Whether an earlier admission added `language` to some container.
    fn added_before(&self, language: &Language) -> bool {
        in_status(&self.previous, language)
    }

    /// Whether there is anything to do or to take back.
    pub(crate) fn is_idle(&self) -> bool {
        self.wanted.is_empty() && self.previous.is_empty()
    }

    /// What the container named `name` had, per the status.
    fn recorded(&self, name: &str) -> &[String] {
        self.previous.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Whether the status's record of agents per container names `language` anywhere.
fn in_status(agents: &std::collections::BTreeMap<String, Vec<String>>, language: &Language) -> bool {
    agents.values().flatten().any(|n| n == language.name)
}

/// Why the pod's own `spec.resources` cannot hold an init container asking for `resources`, if they cannot: the API
/// server refuses a pod whose init container asks for more than the pod has.
fn init_no_room(view: &PodView<'_>, resources: &crate::engine::config::Resources) -> Option<String> {
    let pod = view.resources.as_ref()?;
    ["cpu", "memory"].into_iter().find_map(|resource| {
        let room = pod.counted(resource)?;
        let asked = resources.requests.get(resource).or_else(|| resources.limits.get(resource))?;
        (crate::engine::syntax::quantity(asked)? > room).then(|| {
            let have = pod.text(resource).unwrap_or_default();
            format!("pod resources ({resource} {have}) leave no room for its init container's {asked}")
        })
    })
}

/// What one container gets.
#[derive(Debug, Default)]
pub(crate) struct ContainerAgents {
    /// Edits of its activation variables, for the env plan.
    pub edits: Vec<Edit>,
    /// The agents active in it once the patch is applied (for the status).
    pub active: Vec<&'static Language>,
    /// The agents this admission adds to it.
    pub added: Vec<&'static Language>,
    /// Operations on its `volumeMounts`.
    pub ops: Ops,
    /// Remarks for the explanation.
    pub notes: Vec<String>,
    /// Problems the user should hear about.
    pub warnings: Vec<String>,
}

/// The user's value with the webhook's part added.
fn joined(language: &Language, value: &str) -> String {
    match (language.activation, value.trim().is_empty()) {
        (_, true) => language.token.to_owned(),
        (Activation::Append, false) => format!("{value} {}", language.token),
        (Activation::Prepend, false) => format!("{}:{value}", language.token),
    }
}

/// The value with the webhook's part taken out.
fn stripped(language: &Language, value: &str) -> String {
    let token = language.token;
    let with_separator = match language.activation {
        Activation::Append => format!(" {token}"),
        Activation::Prepend => format!("{token}:"),
    };
    if value.contains(&with_separator) { value.replacen(&with_separator, "", 1) } else { value.replacen(token, "", 1) }
}

/// Plans the agents of one instrumented container.
pub(crate) fn container(
    c: &Container<'_>,
    path: &jsonptr::PointerBuf,
    pod: &PodAgents,
    drawn: &Drawn,
) -> ContainerAgents {
    let mut out = ContainerAgents::default();
    let recorded = pod.recorded(&c.name);
    if pod.wanted.is_empty() && recorded.is_empty() {
        return out;
    }
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let preload = c.env_var("LD_PRELOAD").is_some() || drawn.value("LD_PRELOAD").is_some();
    let mut unmount = Vec::new();
    let mut mount = Vec::new();
    for (bit, language) in LANGUAGES.iter().enumerate() {
        let wanted = pod.wanted.iter().any(|l| l.name == language.name);
        let had = recorded.iter().any(|n| n == language.name);
        let index = c.env.as_ref().and_then(|env| env.last(language.var));
        let entry = index.and_then(|i| c.env.as_ref()?.get(i));
        let literal = entry.filter(|e| !e.value_from).map(|e| e.value.as_deref().unwrap_or_default());
        let has_token = literal.is_some_and(|v| v.contains(language.token));
        let our_mount = mounts.iter().find(|(_, n, p)| n == language.volume && p == language.mount_path).map(|m| m.0);
        // What an earlier admission added here, taken back: the mount (its volume goes too) and the webhook's part
        // of the variable (a variable it made for the agent alone goes with it).
        let take_back = |out: &mut ContainerAgents, unmount: &mut Vec<usize>, why: &str| {
            if !had {
                return;
            }
            if let (Some(i), Some(value)) = (index, literal.filter(|_| has_token)) {
                let rest = stripped(language, value);
                out.edits.push(if rest.trim().is_empty() { Edit::Remove(i) } else { Edit::Change(i, rest) });
            }
            unmount.extend(our_mount);
            out.notes.push(format!("{} agent taken back ({why})", language.name));
        };
        if !wanted {
            take_back(&mut out, &mut unmount, "no longer asked for");
            continue;
        }
        let refused = |why: String| format!("container {}: no {} agent added: {why}", clip(&c.name), language.name);
        let taken = mounts.iter().find(|(_, n, p)| p == language.mount_path && n != language.volume);
        let problem = if preload {
            Some("it sets LD_PRELOAD, which may load another agent".to_owned())
        } else if c.launches & (1 << bit) != 0 {
            Some(format!("its command line already loads an agent ({})", language.launchers.join(", ")))
        } else if entry.is_some_and(|e| e.value_from) {
            Some(format!("{} comes from valueFrom, which the webhook does not touch", language.var))
        } else if let Some(value) = literal.filter(|v| language.activated_in(v)) {
            Some(format!("{}={:?} already activates an agent", language.var, clip(value)))
        } else if let (None, Some(source)) = (literal, drawn.source(language.var)) {
            Some(format!(
                "{} is drawn from ConfigMap {}; set it in env to have the agent added",
                language.var,
                clip(source)
            ))
        } else {
            taken.map(|(_, n, _)| format!("volume {} is already mounted at {}", clip(n), language.mount_path))
        };
        if let Some(why) = problem {
            take_back(&mut out, &mut unmount, "refused now");
            out.notes.push(format!("{} agent not added: {why}", language.name));
            out.warnings.push(refused(why));
            continue;
        }
        // Added before (a pod made from an instrumented template, a reinvocation): kept as it is, unless its
        // delivery is being renewed, when the mount is made again with the volume.
        if has_token && let Some(m) = our_mount {
            out.active.push(language);
            if pod.refresh && had {
                unmount.push(m);
                mount.push(language);
            }
            continue;
        }
        match (index, literal) {
            (Some(i), Some(value)) if !has_token => out.edits.push(Edit::Change(i, joined(language, value))),
            (Some(_), Some(_)) => {}
            _ => out.edits.push(Edit::Append(language.var, language.token.to_owned())),
        }
        if our_mount.is_none() {
            mount.push(language);
        }
        out.active.push(language);
        out.added.push(language);
        out.notes.push(format!(
            "{} agent added ({} {}, {}), activated by {}",
            language.name,
            pod.delivery.as_str(),
            language.mount_path,
            pod.why,
            language.var
        ));
    }
    let list = child(path, ["volumeMounts"]);
    unmount.sort_unstable();
    for i in unmount.iter().rev() {
        out.ops.remove(item(&list, Some(*i), ""));
    }
    let entries: Vec<Json> = mount.iter().map(|l| mount_entry(l)).collect();
    match (&c.volume_mounts, entries.is_empty()) {
        (_, true) => {}
        (None, false) => out.ops.add(list, Json::array(entries.iter())),
        (Some(_), false) => entries.into_iter().for_each(|e| out.ops.add(item(&list, None, ""), e)),
    }
    out
}

fn mount_entry(language: &Language) -> Json {
    let mut text = String::with_capacity(96);
    text.push_str("{\"name\":\"");
    text.push_str(language.volume);
    text.push_str("\",\"mountPath\":\"");
    text.push_str(language.mount_path);
    text.push_str("\",\"readOnly\":true}");
    Json::text(text)
}

/// The operations on the pod's `volumes` and `initContainers`: what an earlier admission added and is no longer
/// wanted (or is renewed) is removed, highest index first; what is wanted and missing is appended. `active` are the
/// agents some container has once the patch is applied; `init_exists` says whether `initContainers` will be there.
pub(crate) fn pod_ops(
    view: &PodView<'_>,
    pod: &PodAgents,
    active: &[&'static Language],
    config: &Config,
    init_exists: bool,
) -> Ops {
    let mut ops = Ops::default();
    let spec: Vec<&str> = view.base.iter().copied().chain(["spec"]).collect();
    let mut drop_volumes = Vec::new();
    let mut drop_inits = Vec::new();
    let mut add = Vec::new();
    for language in &LANGUAGES {
        let wanted = active.iter().any(|l| l.name == language.name);
        let ours = pod.added_before(language);
        let volume = view.volumes.iter().flatten().find(|(_, v)| v == language.volume).map(|v| v.0).filter(|_| ours);
        let init = view.init_containers.iter().position(|c| c.name == language.volume).filter(|_| ours);
        let present = volume.is_some() || init.is_some();
        let renew = present && (!wanted || pod.refresh);
        if renew {
            drop_volumes.extend(volume);
            drop_inits.extend(init.map(|i| view.init_containers[i].index));
        }
        if wanted && (!present || renew) {
            add.push(language);
        }
    }
    for (list, mut drop) in [("volumes", drop_volumes), ("initContainers", drop_inits)] {
        let path = patch::pointer(spec.iter().copied().chain([list]));
        drop.sort_unstable();
        drop.iter().rev().for_each(|i| ops.remove(item(&path, Some(*i), "")));
    }
    let volumes_path = [spec.as_slice(), &["volumes"]].concat();
    let inits_path = [spec.as_slice(), &["initContainers"]].concat();
    let mut volumes_exist = view.volumes.is_some();
    let mut inits_exist = init_exists;
    for language in add {
        ops.append(volumes_exist, &volumes_path, volume_entry(language, pod.delivery, config));
        volumes_exist = true;
        if pod.delivery == Delivery::InitContainer {
            ops.append(inits_exist, &inits_path, init_container(language, config));
            inits_exist = true;
        }
    }
    ops
}

/// The volume that holds the agent: its image, or an `emptyDir` the init container fills.
fn volume_entry(language: &Language, delivery: Delivery, config: &Config) -> Json {
    let value = match delivery {
        Delivery::ImageVolume => serde_json::json!({
            "name": language.volume,
            "image": {"reference": config.agents.of(language).image, "pullPolicy": "IfNotPresent"},
        }),
        _ => serde_json::json!({
            "name": language.volume,
            "emptyDir": {"sizeLimit": config.agents.init_container.volume_size_limit},
        }),
    };
    Json::value(&value)
}

/// The init container that copies the agent out of its image, as Pod Security `restricted` wants it.
fn init_container(language: &Language, config: &Config) -> Json {
    let resources = &config.agents.init_container.resources;
    let value = serde_json::json!({
        "name": language.volume,
        "image": config.agents.of(language).image,
        "command": ["cp", "-r", language.copy_from, format!("{}/", language.mount_path)],
        "resources": {"requests": resources.requests, "limits": resources.limits},
        "volumeMounts": [{"name": language.volume, "mountPath": language.mount_path}],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    Json::value(&value)
}

/// The endpoint a container whose agent speaks only `protocol` exports to, when it differs from `endpoint` (OTLP's
/// gRPC port 4317 becomes its HTTP port 4318), or why it cannot be derived.
pub(crate) fn endpoint_for(endpoint: &str) -> Result<Cow<'_, str>, String> {
    let mut url = url::Url::parse(endpoint).map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    match url.port_or_known_default() {
        Some(4318) => Ok(Cow::Borrowed(endpoint)),
        Some(4317) => {
            let _ = url.set_port(Some(4318));
            let text = url.as_str();
            // `Url` adds a trailing slash to a bare authority; the SDKs read the endpoint without one.
            let trimmed = if endpoint.ends_with('/') { text } else { text.strip_suffix('/').unwrap_or(text) };
            Ok(Cow::Owned(trimmed.to_owned()))
        }
        _ => Err("the endpoint is not on port 4317, so its HTTP port is unknown".to_owned()),
    }
}

/// The settings a container's agents export with, when they differ from the pod's: an agent whose image speaks one
/// OTLP protocol only (Python's: HTTP) gets that protocol and, without a sidecar, the gateway's port for it (`Err`:
/// it cannot be derived, and the agent would not export).
pub(crate) fn transport(
    agents: &ContainerAgents,
    settings: &Settings,
    sidecar: bool,
) -> Option<Result<Settings, String>> {
    let language = agents.active.iter().find(|l| l.only_protocol.is_some_and(|p| p != settings.protocol.value))?;
    let protocol = language.only_protocol?;
    let mut adjusted = settings.clone();
    adjusted.protocol.value = protocol;
    if !sidecar {
        match endpoint_for(&settings.endpoint.value) {
            Ok(endpoint) => adjusted.endpoint.value = endpoint.into_owned(),
            Err(why) => return Some(Err(format!("the {} agent speaks {protocol} only; {why}", language.name))),
        }
    }
    Some(Ok(adjusted))
}

/// A warning for each agent that speaks one protocol only beside the container's own choice of another, which
/// the env plan `kept` (a user's value wins): that agent will not export.
pub(crate) fn protocol_conflicts<'a>(
    c: &'a Container<'_>,
    agents: &'a ContainerAgents,
    kept: &'a [&'static str],
) -> impl Iterator<Item = String> + 'a {
    agents.active.iter().filter_map(move |language| {
        let only = language.only_protocol?.as_str();
        let var = ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"].into_iter().find(|var| {
            kept.contains(var) && c.env_var(var).and_then(|e| e.value.as_deref()).is_some_and(|v| v != only)
        })?;
        Some(format!(
            "container {}: its own {var} is not {only}, the only protocol the {} agent speaks",
            clip(&c.name),
            language.name
        ))
    })
}

#[cfg(test)]
mod tests;
