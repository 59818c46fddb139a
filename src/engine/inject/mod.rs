//! The injection engine: a raw object and its context in; a JSON Patch, warnings and an explanation out.
//!
//! Pure: no I/O, no clock, no globals. The webhook, `preview` and the benches all call [`mutate`].

pub mod agents;
pub mod collector;
pub mod env;
pub mod env_from;
pub mod over_limit;
pub mod placement;
pub mod record;
pub mod resource;
pub mod service_name;
pub mod sidecar;
pub mod status;
pub(crate) mod transport;
pub mod vars;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::config::{Config, Language, SidecarMode};
use crate::engine::explanation::{ContainerOutcome, ContainerReport, Explanation};
use crate::engine::keys;
use crate::engine::limits;
use crate::engine::patch::{self, Json, Ops, Patch};
use crate::engine::pod_view::{Container, PodView};
use crate::engine::policy::{self, Cause, NamespaceMeta, Settings};
use crate::engine::syntax::{self, KubeVersion};
use crate::engine::warnings::{Warnings, clip};
use crate::engine::workload::WorkloadKind;
use agents::PodAgents;
use env_from::ConfigMaps;
use placement::Placement;
use record::Record;
use service_name::ServiceName;
use sidecar::Sidecar;
use status::Status;
use vars::Source;

/// What the engine needs to know besides the object.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The object's kind.
    pub kind: WorkloadKind,
    /// The namespace the object lives in.
    pub namespace: &'a str,
    /// That namespace's labels and annotations.
    pub ns: &'a NamespaceMeta,
    /// The configuration in force.
    pub config: &'a Config,
    /// The API server's version, when known (decides `sidecar.mode: auto` and `agents.delivery: auto`).
    pub server_version: Option<KubeVersion>,
    /// For an UPDATE, the pod template as it was, as raw JSON text (`null` when `oldObject` had none); `None` for
    /// a CREATE.
    pub old_template: Option<&'a str>,
    /// Whether the caller has stopped waiting (asked between containers).
    pub stop: Stop<'a>,
    /// The ConfigMaps the object's containers draw variables from, as the edge found them (`None`: not looked up).
    pub config_maps: Option<&'a ConfigMaps>,
}

impl<'a> Target<'a> {
    /// A CREATE of a `kind` object in `namespace`, the server version unknown.
    pub fn new(kind: WorkloadKind, namespace: &'a str, ns: &'a NamespaceMeta, config: &'a Config) -> Self {
        let stop = Stop::default();
        Self { kind, namespace, ns, config, server_version: None, old_template: None, stop, config_maps: None }
    }
}

/// Tells the engine that the caller has stopped waiting (the webhook's `?timeout=` has passed), so the rest of the
/// work would be for nobody: the engine asks between containers and gives up, leaving the object unchanged. The
/// edge decides what "now" is; the engine reads no clock.
#[derive(Clone, Copy, Default)]
pub struct Stop<'a>(Option<&'a (dyn Fn() -> bool + Sync)>);

impl<'a> Stop<'a> {
    /// Stops once `stopped` says so.
    pub fn when(stopped: &'a (dyn Fn() -> bool + Sync)) -> Self {
        Self(Some(stopped))
    }

    /// Whether to stop now.
    pub fn now(&self) -> bool {
        self.0.is_some_and(|stopped| stopped())
    }
}

impl std::fmt::Debug for Stop<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Stop(when…)" } else { "Stop(never)" })
    }
}

/// The engine's answer for one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The object's name, or its `generateName` (for logs), when it could be read.
    pub name: Option<String>,
    /// The operations to apply (empty when there is nothing to change).
    pub patch: Patch,
    /// What the user should hear about.
    pub warnings: Warnings,
    /// The decision and what was done, for `--explain`, logs and spans.
    pub explanation: Explanation,
}

impl Mutation {
    fn unchanged(explanation: Explanation, warnings: Warnings) -> Self {
        Self { name: None, patch: Patch::default(), warnings, explanation }
    }
}

/// Kubernetes' limit on the total size of an object's annotations (keys and values).
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Decides whether and how to instrument `object`, and returns the patch that does it. A convenience over
/// [`mutate_json`] for objects already in memory (preview, tests).
pub fn mutate(object: &Value, target: &Target<'_>) -> Mutation {
    mutate_json(&object.to_string(), target)
}

