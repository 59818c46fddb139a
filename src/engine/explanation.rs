//! The explanation of the engine's decision: per object and container, what was done and why.

use std::fmt;

use crate::engine::policy::{Cause, Decision, Settings};

/// What happened to one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerOutcome {
    /// Instrumented: the variables added, brought up to date or taken back, those the user had set, and remarks.
    Instrumented {
        /// Variables added.
        added: Vec<&'static str>,
        /// The webhook's own variables, brought up to date.
        updated: Vec<&'static str>,
        /// The webhook's own variables, no longer wanted and removed.
        removed: Vec<&'static str>,
        /// Variables left as the user set them.
        kept: Vec<&'static str>,
        /// Anything else worth saying (attributes not merged, …).
        notes: Vec<String>,
    },
    /// Left alone, and why.
    Skipped(String),
}

/// One container's line in the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerReport {
    /// The container name.
    pub name: String,
    /// What was done.
    pub outcome: ContainerOutcome,
}

/// The engine's account of one object: the decision, per-container outcomes, the sidecar, the patch size.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Whether the object is instrumented and why.
    pub decision: Decision,
    /// `service.name` and the rule that chose it, when instrumented.
    pub service_name: Option<(String, String)>,
    /// Settings in force, when instrumented; rendered with their origin only when displayed.
    pub settings: Option<Settings>,
    /// Remarks about the object as a whole.
    pub notes: Vec<String>,
    /// Per-container outcomes.
    pub containers: Vec<ContainerReport>,
    /// What happened about the collector sidecar.
    pub sidecar: String,
    /// Number of JSON Patch operations returned.
    pub patch_ops: usize,
    /// The settings hash of the status annotation, when instrumented (what `audit` compares).
    pub hash: Option<String>,
    /// Containers instrumented although they draw variables from a Secret the webhook never reads.
    pub secret_fed: usize,
    /// Language agents added by this admission, one entry per container: (language, delivery).
    pub agents_added: Vec<(&'static str, &'static str)>,
}

impl Explanation {
    /// An explanation for an object left alone.
    pub fn skipped(cause: Cause, reason: impl Into<String>) -> Self {
        Self {
            decision: Decision { inject: false, reason: reason.into(), cause },
            service_name: None,
            settings: None,
            notes: Vec::new(),
            containers: Vec::new(),
            sidecar: "not considered".to_owned(),
            patch_ops: 0,
            hash: None,
            secret_fed: 0,
            agents_added: Vec::new(),
        }
    }

    /// Names of the containers that were instrumented.
    pub fn instrumented(&self) -> impl Iterator<Item = &str> {
        self.containers
            .iter()
            .filter(|c| matches!(c.outcome, ContainerOutcome::Instrumented { .. }))
            .map(|c| c.name.as_str())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.decision.inject { "instrument" } else { "skip" };
        writeln!(f, "  decision: {verdict} ({})", self.decision.reason)?;
        if let Some((name, source)) = &self.service_name {
            writeln!(f, "  service.name: {name} (from {source})")?;
        }
        if let Some(s) = &self.settings {
            let signals: Vec<&str> = s.signals.value.iter().map(|s| s.as_str()).collect();
            writeln!(f, "  endpoint = {} ({})", s.endpoint.value, s.endpoint.origin)?;
            writeln!(f, "  protocol = {} ({})", s.protocol.value, s.protocol.origin)?;
            writeln!(f, "  sampling ratio = {} ({})", s.sampling_ratio.value, s.sampling_ratio.origin)?;
            writeln!(f, "  propagators = {} ({})", s.propagators.value.join(","), s.propagators.origin)?;
            writeln!(f, "  signals = {} ({})", signals.join(","), s.signals.origin)?;
            if !s.attributes.is_empty() {
                let attrs: Vec<String> = s.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(f, "  extra resource attributes = {}", attrs.join(","))?;
            }
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        for c in &self.containers {
            match &c.outcome {
                ContainerOutcome::Instrumented { added, updated, removed, kept, notes } => {
                    let added = if added.is_empty() { "nothing".to_owned() } else { added.join(", ") };
                    writeln!(f, "  container {}: instrumented; added {added}", c.name)?;
                    if !updated.is_empty() {
                        writeln!(f, "    brought the webhook's {} up to date", updated.join(", "))?;
                    }
                    if !removed.is_empty() {
                        writeln!(f, "    took back the webhook's {}", removed.join(", "))?;
                    }
                    if !kept.is_empty() {
                        writeln!(f, "    kept the user's {}", kept.join(", "))?;
                    }
                    for note in notes {
                        writeln!(f, "    note: {note}")?;
                    }
                }
                ContainerOutcome::Skipped(why) => writeln!(f, "  container {}: skipped ({why})", c.name)?,
            }
        }
        if self.decision.inject {
            writeln!(f, "  sidecar: {}", self.sidecar)?;
        }
        writeln!(f, "  patch: {} operation(s)", self.patch_ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_renders_every_part() {
        let e = Explanation {
            decision: Decision {
                inject: true,
                reason: "annotation otel-injector.io/inject=true".into(),
                cause: Cause::Setting(crate::engine::policy::Origin::Annotation),
            },
            service_name: Some(("shop".into(), "label app.kubernetes.io/name".into())),
            settings: None,
            notes: vec!["about the object".into()],
            containers: vec![
                ContainerReport {
                    name: "app".into(),
                    outcome: ContainerOutcome::Instrumented {
                        added: vec!["OTEL_SERVICE_NAME"],
                        updated: vec!["OTEL_TRACES_SAMPLER_ARG"],
                        removed: vec!["OTEL_EXPORTER_OTLP_HEADERS"],
                        kept: vec!["OTEL_PROPAGATORS"],
                        notes: vec!["n".into()],
                    },
                },
                ContainerReport {
                    name: "istio-proxy".into(),
                    outcome: ContainerOutcome::Skipped("skipContainers".into()),
                },
            ],
            sidecar: "not requested".into(),
            patch_ops: 3,
            hash: None,
            secret_fed: 0,
            agents_added: Vec::new(),
        };
        let text = e.to_string();
        for needle in [
            "decision: instrument (annotation otel-injector.io/inject=true)",
            "service.name: shop (from label app.kubernetes.io/name)",
            "note: about the object",
            "container app: instrumented; added OTEL_SERVICE_NAME",
            "kept the user's OTEL_PROPAGATORS",
            "brought the webhook's OTEL_TRACES_SAMPLER_ARG up to date",
            "took back the webhook's OTEL_EXPORTER_OTLP_HEADERS",
            "note: n",
            "container istio-proxy: skipped (skipContainers)",
            "sidecar: not requested",
            "patch: 3 operation(s)",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert_eq!(e.instrumented().collect::<Vec<_>>(), ["app"]);
    }
}
