//! The injection engine: a raw object and its context in; a JSON Patch, warnings and an explanation out.
//!
//! Pure: no I/O, no clock, no globals. The webhook, `preview` and the benches all call [`mutate`].

pub mod collector;
pub mod env;
pub mod resource;
pub mod service_name;
pub mod sidecar;
pub mod status;

use json_patch::Patch;
use serde_json::Value;

use crate::engine::config::{Config, SidecarMode};
use crate::engine::object::{Container, PodView};
use crate::engine::patch::{self, Ops};
use crate::engine::policy::{self, NamespaceMeta, Settings, keys};
use crate::engine::report::{ContainerOutcome, ContainerReport, Explanation};
use crate::engine::values::KubeVersion;
use crate::engine::values::Signal;
use crate::engine::warnings::Warnings;
use crate::engine::workload::WorkloadKind;
use service_name::ServiceName;
use sidecar::{Placement, Sidecar};
use status::Status;

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
    /// The API server's version, when known (decides `sidecar.mode: auto`).
    pub server_version: Option<KubeVersion>,
}

/// The engine's answer for one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The operations to apply (empty when there is nothing to change).
    pub patch: Patch,
    /// What the user should hear about.
    pub warnings: Warnings,
    /// The decision and what was done, for `--explain`, logs and spans.
    pub explanation: Explanation,
}

impl Mutation {
    fn unchanged(explanation: Explanation, warnings: Warnings) -> Self {
        Self { patch: Patch(Vec::new()), warnings, explanation }
    }
}

/// Decides whether and how to instrument `object`, and returns the patch that does it.
pub fn mutate(object: &Value, target: &Target<'_>) -> Mutation {
    let config = target.config;
    let mut warnings = Warnings::default();
    let view = match PodView::read(object, target.kind) {
        Ok(view) => view,
        Err(e) => {
            warnings.push(format!("otel-injector left this {} unchanged: {e}", target.kind));
            return Mutation::unchanged(Explanation::skipped(format!("cannot read the object: {e}")), warnings);
        }
    };
    let decision = policy::decide(&view, target.namespace, target.ns, config, &mut warnings);
    if !decision.inject {
        return Mutation::unchanged(Explanation::skipped(decision.reason), warnings);
    }
    let settings = policy::settings(&view, target.ns, config, &mut warnings);
    let placement = sidecar::placement(config.sidecar.mode, target.server_version);
    let hash = status::settings_hash(&settings, config, placement.0);
    let previous = Status::read(&view).filter(|s| s.hash == hash);
    let service = service_name::resolve(&view, &settings);
    let sidecar = sidecar::plan(&view, &settings, placement);
    let done = instrument_containers(&view, target, &settings, service.as_ref(), sidecar.in_use(), previous.as_ref());
    done.warnings.into_iter().for_each(|w| warnings.push(w));
    let mut ops = done.ops;
    let mut explanation = Explanation {
        decision,
        service_name: None,
        settings: None,
        notes: Vec::new(),
        containers: done.reports,
        sidecar: describe_sidecar(&sidecar, config),
        patch_ops: 0,
        hash: None,
    };
    if done.instrumented.is_empty() {
        return Mutation::unchanged(explanation, warnings);
    }
    match &sidecar {
        Sidecar::Refused(why) => warnings.push(format!("otel-injector added no collector sidecar: {why}")),
        Sidecar::Add(placement, why) => {
            let completes = matches!(view.kind, WorkloadKind::Job | WorkloadKind::CronJob)
                || view.restart_policy.is_some_and(|p| p != "Always");
            if *placement == Placement::Classic && completes {
                let fix = match config.sidecar.mode {
                    SidecarMode::Auto => why.as_str(),
                    _ => "use sidecar.mode: auto",
                };
                warnings
                    .push(format!("otel-injector: a classic sidecar never exits, so this pod never completes; {fix}"));
            }
            let list = match placement {
                Placement::Native => "initContainers",
                Placement::Classic => "containers",
            };
            let path: Vec<&str> = view.base.iter().copied().chain(["spec", list]).collect();
            ops.append(object, &path, sidecar::container(&view, &settings, config, target.namespace, *placement));
        }
        Sidecar::Off | Sidecar::Present(_) => {}
    }

    let (service_name, service_name_from) = match service {
        Some(ServiceName { value, source }) => (Some(value), source),
        None => (None, service_name::FROM_CONTAINER.to_owned()),
    };
    explanation.service_name =
        Some((service_name.clone().unwrap_or_else(|| "<each container's name>".to_owned()), service_name_from.clone()));
    let status = Status {
        containers: done.instrumented,
        sidecar: sidecar.status(config.sidecar.mode),
        service_name,
        service_name_from,
        reason: explanation.decision.reason.clone(),
        hash,
    };
    explanation.hash = Some(status.hash.clone());
    let text = status.to_annotation();
    let up_to_date = view.annotation(keys::STATUS) == Some(text.as_str()) || (previous.is_some() && ops.is_empty());
    if !up_to_date {
        let parent: Vec<&str> = view.base.iter().copied().chain(["metadata", "annotations"]).collect();
        ops.set_member(object, &parent, keys::STATUS, Value::String(text));
    }
    explanation.patch_ops = ops.len();
    explanation.settings = Some(settings);
    Mutation { patch: ops.into_patch(), warnings, explanation }
}