/// Decides whether and how to instrument the object whose JSON is `object`, read into a lean view straight from
/// the text, and returns the patch that does it.
pub fn mutate_json(object: &str, target: &Target<'_>) -> Mutation {
    let view = match PodView::parse(object, target.kind) {
        Ok(view) => view,
        Err(e) => {
            let mut warnings = Warnings::default();
            warnings.push(format!("otel-injector left this {} unchanged: {e}", target.kind));
            let explanation = Explanation::skipped(Cause::Unreadable, format!("cannot read the object: {e}"));
            return Mutation::unchanged(explanation, warnings);
        }
    };
    let name = view.name.as_deref().or(view.generate_name.as_deref()).map(str::to_owned);
    Mutation { name, ..mutate_view(&view, target) }
}

/// The decision and the patch for an object already read.
fn mutate_view(view: &PodView<'_>, target: &Target<'_>) -> Mutation {
    let config = target.config;
    let mut warnings = Warnings::default();
    if let Some((cause, reason)) = left_alone(view, target) {
        return Mutation::unchanged(Explanation::skipped(cause, reason), warnings);
    }
    let decision = policy::decide(view, target.namespace, target.ns, config, &mut warnings);
    if !decision.inject {
        return Mutation::unchanged(Explanation::skipped(decision.cause, decision.reason), warnings);
    }
    if let Some(over) = over_limit::exceeded(view) {
        return over_limit(target.kind, &over, warnings);
    }
    let settings = policy::settings(view, target.ns, config, &mut warnings);
    let service = service_name::resolve(view, &settings, &mut warnings);
    let placement = placement::decide(config.sidecar.mode, target.server_version);
    let service_value = service.as_ref().map(|s| s.value.as_str());
    let delivery = agents::delivery(config.agents.delivery, target.server_version);
    let hash = status::settings_hash(&settings, config, placement.0, delivery, target.namespace, service_value);
    let previous = Status::read(view);
    let earlier = match &previous {
        None => Earlier::Nothing,
        // A Pod created with a current status was instrumented as its template (or is being reinvoked).
        Some(p) if view.kind == WorkloadKind::Pod && target.old_template.is_none() && p.hash == hash => {
            Earlier::Current(p)
        }
        Some(p) => Earlier::Stale(p),
    };
    let ours = sidecar::find(view, previous.as_ref());
    let sidecar = sidecar::plan(view, &settings, placement.clone(), previous.as_ref(), &config.sidecar.resources);
    // What an earlier admission added is renewed when its settings changed (the images and the delivery are in the
    // hash); a reinvocation, or a template edit that shapes nothing, leaves it as it is.
    let refresh = previous.as_ref().is_some_and(|p| p.hash != hash);
    let pod_agents =
        PodAgents::plan(view, &settings, config, target.server_version, previous.as_ref(), refresh, &mut warnings);
    let containers =
        Containers { settings: &settings, service: service.as_ref(), sidecar: &sidecar, ours, agents: &pod_agents };
    let mut done = match instrument_containers(view, target, &containers, &earlier) {
        Ok(done) => done,
        Err(Halted::Stopped) => {
            let reason = "the caller stopped waiting before the object was instrumented";
            return Mutation::unchanged(Explanation::skipped(Cause::Deadline, reason), warnings);
        }
        Err(Halted::PatchTooLarge) => {
            let over = format!("its patch would be over the limit of {} KiB", limits::PATCH_BYTES / 1024);
            return over_limit(target.kind, &over, warnings);
        }
    };
    done.warnings.drain(..).for_each(|w| warnings.push(w));
    let mut explanation = Explanation {
        decision,
        service_name: None,
        settings: None,
        notes: Vec::new(),
        containers: std::mem::take(&mut done.reports),
        sidecar: describe_sidecar(&sidecar, config),
        patch_ops: 0,
        hash: None,
        secret_fed: 0,
        agents_added: std::mem::take(&mut done.agents_added)
            .into_iter()
            .map(|language| (language.name, pod_agents.delivery.as_str()))
            .collect(),
    };
    if done.instrumented.is_empty() {
        return Mutation::unchanged(explanation, warnings);
    }
    let mut ops = done.ops;
    match &sidecar {
        Sidecar::Refused(why) => warnings.push(format!("otel-injector added no collector sidecar: {why}")),
        Sidecar::Add(placement, why) => {
            let completes = matches!(view.kind, WorkloadKind::Job | WorkloadKind::CronJob)
                || view.restart_policy.as_deref().is_some_and(|p| p != "Always");
            if *placement == Placement::Classic && completes {
                let fix = match config.sidecar.mode {
                    SidecarMode::Auto => why.as_str(),
                    _ => "use sidecar.mode: auto",
                };
                warnings
                    .push(format!("otel-injector: a classic sidecar never exits, so this pod never completes; {fix}"));
            }
            let path: Vec<&str> = view.base.iter().copied().chain(["spec", placement.list()]).collect();
            let exists = match placement {
                Placement::Native => view.has_init_containers,
                Placement::Classic => true,
            };
            ops.append(exists, &path, sidecar::container(view, &settings, config, target.namespace, *placement));
        }
        Sidecar::Present(placement, index) if matches!(earlier, Earlier::Stale(_)) => {
            ops.extend(sidecar::refresh(view, &settings, config, target.namespace, (*placement, *index)));
        }
        Sidecar::Off | Sidecar::Present(..) => {}
    }
    if !pod_agents.is_idle() {
        let init_exists = view.has_init_containers || matches!(sidecar, Sidecar::Add(Placement::Native, _));
        ops.extend(agents::pod_ops(view, &pod_agents, &done.active_agents, config, init_exists));
        if !done.agents.is_empty() {
            let names: Vec<&str> = done.active_agents.iter().map(|l| l.name).collect();
            explanation.notes.push(format!(
                "agents: {} by {} ({})",
                names.join(", "),
                pod_agents.delivery.as_str(),
                pod_agents.why
            ));
        }
    }

    let (service_name, service_name_from) = match service {
        Some(ServiceName { value, source }) => (Some(value), source),
        None => (None, service_name::FROM_CONTAINER.to_owned()),
    };
    explanation.service_name =
        Some((service_name.clone().unwrap_or_else(|| "<each container's name>".to_owned()), service_name_from.clone()));
    let status = Status {
        containers: done.instrumented,
        sidecar: sidecar.status(config.sidecar.mode, &placement),
        service_name,
        service_name_from,
        reason: explanation.decision.reason.clone(),
        hash,
        env: done.records,
        secret_fed: done.secret_fed,
        config_file: done.config_file,
        agent_delivery: match &earlier {
            _ if done.agents.is_empty() => None,
            Earlier::Current(p) => p.agent_delivery.clone(),
            _ => Some(pod_agents.delivery.as_str().to_owned()),
        },
        agents: done.agents,
    };
    explanation.hash = Some(status.hash.clone());
    explanation.secret_fed = status.secret_fed.len();
    let text = status.to_annotation();
    let current = matches!(earlier, Earlier::Current(_));
    let up_to_date = view.annotation(keys::STATUS) == Some(text.as_str()) || (current && ops.is_empty());
    if !up_to_date {
        let status_bytes = view.annotation(keys::STATUS).map_or(0, |v| keys::STATUS.len() + v.len());
        let others = view.annotation_bytes - status_bytes;
        if others + keys::STATUS.len() + text.len() > MAX_ANNOTATION_BYTES {
            warnings.push(format!(
                "otel-injector: {} would take the annotations over 256 KiB; instrumented without it",
                keys::STATUS
            ));
        } else {
            let parent: Vec<&str> = view.base.iter().copied().chain(["metadata", "annotations"]).collect();
            let existing = view.base.len() + usize::from(view.has_metadata) + usize::from(view.annotations.is_some());
            ops.set_member(existing, &parent, keys::STATUS, Json::str(&text));
        }
    }
    if ops.bytes() > limits::PATCH_BYTES {
        let over = format!("its patch would be over the limit of {} KiB", limits::PATCH_BYTES / 1024);
        return over_limit(target.kind, &over, warnings);
    }
    explanation.patch_ops = ops.len();
    explanation.settings = Some(settings);
    Mutation { name: None, patch: ops.into_patch(), warnings, explanation }
}

