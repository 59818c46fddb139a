//! `audit`'s judgement of one stored object: does its instrumentation match what the current config and namespace
//! policy give? Pure: the object and its context in, a finding (or none) out.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::engine::inject::status::Status;
use crate::engine::inject::{Target, mutate_json};
use crate::engine::pod_view::PodView;
use crate::engine::policy::Cause;

/// What is wrong with an object's instrumentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Policy says instrument, but the webhook never did (created while it was down, or before an opt-in).
    NotInstrumented,
    /// Instrumented, but policy now says no.
    NoLongerWanted,
    /// Instrumented with settings other than what the current config and namespace policy give.
    Drift,
}

impl Finding {
    /// The kebab-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotInstrumented => "not-instrumented",
            Self::NoLongerWanted => "no-longer-wanted",
            Self::Drift => "drift",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding and the detail that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assessment {
    /// What is wrong.
    pub finding: Finding,
    /// Why, in a few words (the policy's reason, or the two hashes).
    pub detail: String,
}

/// Compares the object's `otel-injector.io/status` with what the engine would do to it now.
pub(crate) fn assess(object: &Value, target: &Target<'_>) -> Option<Assessment> {
    let json = object.to_string();
    let recorded = PodView::parse(&json, target.kind).ok().and_then(|view| Status::read(&view));
    let mutation = mutate_json(&json, target);
    let explanation = &mutation.explanation;
    let decision = &explanation.decision;
    if decision.cause == Cause::ControllerOwned {
        // A ReplicaSet of a Deployment, a Job of a CronJob: its template is its owner's copy (status included), and
        // the owner and the pods are what is judged.
        return None;
    }
    let found = |finding, detail: String| Some(Assessment { finding, detail });
    match (decision.inject, recorded, &explanation.hash) {
        (true, None, Some(_)) => found(Finding::NotInstrumented, format!("policy: {}", decision.reason)),
        (false, Some(_), _) => found(Finding::NoLongerWanted, format!("policy: {}", decision.reason)),
        (true, Some(status), Some(hash)) if status.hash != *hash => {
            found(Finding::Drift, format!("settings hash {} recorded, {hash} now", status.hash))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::{Config, DefaultMode};
    use crate::engine::inject::mutate;
    use crate::engine::keys;
    use crate::engine::policy::NamespaceMeta;
    use crate::engine::workload::WorkloadKind;
    use crate::testing::fixtures::{container, pod};

    fn target<'a>(config: &'a Config, ns: &'a NamespaceMeta) -> Target<'a> {
        Target::new(WorkloadKind::Pod, "shop", ns, config)
    }

    fn instrumented(config: &Config) -> Value {
        let object = pod("web").container(container("app")).build();
        let ns = NamespaceMeta::default();
        let mut out = object.clone();
        json_patch::patch(&mut out, &mutate(&object, &target(config, &ns)).patch.to_json_patch()).expect("applies");
        out
    }

    #[test]
    fn each_finding() {
        let inject = Config { default: DefaultMode::Inject, ..Config::default() };
        let skip = Config::default();
        let ns = NamespaceMeta::default();
        let plain = pod("web").container(container("app")).build();

        let a = assess(&plain, &target(&inject, &ns)).expect("finding");
        assert_eq!((a.finding, a.detail.as_str()), (Finding::NotInstrumented, "policy: cluster default (inject)"));
        assert_eq!(assess(&plain, &target(&skip, &ns)), None, "not wanted, not done");

        let done = instrumented(&inject);
        assert_eq!(assess(&done, &target(&inject, &ns)), None, "up to date");
        assert_eq!(assess(&done, &target(&skip, &ns)).map(|a| a.finding), Some(Finding::NoLongerWanted));
        let opted_out = NamespaceMeta { annotations: [(keys::INJECT.into(), "false".into())].into(), ..ns.clone() };
        assert_eq!(assess(&done, &target(&inject, &opted_out)).map(|a| a.finding), Some(Finding::NoLongerWanted));

        // A ReplicaSet its Deployment made carries the Deployment's instrumented template: not a finding of its own.
        let deployment = pod("").container(container("app")).template_of("Deployment", "web");
        let config = Config { workloads: WorkloadKind::ALL.to_vec(), ..inject.clone() };
        let deployment_target = Target::new(WorkloadKind::Deployment, "shop", &ns, &config);
        let mut done_deployment = deployment.clone();
        let patch = mutate(&deployment, &deployment_target).patch.to_json_patch();
        json_patch::patch(&mut done_deployment, &patch).expect("applies");
        let mut replica_set = done_deployment.clone();
        replica_set["kind"] = "ReplicaSet".into();
        replica_set["metadata"] = serde_json::json!({"name": "web-5d8", "ownerReferences":
            [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "1", "controller": true}]});
        let rs_target = Target::new(WorkloadKind::ReplicaSet, "shop", &ns, &config);
        assert_eq!(assess(&replica_set, &rs_target), None, "the owner's copy");

        let changed = Config { sampling_ratio: 0.5, ..inject.clone() };
        let a = assess(&done, &target(&changed, &ns)).expect("drift");
        assert_eq!(a.finding, Finding::Drift);
        assert!(a.detail.starts_with("settings hash "), "{}", a.detail);
    }
}