/// What instrumenting the app containers produced.
struct Instrumented {
    ops: Ops,
    reports: Vec<ContainerReport>,
    /// Containers instrumented now or, per a current status annotation, before.
    instrumented: Vec<String>,
    warnings: Vec<String>,
}

/// Plans the env of every app container not skipped.
fn instrument_containers(
    view: &PodView<'_>,
    target: &Target<'_>,
    settings: &Settings,
    service: Option<&ServiceName>,
    sidecar: bool,
    previous: Option<&Status>,
) -> Instrumented {
    let config = target.config;
    let pod_vars = service.map(|s| standard_vars(settings, config, &s.value, sidecar));
    let mut done = Instrumented {
        ops: Ops::default(),
        reports: Vec::with_capacity(view.containers.len()),
        instrumented: Vec::new(),
        warnings: Vec::new(),
    };
    for c in &view.containers {
        if let Some(reason) = skip_reason(c, settings, config, previous) {
            if previous.is_some_and(|p| p.containers.iter().any(|n| n == c.name)) {
                done.instrumented.push(c.name.to_owned());
            }
            done.reports.push(ContainerReport { name: c.name.to_owned(), outcome: ContainerOutcome::Skipped(reason) });
            continue;
        }
        let own_vars;
        let vars = match &pod_vars {
            Some(vars) => vars,
            None => {
                own_vars = standard_vars(settings, config, c.name, sidecar);
                &own_vars
            }
        };
        let attrs = resource::attributes(view, target.namespace, c, settings, config.service_namespace.as_deref());
        let plan = env::plan(c, &patch::container(view.base, "containers", c.index), vars, &attrs, resource::encode);
        done.ops.extend(plan.ops);
        done.warnings.extend(plan.warnings);
        done.instrumented.push(c.name.to_owned());
        let outcome = ContainerOutcome::Instrumented { added: plan.added, kept: plan.kept, notes: plan.notes };
        done.reports.push(ContainerReport { name: c.name.to_owned(), outcome });
    }
    done
}

/// Why a container is not instrumented, if it is not.
fn skip_reason(c: &Container<'_>, settings: &Settings, config: &Config, previous: Option<&Status>) -> Option<String> {
    if config.skip_containers.iter().any(|n| n == c.name) {
        return Some("listed in skipContainers".to_owned());
    }
    if let Some(names) = &settings.container_names
        && !names.iter().any(|n| n == c.name)
    {
        return Some(format!("not listed in {}", keys::CONTAINER_NAMES));
    }
    if sidecar::is_ours(c) {
        return Some("the collector sidecar".to_owned());
    }
    if let Some(reason) = env::opt_out(c) {
        return Some(format!("opted out: {reason}"));
    }
    if previous.is_some_and(|p| p.containers.iter().any(|n| n == c.name)) {
        return Some("already instrumented with these settings (status annotation)".to_owned());
    }
    None
}

/// The standard variables of SPEC §4 in canonical order, with their final values. With a sidecar, applications
/// export to it on localhost; the sidecar adds the tenant header and does the sampling.
fn standard_vars(
    settings: &Settings,
    config: &Config,
    service_name: &str,
    sidecar: bool,
) -> Vec<(&'static str, String)> {
    let protocol = settings.protocol.value;
    let endpoint =
        if sidecar { sidecar::local_endpoint(protocol).to_owned() } else { env::escape(&settings.endpoint.value) };
    let mut vars = vec![
        ("OTEL_SERVICE_NAME", env::escape(service_name)),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.as_str().to_owned()),
    ];
    if !config.headers.is_empty() && !sidecar {
        let headers: Vec<String> = config.headers.iter().map(|(k, v)| format!("{k}={}", resource::encode(v))).collect();
        vars.push(("OTEL_EXPORTER_OTLP_HEADERS", env::escape(&headers.join(","))));
    }
    for signal in Signal::ALL {
        let exporter = if settings.signals.value.contains(&signal) { "otlp" } else { "none" };
        let name = match signal {
            Signal::Traces => "OTEL_TRACES_EXPORTER",
            Signal::Metrics => "OTEL_METRICS_EXPORTER",
            Signal::Logs => "OTEL_LOGS_EXPORTER",
        };
        vars.push((name, exporter.to_owned()));
    }
    vars.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()));
    let ratio = if sidecar { 1.0 } else { settings.sampling_ratio.value };
    vars.push(("OTEL_TRACES_SAMPLER_ARG", ratio.to_string()));
    vars.push(("OTEL_PROPAGATORS", settings.propagators.value.join(",")));
    vars
}

/// The sidecar line of the explanation.
fn describe_sidecar(sidecar: &Sidecar, config: &Config) -> String {
    match sidecar {
        Sidecar::Off => "not requested".to_owned(),
        Sidecar::Present(p) => format!("already present ({})", p.as_str()),
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