/// The answer for an object beyond one of the [`limits`]: unchanged, with a warning naming the limit.
fn over_limit(kind: WorkloadKind, over: &str, mut warnings: Warnings) -> Mutation {
    warnings.push(format!("otel-injector left this {kind} unchanged: {over}"));
    Mutation::unchanged(Explanation::skipped(Cause::OverLimit, format!("over a limit: {over}")), warnings)
}

/// Why instrumenting the containers stopped before the end.
enum Halted {
    /// The caller stopped waiting.
    Stopped,
    /// The patch outgrew [`limits::PATCH_BYTES`].
    PatchTooLarge,
}

/// Why an object the webhook could instrument must not be changed by this request, if so: a workload a controller
/// owns (its owner's template is instrumented, and mutating it makes the controller fight back), a Job's immutable
/// template, or an UPDATE that leaves the pod template alone (patching it would roll every pod for nothing).
fn left_alone(view: &PodView<'_>, target: &Target<'_>) -> Option<(Cause, String)> {
    if let Some((kind, name)) = view.controller.as_ref().filter(|_| view.kind != WorkloadKind::Pod) {
        let reason = format!("owned by {kind} {name}: the owner's template is instrumented, not this one");
        return Some((Cause::ControllerOwned, reason));
    }
    let old = target.old_template?;
    if view.kind == WorkloadKind::Job {
        return Some((Cause::JobUpdate, "a Job's pod template is immutable: an UPDATE is never patched".to_owned()));
    }
    same_json(old, view.template)
        .then(|| (Cause::TemplateUnchanged, "the UPDATE leaves the pod template unchanged".to_owned()))
}

