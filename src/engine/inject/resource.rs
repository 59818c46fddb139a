//! Resource attributes for one container (SPEC §5), and the percent-encoding OTel environment values use.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::env::{AttrValue, Helper};
use crate::engine::pod_view::{Container, PodView};
use crate::engine::policy::Settings;
use crate::engine::workload::WorkloadKind;

/// Characters encoded in `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` values: everything outside the
/// W3C baggage octets, plus `%` (so values decode) and `=` (the OTel spec requires it).
const ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%').add(b',').add(b';').add(b'=').add(b'\\');

/// Percent-encodes a value for an OTel `key=value,…` list.
pub fn encode(value: &str) -> Cow<'_, str> {
    utf8_percent_encode(value, ENCODED).into()
}

/// The tag of an image reference (`repo/name:tag@digest` → `tag`), if it has one.
pub(crate) fn image_tag(image: &str) -> Option<&str> {
    let name = image.split('@').next()?;
    let (_, tag) = name.rsplit('/').next()?.rsplit_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

/// Every attribute wanted for `container`, in a stable order: Kubernetes attributes, workload names,
/// `service.version`, `service.namespace`, then the configured and annotated ones (which override the derived
/// ones of the same key).
pub fn attributes<'a>(
    view: &'a PodView<'_>,
    namespace: &'a str,
    container: &'a Container<'_>,
    settings: &'a Settings,
    service_namespace: Option<&'a str>,
    legacy_job_label: bool,
) -> Vec<(&'a str, AttrValue<'a>)> {
    let literal = |k: &'a str, v: &'a str| (k, AttrValue::Literal(v));
    let helper = |k: &'a str, h: Helper| (k, AttrValue::Helper(h));
    let mut attrs = Vec::with_capacity(10 + settings.attributes.len());
    attrs.extend([
        literal("k8s.namespace.name", namespace),
        helper("k8s.pod.name", Helper::PodName),
        helper("k8s.pod.uid", Helper::PodUid),
        helper("k8s.node.name", Helper::NodeName),
        literal("k8s.container.name", &container.name),
    ]);
    attrs.extend(view.owners.attributes().map(|(k, v)| literal(k, v)));
    // A template cannot know the names its controller gives: the kubelet reads them from the pod's labels.
    let owners = &view.owners;
    if let (Some(deployment), None) = (owners.deployment.as_deref(), owners.replicaset.as_deref())
        && view.kind == WorkloadKind::Deployment
    {
        attrs.push(("k8s.replicaset.name", AttrValue::Suffixed(deployment, Helper::PodTemplateHash)));
    }
    if owners.job.is_none() && view.kind == WorkloadKind::CronJob {
        let job = if legacy_job_label { Helper::LegacyJobName } else { Helper::JobName };
        attrs.push(helper("k8s.job.name", job));
    }
    let version = view.label("app.kubernetes.io/version").or_else(|| container.image.as_deref().and_then(image_tag));
    attrs.extend(version.map(|v| literal("service.version", v)));
    attrs.extend(service_namespace.map(|ns| literal("service.namespace", ns)));

    for (key, value) in &settings.attributes {
        match attrs.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = AttrValue::Literal(value),
            None => attrs.push(literal(key, value)),
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Config;
    use crate::engine::policy::{self, NamespaceMeta};
    use crate::engine::warnings::Warnings;
    use crate::engine::workload::WorkloadKind;
    use rstest::rstest;
    use serde_json::{Value, json};

    #[rstest]
    #[case("plain", "plain")]
    #[case("a,b=c", "a%2Cb%3Dc")]
    #[case("with space", "with%20space")]
    #[case("100%", "100%25")]
    #[case("q\"x;y\\z", "q%22x%3By%5Cz")]
    #[case("zürich", "z%C3%BCrich")]
    #[case("http://x:1/p?q", "http://x:1/p?q")]
    fn values_are_percent_encoded(#[case] raw: &str, #[case] want: &str) {
        assert_eq!(encode(raw), want);
    }

    #[rstest]
    #[case("nginx", None)]
    #[case("nginx:1.27", Some("1.27"))]
    #[case("nginx:latest", Some("latest"))]
    #[case("registry:5000/team/app", None)]
    #[case("registry:5000/team/app:v2", Some("v2"))]
    #[case("ghcr.io/open-telemetry/demo:3.0.0-accounting", Some("3.0.0-accounting"))]
    #[case("app@sha256:abc", None)]
    #[case("app:v1@sha256:abc", Some("v1"))]
    fn image_tags(#[case] image: &str, #[case] want: Option<&str>) {
        assert_eq!(image_tag(image), want);
    }

    /// The attributes of the first container, helpers written as `$(HELPER)`.
    fn attrs_of(pod: &Value, kind: WorkloadKind, config: &Config) -> Vec<(String, String)> {
        let json = pod.to_string();
        let view = PodView::parse(&json, kind).expect("valid");
        let settings = policy::settings(&view, &NamespaceMeta::default(), config, &mut Warnings::default());
        let attrs =
            attributes(&view, "shop", &view.containers[0], &settings, config.service_namespace.as_deref(), false);
        attrs
            .into_iter()
            .map(|(k, v)| match v {
                AttrValue::Literal(s) => (k.to_owned(), s.to_owned()),
                AttrValue::Helper(h) => (k.to_owned(), format!("$({})", h.var())),
                AttrValue::Suffixed(name, h) => (k.to_owned(), format!("{name}-$({})", h.var())),
            })
            .collect()
    }

    fn literal(attrs: &[(String, String)], key: &str) -> Option<String> {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn kubernetes_attributes_of_a_replicaset_pod() {
        let pod = json!({"metadata": {"generateName": "web-5f7-", "labels": {"pod-template-hash": "5f7"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5f7", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "shop/web:2.1"}]}});
        let attrs = attrs_of(&pod, WorkloadKind::Pod, &Config::default());
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "k8s.namespace.name",
                "k8s.pod.name",
                "k8s.pod.uid",
                "k8s.node.name",
                "k8s.container.name",
                "k8s.deployment.name",
                "k8s.replicaset.name",
                "service.version",
            ]
        );
        assert_eq!(literal(&attrs, "k8s.namespace.name").as_deref(), Some("shop"));
        assert_eq!(literal(&attrs, "k8s.pod.name").as_deref(), Some("$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)"));
        assert_eq!(literal(&attrs, "k8s.pod.uid").as_deref(), Some("$(OTEL_RESOURCE_ATTRIBUTES_POD_UID)"));
        assert_eq!(literal(&attrs, "k8s.node.name").as_deref(), Some("$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)"));
        assert_eq!(literal(&attrs, "k8s.container.name").as_deref(), Some("app"));
        assert_eq!(literal(&attrs, "k8s.deployment.name").as_deref(), Some("web"));
        assert_eq!(literal(&attrs, "k8s.replicaset.name").as_deref(), Some("web-5f7"));
        assert_eq!(literal(&attrs, "service.version").as_deref(), Some("2.1"));
    }

    #[rstest]
    #[case(WorkloadKind::StatefulSet, "k8s.statefulset.name")]
    #[case(WorkloadKind::DaemonSet, "k8s.daemonset.name")]
    #[case(WorkloadKind::Job, "k8s.job.name")]
    #[case(WorkloadKind::Deployment, "k8s.deployment.name")]
    #[case(WorkloadKind::ReplicaSet, "k8s.replicaset.name")]
    fn workload_templates_carry_their_own_name(#[case] kind: WorkloadKind, #[case] key: &str) {
        let obj = json!({"metadata": {"name": "w"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(literal(&attrs_of(&obj, kind, &Config::default()), key).as_deref(), Some("w"));
    }

    #[test]
    fn version_label_beats_image_tag_and_config_and_annotations_override() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app.kubernetes.io/version": "9.9"},
            "annotations": {"resource.opentelemetry.io/k8s.cluster.name": "blue", "resource.opentelemetry.io/service.version": "pinned"}},
            "spec": {"containers": [{"name": "app", "image": "x:1"}]}});
        let mut config = Config { service_namespace: Some("shop".into()), ..Config::default() };
        config.resource_attributes.insert("k8s.cluster.name".into(), "prod".into());
        config.resource_attributes.insert("deployment.environment.name".into(), "prod".into());
        let attrs = attrs_of(&pod, WorkloadKind::Pod, &config);
        assert_eq!(literal(&attrs, "service.version").as_deref(), Some("pinned"));
        assert_eq!(literal(&attrs, "service.namespace").as_deref(), Some("shop"));
        assert_eq!(literal(&attrs, "k8s.cluster.name").as_deref(), Some("blue"));
        assert_eq!(literal(&attrs, "deployment.environment.name").as_deref(), Some("prod"));

        let pod = json!({"metadata": {"name": "p", "labels": {"app.kubernetes.io/version": "9.9"}},
            "spec": {"containers": [{"name": "app", "image": "x:1"}]}});
        assert_eq!(
            literal(&attrs_of(&pod, WorkloadKind::Pod, &Config::default()), "service.version").as_deref(),
            Some("9.9")
        );
    }
}
