//! `service.name` without API calls: annotation > `app.kubernetes.io/name` > owning workload > pod name or
//! `generateName` stem > container name (SPEC §4).

use crate::engine::keys;
use crate::engine::limits;
use crate::engine::pod_view::{PodView, stem};
use crate::engine::policy::Settings;
use crate::engine::warnings::Warnings;
use crate::engine::workload::WorkloadKind;

/// A pod-wide `service.name` and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    /// The name.
    pub value: String,
    /// The rule, e.g. `label app.kubernetes.io/name` or `Deployment name`.
    pub source: String,
}

/// The rule recorded when each container is named after itself.
pub(crate) const FROM_CONTAINER: &str = "container name";

/// The pod-wide `service.name`, or `None` when only container names are left (each container gets its own). A
/// candidate over [`limits::VALUE_CHARS`] is passed over, with a warning.
pub fn resolve(view: &PodView<'_>, settings: &Settings, warnings: &mut Warnings) -> Option<ServiceName> {
    let mut found = |value: &str, source: &dyn Fn() -> String| {
        if limits::value_fits(value) {
            return Some(ServiceName { value: value.to_owned(), source: source() });
        }
        warnings.push(format!("service.name from {} not used: over {} characters", source(), limits::VALUE_CHARS));
        None
    };
    if let Some(name) = &settings.service_name
        && let Some(found) = found(name, &|| format!("annotation {}", keys::SERVICE_NAME))
    {
        return Some(found);
    }
    if let Some(name) = view.label("app.kubernetes.io/name").filter(|n| !n.trim().is_empty())
        && let Some(found) = found(name, &|| "label app.kubernetes.io/name".to_owned())
    {
        return Some(found);
    }
    if let Some((kind, name)) = view.owners.primary()
        && let Some(found) = found(name, &|| format!("{kind} name"))
    {
        return Some(found);
    }
    if view.kind == WorkloadKind::Pod {
        if let Some(name) = view.name.as_deref().filter(|n| !n.is_empty())
            && let Some(found) = found(name, &|| "pod name".to_owned())
        {
            return Some(found);
        }
        if let Some(stem) = view.generate_name.as_deref().map(stem).filter(|s| !s.is_empty())
            && let Some(found) = found(stem, &|| "generateName".to_owned())
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Config;
    use crate::engine::policy::{self, NamespaceMeta};
    use crate::engine::warnings::Warnings;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn resolve_for(object: Value, kind: WorkloadKind) -> Option<(String, String)> {
        let json = object.to_string();
        let view = PodView::parse(&json, kind).expect("valid");
        let settings = policy::settings(&view, &NamespaceMeta::default(), &Config::default(), &mut Warnings::default());
        resolve(&view, &settings, &mut Warnings::default()).map(|s| (s.value, s.source))
    }

    fn pod(metadata: Value) -> Value {
        json!({"metadata": metadata, "spec": {"containers": [{"name": "app"}]}})
    }

    #[rstest]
    #[case::annotation(
        json!({"name": "p", "annotations": {"otel-injector.io/service-name": "checkout"}, "labels": {"app.kubernetes.io/name": "l"}}),
        Some(("checkout", "annotation otel-injector.io/service-name")))]
    #[case::label(
        json!({"name": "p", "labels": {"app.kubernetes.io/name": "cart"},
               "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": true}]}),
        Some(("cart", "label app.kubernetes.io/name")))]
    #[case::deployment(
        json!({"generateName": "web-66b-", "labels": {"pod-template-hash": "66b"},
               "ownerReferences": [{"kind": "ReplicaSet", "name": "web-66b", "controller": true}]}),
        Some(("web", "Deployment name")))]
    #[case::rollout(
        json!({"labels": {"rollouts-pod-template-hash": "77c"},
               "ownerReferences": [{"kind": "ReplicaSet", "name": "canary-77c", "controller": true}]}),
        Some(("canary", "Rollout name")))]
    #[case::cronjob(
        json!({"ownerReferences": [{"kind": "Job", "name": "report-28999440", "controller": true}]}),
        Some(("report", "CronJob name")))]
    #[case::job(json!({"ownerReferences": [{"kind": "Job", "name": "pi", "controller": true}]}), Some(("pi", "Job name")))]
    #[case::statefulset(json!({"ownerReferences": [{"kind": "StatefulSet", "name": "db"}]}), Some(("db", "StatefulSet name")))]
    #[case::daemonset(json!({"ownerReferences": [{"kind": "DaemonSet", "name": "agent"}]}), Some(("agent", "DaemonSet name")))]
    #[case::pod_name(json!({"name": "debug"}), Some(("debug", "pod name")))]
    #[case::generate_name(json!({"generateName": "worker-"}), Some(("worker", "generateName")))]
    #[case::unknown_owner(json!({"name": "p", "ownerReferences": [{"kind": "Bar", "name": "b"}]}), Some(("p", "pod name")))]
    #[case::nothing(json!({}), None)]
    fn pod_rules(#[case] metadata: Value, #[case] want: Option<(&str, &str)>) {
        let want = want.map(|(v, s)| (v.to_owned(), s.to_owned()));
        assert_eq!(resolve_for(pod(metadata), WorkloadKind::Pod), want);
    }

    #[test]
    fn templates_use_the_workload_and_never_its_metadata_as_a_pod_name() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(resolve_for(d, WorkloadKind::Deployment), Some(("web".into(), "Deployment name".into())));
        let nameless = json!({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(resolve_for(nameless, WorkloadKind::Deployment), None);
        let labelled = json!({"metadata": {"name": "web"}, "spec": {"template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "storefront"}}, "spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(resolve_for(labelled, WorkloadKind::Deployment).map(|s| s.0), Some("storefront".into()));
    }
}