/// Whether two JSON texts hold the same value. The API server serialises `object` and `oldObject` the same way,
/// so equal templates are equal bytes; only texts that differ are compared as values, and only when small (a large
/// template that differs in bytes is taken as changed rather than parsed whole).
fn same_json(a: &str, b: &str) -> bool {
    const COMPARE_PARSED_UP_TO: usize = 256 * 1024;
    if a == b {
        return true;
    }
    if a.len().max(b.len()) > COMPARE_PARSED_UP_TO {
        return false;
    }
    let parse = |t: &str| serde_json::from_str::<Value>(t).ok();
    parse(a).is_some_and(|a| Some(a) == parse(b))
}

/// What the object's status annotation says about earlier admissions.
enum Earlier<'a> {
    /// Never instrumented (or the status was deleted): every value present is the user's.
    Nothing,
    /// Instrumented with exactly these settings (a Pod created from its template, a reinvocation): the containers
    /// the status lists are left alone.
    Current(&'a Status),
    /// Instrumented before, perhaps with other settings or elsewhere: the webhook's own values are brought up to
    /// date, the user's are kept.
    Stale(&'a Status),
}

/// What instrumenting the app containers produced.
struct Instrumented {
    ops: Ops,
    reports: Vec<ContainerReport>,
    /// Containers instrumented now or, per a current status annotation, before.
    instrumented: Vec<String>,
    /// What the webhook set in each container, for the status.
    records: BTreeMap<String, String>,
    /// Containers instrumented that draw variables from a Secret.
    secret_fed: Vec<String>,
    /// Containers instrumented whose SDK reads a declarative configuration file.
    config_file: Vec<String>,
    /// Per container, the language agents active in it.
    agents: BTreeMap<String, Vec<String>>,
    /// Every language agent active in some container.
    active_agents: Vec<&'static Language>,
    /// The agents added now, once per container.
    agents_added: Vec<&'static Language>,
    warnings: Vec<String>,
}

impl Instrumented {
    /// Notes that these agents are active in container `name` (none: nothing to note).
    fn agents_in(&mut self, name: &str, languages: impl Iterator<Item = &'static Language>) {
        let languages: Vec<&'static Language> = languages.collect();
        if languages.is_empty() {
            return;
        }
        for language in &languages {
            if !self.active_agents.contains(language) {
                self.active_agents.push(language);
            }
        }
        self.agents.insert(name.to_owned(), languages.iter().map(|l| l.name.to_owned()).collect());
    }
}

/// What the pod-wide plan decided, for instrumenting each container.
struct Containers<'a> {
    settings: &'a Settings,
    service: Option<&'a ServiceName>,
    sidecar: &'a Sidecar,
    ours: Option<(Placement, usize)>,
    agents: &'a PodAgents,
}

/// Plans the env of every app container not skipped.
fn instrument_containers(
    view: &PodView<'_>,
    target: &Target<'_>,
    plan: &Containers<'_>,
    earlier: &Earlier<'_>,
) -> Result<Instrumented, Halted> {
    let Containers { settings, service, sidecar, ours, agents: pod_agents } = *plan;
    let (previous, current) = match earlier {
        Earlier::Nothing => (None, false),
        Earlier::Current(p) => (Some(*p), true),
        Earlier::Stale(p) => (Some(*p), false),
    };
    let config = target.config;
    let pod_vars = service.map(|s| standard_vars(settings, config, &s.value, sidecar.in_use()));
    let mut done = Instrumented {
        ops: Ops::default(),
        reports: Vec::with_capacity(view.containers.len()),
        instrumented: Vec::new(),
        records: BTreeMap::new(),
        secret_fed: Vec::new(),
        config_file: Vec::new(),
        agents: BTreeMap::new(),
        active_agents: Vec::new(),
        agents_added: Vec::new(),
        warnings: Vec::new(),
    };
    // The env lists as sent, read from the template at most once (only a plan that takes a variable back needs them).
    let raw_envs = std::cell::OnceCell::new();
    let chosen: Option<std::collections::HashSet<&str>> =
        settings.container_names.as_ref().map(|names| names.iter().map(String::as_str).collect());
    for c in &view.containers {
        if target.stop.now() {
            return Err(Halted::Stopped);
        }
        if done.ops.bytes() > limits::PATCH_BYTES {
            return Err(Halted::PatchTooLarge);
        }
        let recorded = previous.and_then(|p| p.env.get(c.name.as_ref()));
        let listed = previous.is_some_and(|p| p.containers.iter().any(|n| *n == c.name));
        let drawn = env_from::drawn(c, target.config_maps);
        let secret_skip = view.annotation(keys::ENV_FROM_SECRET).is_some_and(|v| v.trim() == "skip");
        let skip = skip_reason(c, chosen.as_ref(), config, ours, &drawn, secret_skip).or_else(|| {
            (current && listed).then(|| "already instrumented with these settings (status annotation)".to_owned())
        });
        let recorded_agents = previous.and_then(|p| p.agents.get(c.name.as_ref()));
        if let Some(reason) = skip {
            // Agents stay where an earlier admission put them until the container is instrumented again (its
            // mount needs the volume).
            if let Some(names) = recorded_agents {
                done.agents_in(&c.name, names.iter().filter_map(|n| Language::named(n)));
            }
            if current && listed {
                done.instrumented.push(c.name.to_string());
                done.records.extend(recorded.map(|r| (c.name.to_string(), r.clone())));
                if !drawn.secrets.is_empty() {
                    done.secret_fed.push(c.name.to_string());
                }
                if env::config_file(c, &drawn).is_some() {
                    done.config_file.push(c.name.to_string());
                }
            }
            done.reports.push(ContainerReport { name: c.name.to_string(), outcome: ContainerOutcome::Skipped(reason) });
            continue;
        }
        let path = patch::container(view.base, "containers", c.index);
        let agents = agents::container(c, &path, pod_agents, &drawn);
        let service_value = service.map_or(c.name.as_ref(), |s| s.value.as_str());
        let adjusted = match agents::transport(&agents, settings, sidecar.in_use()) {
            Some(Ok(adjusted)) => Some(adjusted),
            Some(Err(why)) => {
                done.warnings.push(format!("container {}: {why}", clip(&c.name)));
                None
            }
            None => None,
        };
        let own_vars;
        let vars = match (&pod_vars, &adjusted) {
            (Some(vars), None) => vars,
            (_, adjusted) => {
                own_vars =
                    standard_vars(adjusted.as_ref().unwrap_or(settings), config, service_value, sidecar.in_use());
                &own_vars
            }
        };
        let legacy_job_label = target.server_version.is_some_and(|v| v < KubeVersion::JOB_NAME_LABEL);
        let service_namespace = config.service_namespace.as_deref();
        let attrs = resource::attributes(view, target.namespace, c, settings, service_namespace, legacy_job_label);
        let previous_record = recorded.map(|r| Record::parse(r));
        let raw_env = || {
            let lists: &Vec<Vec<&serde_json::value::RawValue>> = raw_envs.get_or_init(|| view.raw_envs("containers"));
            lists.get(c.index).cloned().unwrap_or_default()
        };
        let previous = previous_record.as_ref();
        let plan = env::plan(c, raw_env, &path, vars, &attrs, resource::encode, previous, &drawn, &agents.edits);
        done.warnings.extend(env_from::warnings(c, &drawn));
        let mut notes = plan.notes;
        done.warnings.extend(agents::protocol_conflicts(c, &agents, &plan.kept));
        notes.extend(agents.notes);
        done.agents_added.extend(agents.added);
        done.warnings.extend(agents.warnings);
        done.agents_in(&c.name, agents.active.iter().copied());
        if env::config_file(c, &drawn).is_some() {
            done.config_file.push(c.name.to_string());
        }
        if let Some(secret) = drawn.secrets.first() {
            done.secret_fed.push(c.name.to_string());
            notes.push(format!("draws variables from Secret {secret}, never read: an OTEL_* there is overridden"));
        }
        done.ops.extend(plan.ops);
        done.ops.extend(agents.ops);
        done.warnings.extend(plan.warnings);
        done.instrumented.push(c.name.to_string());
        if !plan.record.is_empty() {
            done.records.insert(c.name.to_string(), plan.record.render());
        }
        let outcome = ContainerOutcome::Instrumented {
            added: plan.added,
            updated: plan.updated,
            removed: plan.removed,
            kept: plan.kept,
            notes,
        };
        done.reports.push(ContainerReport { name: c.name.to_string(), outcome });
    }
    Ok(done)
}

/// Why a container is not instrumented, if it is not.
fn skip_reason(
    c: &Container<'_>,
    chosen: Option<&std::collections::HashSet<&str>>,
    config: &Config,
    ours: Option<(Placement, usize)>,
    drawn: &env_from::Drawn,
    secret_skip: bool,
) -> Option<String> {
    if config.skip_containers.iter().any(|n| *n == c.name) {
        return Some("listed in skipContainers".to_owned());
    }
    if let Some(names) = chosen
        && !names.contains(c.name.as_ref())
    {
        return Some(format!("not listed in {}", keys::CONTAINER_NAMES));
    }
    if ours == Some((Placement::Classic, c.index)) {
        return Some("the collector sidecar".to_owned());
    }
    if let Some(reason) = env::opt_out(c, drawn) {
        return Some(format!("opted out: {reason}"));
    }
    if let Some(secret) = drawn.secrets.first().filter(|_| secret_skip) {
        return Some(format!("draws variables from Secret {secret} ({}: skip)", keys::ENV_FROM_SECRET));
    }
    None
}

/// The literal variables of [`vars::VARS`] in canonical order, with their final values (a variable without one is
/// not set). With a sidecar, applications export to it on localhost; the sidecar adds the tenant header and does the
/// sampling.
fn standard_vars(
    settings: &Settings,
    config: &Config,
    service_name: &str,
    sidecar: bool,
) -> Vec<(&'static str, String)> {
    let value = |source: Source| match source {
        Source::ServiceName => Some(env::escape(service_name).into_owned()),
        Source::Endpoint if sidecar => Some(sidecar::local_endpoint(settings.protocol.value).to_owned()),
        Source::Endpoint => Some(env::escape(&settings.endpoint.value).into_owned()),
        Source::Protocol | Source::SignalProtocol(_) => Some(settings.protocol.value.as_str().to_owned()),
        Source::Headers | Source::SignalHeaders(_) if sidecar || config.headers.is_empty() => None,
        Source::Headers | Source::SignalHeaders(_) => {
            let headers: Vec<String> =
                config.headers.iter().map(|(k, v)| format!("{k}={}", resource::encode(v))).collect();
            Some(env::escape(&headers.join(",")).into_owned())
        }
        Source::Exporter(signal) => {
            Some(if settings.signals.value.contains(&signal) { "otlp" } else { "none" }.to_owned())
        }
        Source::Sampler => Some("parentbased_traceidratio".to_owned()),
        Source::SamplerArg => Some(syntax::format_ratio(if sidecar { 1.0 } else { settings.sampling_ratio.value })),
        Source::Propagators => Some(settings.propagators.value.join(",")),
        Source::MergedAttributes => None,
    };
    vars::literals().filter_map(|var| Some((var.name, value(var.source)?))).collect()
}

/// The sidecar line of the explanation.
fn describe_sidecar(sidecar: &Sidecar, config: &Config) -> String {
    match sidecar {
        Sidecar::Off => "not requested".to_owned(),
        Sidecar::Present(p, _) => format!("already present ({})", p.as_str()),
        Sidecar::Add(placement, why) => {
            let place = match placement {
                Placement::Native => "a native sidecar (initContainers, restartPolicy: Always)",
                Placement::Classic => "a classic sidecar (containers)",
            };
            format!("added as {place}, because {why}; it exports to {}", config.sidecar.exporter_endpoint)
        }
        Sidecar::Refused(why) => format!("refused: {why}"),
    }
}

#[cfg(test)]
mod tests;
