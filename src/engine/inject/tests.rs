//! Engine tests: one case per rule of SPEC §2–§5, run through [`mutate`] and a real JSON Patch apply.

use super::*;
use crate::engine::config::DefaultMode;
use crate::testing::fixtures::{container, pod};
use rstest::rstest;
use serde_json::json;

mod lifecycle;

fn inject_all() -> Config {
    Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() }
}

fn run_with(object: &Value, kind: WorkloadKind, config: &Config, ns: &NamespaceMeta) -> (Value, Mutation) {
    let m = mutate(object, &Target::new(kind, "shop", ns, config));
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    (out, m)
}

fn run(object: &Value, kind: WorkloadKind) -> (Value, Mutation) {
    run_with(object, kind, &inject_all(), &NamespaceMeta::default())
}

/// The env of container `i` as (name, value-or-fieldPath) pairs.
fn env_of(object: &Value, pointer: &str) -> Vec<(String, String)> {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let value = match e.get("value").and_then(Value::as_str) {
                Some(v) => v.to_owned(),
                None => {
                    format!("<{}>", e.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str).unwrap_or("?"))
                }
            };
            (e["name"].as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

fn env_value(object: &Value, pointer: &str, name: &str) -> Option<String> {
    env_of(object, pointer).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn status_of(object: &Value, meta: &str) -> Status {
    let text = object.pointer(&format!("{meta}/annotations/otel-injector.io~1status")).and_then(Value::as_str);
    serde_json::from_str(text.expect("status annotation present")).expect("status is JSON")
}

fn minimal() -> Value {
    pod("web").container(container("app").image("shop/web:1.4")).build()
}

#[test]
fn instruments_a_minimal_pod() {
    let (out, m) = run(&minimal(), WorkloadKind::Pod);
    assert_eq!(
        env_of(&out, "/spec/containers/0/env"),
        [
            ("OTEL_RESOURCE_ATTRIBUTES_POD_NAME".into(), "<metadata.name>".into()),
            ("OTEL_RESOURCE_ATTRIBUTES_POD_UID".into(), "<metadata.uid>".into()),
            ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME".into(), "<spec.nodeName>".into()),
            ("OTEL_SERVICE_NAME".into(), "web".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://otel-collector.monitoring.svc.cluster.local:4317".into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
            ("OTEL_TRACES_EXPORTER".into(), "otlp".into()),
            ("OTEL_METRICS_EXPORTER".into(), "otlp".into()),
            ("OTEL_LOGS_EXPORTER".into(), "otlp".into()),
            ("OTEL_TRACES_SAMPLER".into(), "parentbased_traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG".into(), "1".into()),
            ("OTEL_PROPAGATORS".into(), "tracecontext,baggage".into()),
            (
                "OTEL_RESOURCE_ATTRIBUTES".into(),
                "k8s.namespace.name=shop,\
            k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),k8s.pod.uid=$(OTEL_RESOURCE_ATTRIBUTES_POD_UID),\
            k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.container.name=app,service.version=1.4"
                    .into()
            ),
        ]
    );
    let status = status_of(&out, "/metadata");
    assert_eq!(status.containers, ["app"]);
    assert_eq!(status.service_name.as_deref(), Some("web"));
    assert_eq!(status.service_name_from, "pod name");
    assert_eq!(status.reason, "cluster default (inject)");
    assert_eq!(status.sidecar, "off");
    assert!(m.warnings.is_empty());
    assert_eq!(m.explanation.patch_ops, 2, "one env list and one annotations map");
    assert_eq!(m.patch.0[1].path().as_str(), "/metadata/annotations");
}

/// Every variable of SPEC §4 and the settings that shape it.
#[rstest]
#[case::endpoint(json!({"otel-injector.io/endpoint": "https://otlp.example:4318"}), "OTEL_EXPORTER_OTLP_ENDPOINT", Some("https://otlp.example:4318"))]
#[case::protocol(json!({"otel-injector.io/protocol": "http/protobuf"}), "OTEL_EXPORTER_OTLP_PROTOCOL", Some("http/protobuf"))]
#[case::ratio(json!({"otel-injector.io/sampling-ratio": "0.25"}), "OTEL_TRACES_SAMPLER_ARG", Some("0.25"))]
#[case::sampler(json!({}), "OTEL_TRACES_SAMPLER", Some("parentbased_traceidratio"))]
#[case::propagators(json!({"otel-injector.io/propagators": "b3,baggage"}), "OTEL_PROPAGATORS", Some("b3,baggage"))]
#[case::traces_off(json!({"otel-injector.io/signals": "metrics,logs"}), "OTEL_TRACES_EXPORTER", Some("none"))]
#[case::metrics_off(json!({"otel-injector.io/signals": "traces"}), "OTEL_METRICS_EXPORTER", Some("none"))]
#[case::logs_off(json!({"otel-injector.io/signals": "traces"}), "OTEL_LOGS_EXPORTER", Some("none"))]
#[case::logs_on(json!({"otel-injector.io/signals": "logs"}), "OTEL_LOGS_EXPORTER", Some("otlp"))]
#[case::service_name(json!({"otel-injector.io/service-name": "checkout"}), "OTEL_SERVICE_NAME", Some("checkout"))]
#[case::service_name_escaped(json!({"otel-injector.io/service-name": "a$(B)"}), "OTEL_SERVICE_NAME", Some("a$$(B)"))]
#[case::no_headers_by_default(json!({}), "OTEL_EXPORTER_OTLP_HEADERS", None)]
fn every_variable(#[case] annotations: Value, #[case] var: &str, #[case] want: Option<&str>) {
    let mut object = minimal();
    object["metadata"]["annotations"] = annotations;
    let (out, _) = run(&object, WorkloadKind::Pod);
    assert_eq!(env_value(&out, "/spec/containers/0/env", var).as_deref(), want);
}

#[test]
fn tenant_headers_and_static_attributes_come_from_config() {
    let mut config = inject_all();
    config.headers.insert("X-Scope-OrgID".into(), "prod".into());
    config.resource_attributes.insert("k8s.cluster.name".into(), "eu 1".into());
    config.service_namespace = Some("shop".into());
    let (out, _) = run_with(&minimal(), WorkloadKind::Pod, &config, &NamespaceMeta::default());
    let env = "/spec/containers/0/env";
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_HEADERS").as_deref(), Some("X-Scope-OrgID=prod"));
    let attrs = env_value(&out, env, "OTEL_RESOURCE_ATTRIBUTES").expect("set");
    assert!(attrs.ends_with(",service.namespace=shop,k8s.cluster.name=eu%201"), "{attrs}");
}

#[test]
fn namespace_annotations_apply_and_pod_annotations_beat_them() {
    let ns = NamespaceMeta {
        annotations: [
            ("otel-injector.io/inject".to_owned(), "true".to_owned()),
            ("otel-injector.io/sampling-ratio".to_owned(), "0.5".to_owned()),
            ("resource.opentelemetry.io/team".to_owned(), "ns-team".to_owned()),
        ]
        .into(),
        ..NamespaceMeta::default()
    };
    let config = Config::default();
    let object =
        pod("web").annotation("resource.opentelemetry.io/team", "pod-team").container(container("app")).build();
    let (out, m) = run_with(&object, WorkloadKind::Pod, &config, &ns);
    assert_eq!(m.explanation.decision.reason, "namespace annotation otel-injector.io/inject=true");
    let env = "/spec/containers/0/env";
    assert_eq!(env_value(&out, env, "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.5"));
    assert!(env_value(&out, env, "OTEL_RESOURCE_ATTRIBUTES").expect("set").ends_with(",team=pod-team"));
}

#[test]
fn skipped_objects_get_no_patch_at_all() {
    let config = Config::default();
    let (out, m) = run_with(&minimal(), WorkloadKind::Pod, &config, &NamespaceMeta::default());
    assert!(m.patch.0.is_empty());
    assert_eq!(out, minimal());
    assert!(!m.explanation.decision.inject);
    assert_eq!(m.explanation.decision.reason, "cluster default (skip)");
}

#[test]
fn excluded_namespace_wins_over_annotations() {
    let object = pod("web").annotation("otel-injector.io/inject", "true").container(container("app")).build();
    let config = inject_all();
    let m = mutate(&object, &Target::new(WorkloadKind::Pod, "kube-system", &NamespaceMeta::default(), &config));
    assert!(m.patch.0.is_empty());
    assert_eq!(m.explanation.decision.reason, "namespace kube-system is excluded");
}

#[rstest]
#[case::skip_containers(pod("p").container(container("app")).container(container("istio-proxy")), "listed in skipContainers")]
#[case::container_names(
    pod("p").annotation("otel-injector.io/container-names", "app").container(container("app")).container(container("worker")),
    "not listed in otel-injector.io/container-names")]
#[case::empty_endpoint(
    pod("p").container(container("app")).container(container("worker").env("OTEL_EXPORTER_OTLP_ENDPOINT", "")),
    "opted out: OTEL_EXPORTER_OTLP_ENDPOINT is set empty")]
#[case::sdk_disabled(
    pod("p").container(container("app")).container(container("worker").env("OTEL_SDK_DISABLED", "true")),
    "opted out: OTEL_SDK_DISABLED=true")]
fn container_level_skips(#[case] builder: crate::testing::fixtures::PodBuilder, #[case] reason: &str) {
    let object = builder.build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    assert_eq!(m.explanation.containers[1].outcome, ContainerOutcome::Skipped(reason.to_owned()));
    assert_eq!(out["spec"]["containers"][1], object["spec"]["containers"][1], "the skipped container is untouched");
    assert!(env_value(&out, "/spec/containers/0/env", "OTEL_SERVICE_NAME").is_some());
    assert_eq!(status_of(&out, "/metadata").containers, ["app"]);
}

#[test]
fn nothing_to_instrument_means_no_patch() {
    let object = pod("p").container(container("app").env("OTEL_SDK_DISABLED", "true")).build();
    let (_, m) = run(&object, WorkloadKind::Pod);
    assert!(m.patch.0.is_empty());
    assert!(m.explanation.decision.inject);
}

#[test]
fn init_containers_are_left_alone() {
    let object = pod("p").init_container(container("migrate")).container(container("app")).build();
    let (out, _) = run(&object, WorkloadKind::Pod);
    assert_eq!(out["spec"]["initContainers"], object["spec"]["initContainers"]);
}

#[test]
fn each_container_is_its_own_service_when_nothing_else_names_it() {
    let object = pod("").container(container("api")).container(container("worker")).build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    assert_eq!(env_value(&out, "/spec/containers/0/env", "OTEL_SERVICE_NAME").as_deref(), Some("api"));
    assert_eq!(env_value(&out, "/spec/containers/1/env", "OTEL_SERVICE_NAME").as_deref(), Some("worker"));
    let status = status_of(&out, "/metadata");
    assert_eq!((status.service_name, status.service_name_from.as_str()), (None, "container name"));
    assert_eq!(m.explanation.service_name.map(|s| s.1).as_deref(), Some("container name"));
}

#[test]
fn second_pass_over_its_own_output_is_a_no_op() {
    for kind in WorkloadKind::ALL {
        let object = if kind == WorkloadKind::Pod {
            minimal()
        } else {
            pod("").container(container("app")).template_of(kind.as_str(), "web")
        };
        let (once, first) = run(&object, kind);
        assert!(!first.patch.0.is_empty(), "{kind}");
        let (twice, second) = run(&once, kind);
        assert!(second.patch.0.is_empty(), "{kind}: {:?}", second.patch);
        assert_eq!(once, twice);
    }
}

#[test]
fn natural_idempotence_without_the_status_annotation() {
    let (mut once, _) = run(&minimal(), WorkloadKind::Pod);
    if let Some(annotations) = once["metadata"]["annotations"].as_object_mut() {
        annotations.remove(keys::STATUS);
    }
    let (_, second) = run(&once, WorkloadKind::Pod);
    assert_eq!(second.patch.0.len(), 1, "only the status annotation comes back: {:?}", second.patch);
}

#[test]
fn pod_created_from_an_instrumented_deployment_gets_no_patch() {
    let deployment =
        pod("").label("app", "web").container(container("app").image("web:2")).template_of("Deployment", "web");
    let (instrumented, _) = run(&deployment, WorkloadKind::Deployment);
    // What the ReplicaSet controller creates from that template.
    let mut created = instrumented["spec"]["template"].clone();
    created["apiVersion"] = "v1".into();
    created["kind"] = "Pod".into();
    created["metadata"]["generateName"] = "web-5d8f7c-".into();
    created["metadata"]["labels"]["pod-template-hash"] = "5d8f7c".into();
    created["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c", "uid": "1", "controller": true}]);
    let (_, m) = run(&created, WorkloadKind::Pod);
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
}

#[test]
fn a_container_added_on_update_is_instrumented_and_the_status_updated() {
    let deployment = pod("").container(container("app")).template_of("Deployment", "web");
    let (mut instrumented, _) = run(&deployment, WorkloadKind::Deployment);
    let before = instrumented["spec"]["template"]["spec"]["containers"][0].clone();
    if let Some(containers) = instrumented["spec"]["template"]["spec"]["containers"].as_array_mut() {
        containers.push(json!({"name": "worker"}));
    }
    let (out, m) = run(&instrumented, WorkloadKind::Deployment);
    assert_eq!(out["spec"]["template"]["spec"]["containers"][0], before, "the first container is not touched again");
    assert!(env_value(&out, "/spec/template/spec/containers/1/env", "OTEL_SERVICE_NAME").is_some());
    assert_eq!(status_of(&out, "/spec/template/metadata").containers, ["app", "worker"]);
    assert_eq!(m.patch.0.len(), 2);
}

#[test]
fn changed_settings_bring_the_webhooks_own_values_up_to_date() {
    let (once, _) = run(&minimal(), WorkloadKind::Pod);
    let mut config = inject_all();
    config.sampling_ratio = 0.1;
    let (twice, m) = run_with(&once, WorkloadKind::Pod, &config, &NamespaceMeta::default());
    assert_eq!(m.patch.0.len(), 2, "the value and the status: {:?}", m.patch);
    assert_ne!(status_of(&once, "/metadata").hash, status_of(&twice, "/metadata").hash);
    assert_eq!(env_value(&twice, "/spec/containers/0/env", "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.1"));
}

#[rstest]
#[case(WorkloadKind::Deployment, "/spec/template")]
#[case(WorkloadKind::StatefulSet, "/spec/template")]
#[case(WorkloadKind::DaemonSet, "/spec/template")]
#[case(WorkloadKind::ReplicaSet, "/spec/template")]
#[case(WorkloadKind::Job, "/spec/template")]
#[case(WorkloadKind::CronJob, "/spec/jobTemplate/spec/template")]
fn workload_templates_are_patched_in_place(#[case] kind: WorkloadKind, #[case] template: &str) {
    let object = pod("").container(container("app")).template_of(kind.as_str(), "web");
    let (out, m) = run(&object, kind);
    assert!(m.patch.0.iter().all(|op| op.path().as_str().starts_with(template)), "{:?}", m.patch);
    assert_eq!(
        env_value(&out, &format!("{template}/spec/containers/0/env"), "OTEL_SERVICE_NAME").as_deref(),
        Some("web")
    );
    assert_eq!(status_of(&out, &format!("{template}/metadata")).service_name_from, format!("{kind} name"));
}

#[test]
fn template_without_metadata_gets_it_created() {
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
    let (out, m) = run(&object, WorkloadKind::Deployment);
    assert_eq!(m.patch.0.last().map(|op| op.path().as_str().to_owned()).as_deref(), Some("/spec/template/metadata"));
    assert_eq!(status_of(&out, "/spec/template/metadata").containers, ["c"]);
}

#[test]
fn objects_it_cannot_read_are_left_unchanged_with_a_warning() {
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}});
    let (_, m) = run(&object, WorkloadKind::Pod);
    assert!(m.patch.0.is_empty());
    assert_eq!(m.warnings.as_slice(), ["otel-injector left this Pod unchanged: spec.containers is missing"]);
}

#[test]
fn patches_are_deterministic() {
    let object = pod("p")
        .annotation("resource.opentelemetry.io/b", "2")
        .annotation("resource.opentelemetry.io/a", "1")
        .container(container("app").env("X", "$(OTEL_SERVICE_NAME)"))
        .build();
    let bytes = |o: &Value| run(o, WorkloadKind::Pod).1.patch.to_json();
    assert_eq!(bytes(&object), bytes(&object.clone()));
}

#[test]
fn invalid_annotation_values_warn_and_do_not_block() {
    let object = pod("p").annotation("otel-injector.io/sampling-ratio", "2").container(container("app")).build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    assert_eq!(env_value(&out, "/spec/containers/0/env", "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("1"));
    assert_eq!(m.warnings.len(), 1);
    assert!(m.warnings.as_slice()[0].starts_with("otel-injector.io/sampling-ratio=\"2\" on annotation ignored"));
}

#[test]
fn every_variable_the_webhook_writes_is_one_the_lean_view_keeps() {
    let object = pod("web")
        .annotation("otel-injector.io/sidecar", "true")
        .container(container("app").image("shop/web:1"))
        .build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    assert!(!m.patch.0.is_empty());
    let names: Vec<String> = ["/spec/containers/0/env", "/spec/initContainers/0/env", "/spec/containers/1/env"]
        .iter()
        .flat_map(|p| env_of(&out, p))
        .map(|(name, _)| name)
        .collect();
    assert!(names.iter().any(|n| n == "OTEL_COLLECTOR_CONFIG"), "the sidecar is there: {names:?}");
    assert!(names.iter().any(|n| n == "GOMEMLIMIT"), "{names:?}");
    let unread: Vec<&String> = names.iter().filter(|n| !crate::engine::pod_view::engine_reads(n)).collect();
    assert!(unread.is_empty(), "written but never read back on UPDATE: {unread:?}");
}

/// Issue 20, finding 1: a per-signal endpoint of the user's owns that signal's transport.
#[rstest]
#[case::traces_on_http(
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "https://vendor.example:4318/v1/traces",
    &[
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some("http/protobuf")),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", Some("grpc")),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", Some("grpc")),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", None),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", Some("X-Scope-OrgID=prod")),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", Some("X-Scope-OrgID=prod")),
    ]
)]
#[case::logs_on_an_unknown_port(
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "https://logs.vendor.example/v1/logs",
    &[
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some("grpc")),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", Some("grpc")),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", None),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", None),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", Some("X-Scope-OrgID=prod")),
    ]
)]
fn a_users_signal_endpoint_never_gets_the_gateways_headers_or_protocol(
    #[case] var: &str,
    #[case] endpoint: &str,
    #[case] want: &[(&str, Option<&str>)],
) {
    let mut config = inject_all();
    config.headers.insert("X-Scope-OrgID".into(), "prod".into());
    let object = pod("web").container(container("app").env(var, endpoint)).build();
    let (out, m) = run_with(&object, WorkloadKind::Pod, &config, &NamespaceMeta::default());
    let env = "/spec/containers/0/env";
    for (name, value) in want {
        assert_eq!(env_value(&out, env, name).as_deref(), *value, "{name}");
    }
    // The generic ones would reach the user's signal: neither is set.
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_HEADERS"), None);
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_PROTOCOL"), None);
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(), Some(config.endpoint.as_str()));
    assert_eq!(env_value(&out, env, var).as_deref(), Some(endpoint), "the user's endpoint is theirs");
    let (again, second) = run_with(&out, WorkloadKind::Pod, &config, &NamespaceMeta::default());
    assert!(second.patch.0.is_empty(), "a second pass is a no-op: {:?}", second.patch);
    assert_eq!(again, out);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn a_signal_endpoint_added_later_takes_the_gateways_headers_back() {
    let mut config = inject_all();
    config.headers.insert("X-Scope-OrgID".into(), "prod".into());
    config.workloads = vec![WorkloadKind::Deployment];
    let object = pod("").container(container("app").image("web:1")).template_of("Deployment", "web");
    let (before, _) = run_with(&object, WorkloadKind::Deployment, &config, &NamespaceMeta::default());
    let env = "/spec/template/spec/containers/0/env";
    assert_eq!(env_value(&before, env, "OTEL_EXPORTER_OTLP_HEADERS").as_deref(), Some("X-Scope-OrgID=prod"));
    let mut edited = before.clone();
    edited.pointer_mut(env).and_then(Value::as_array_mut).expect("env").push(json!({
        "name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": "http://vendor:4318"
    }));
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2".into();
    let ns = NamespaceMeta::default();
    let old = before["spec"]["template"].to_string();
    let target = Target { old_template: Some(&old), ..Target::new(WorkloadKind::Deployment, "shop", &ns, &config) };
    let m = mutate(&edited, &target);
    let mut out = edited.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("applies");
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_HEADERS"), None, "taken back");
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_PROTOCOL"), None, "taken back");
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").as_deref(), Some("http/protobuf"));
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_METRICS_HEADERS").as_deref(), Some("X-Scope-OrgID=prod"));
}

/// Issue 20, finding 4: the user's own `service.name` in `OTEL_RESOURCE_ATTRIBUTES` is not overridden.
#[rstest]
#[case::named("service.name=checkout,team=shop", false)]
#[case::spaced(" team=shop , service.name = checkout", false)]
#[case::not_named("team=shop", true)]
#[case::a_longer_key("service.namespace=shop", true)]
fn a_users_service_name_attribute_keeps_otel_service_name_out(#[case] attributes: &str, #[case] added: bool) {
    let object = pod("web").container(container("app").env("OTEL_RESOURCE_ATTRIBUTES", attributes)).build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    let env = "/spec/containers/0/env";
    assert_eq!(env_value(&out, env, "OTEL_SERVICE_NAME").is_some(), added, "{m:?}");
    let merged = env_value(&out, env, "OTEL_RESOURCE_ATTRIBUTES").expect("kept");
    assert!(merged.starts_with(attributes.trim_end()), "the user's pairs first and as written: {merged}");
    let (_, second) = run(&out, WorkloadKind::Pod);
    assert!(second.patch.0.is_empty(), "{:?}", second.patch);
}

/// Issue 20, declarative configuration: a file-configured SDK ignores the exporter variables.
#[rstest]
#[case("OTEL_CONFIG_FILE")]
#[case("OTEL_EXPERIMENTAL_CONFIG_FILE")]
fn a_container_configured_from_a_file_keeps_its_exporter_settings(#[case] var: &str) {
    let object = pod("web").container(container("app").env(var, "/etc/otel/sdk.yaml")).build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    let env = "/spec/containers/0/env";
    let names: Vec<String> = env_of(&out, env).into_iter().map(|(n, _)| n).collect();
    for name in
        ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER"]
    {
        assert!(!names.iter().any(|n| n == name), "{name} not added: {names:?}");
    }
    assert!(names.iter().any(|n| n == "OTEL_SERVICE_NAME"), "{names:?}");
    assert!(names.iter().any(|n| n == "OTEL_RESOURCE_ATTRIBUTES"), "for ${{env:OTEL_RESOURCE_ATTRIBUTES}}: {names:?}");
    assert_eq!(status_of(&out, "/metadata").config_file, ["app"], "the status says so");
    assert!(m.explanation.to_string().contains(&format!("{var} is set")), "{}", m.explanation);
    let warnings = m.warnings.into_vec();
    assert!(warnings.iter().any(|w| w.contains(var) && w.contains("exporter settings left alone")), "{warnings:?}");
    let (_, second) = run(&out, WorkloadKind::Pod);
    assert!(second.patch.0.is_empty(), "a second pass is a no-op: {:?}", second.patch);
}

/// Issue 20, finding 6: one long attribute must not wipe every attribute in a strict SDK.
#[test]
fn an_attribute_over_255_characters_encoded_is_dropped_alone_with_a_warning() {
    let long = "é".repeat(100); // 100 characters, 600 encoded
    let object = pod("web")
        .annotation("resource.opentelemetry.io/team", &long)
        .annotation("resource.opentelemetry.io/tier", "web")
        .container(container("app"))
        .build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    let attrs = env_value(&out, "/spec/containers/0/env", "OTEL_RESOURCE_ATTRIBUTES").expect("set");
    assert!(!attrs.contains("team="), "{attrs}");
    assert!(attrs.contains("tier=web") && attrs.contains("k8s.namespace.name=shop"), "the others stay: {attrs}");
    for pair in attrs.split(',') {
        assert_eq!(crate::engine::inject::env::strict_problem(pair), None, "{pair}");
    }
    let warnings = m.warnings.into_vec();
    assert!(warnings.iter().any(|w| w.contains("resource attribute team not added")), "{warnings:?}");
}

#[rstest]
#[case::no_equals("team=shop,legacy")]
#[case::second_equals("url=https://x/?a=b")]
#[case::bad_escape("discount=50%")]
fn a_users_list_a_strict_sdk_would_discard_is_a_warning(#[case] users: &str) {
    let object = pod("web").container(container("app").env("OTEL_RESOURCE_ATTRIBUTES", users)).build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    let attrs = env_value(&out, "/spec/containers/0/env", "OTEL_RESOURCE_ATTRIBUTES").expect("set");
    assert!(attrs.starts_with(users), "the user's pairs are theirs, untouched: {attrs}");
    let warnings = m.warnings.into_vec();
    assert!(warnings.iter().any(|w| w.contains("a strict SDK (Node.js) would discard all")), "{warnings:?}");
}

/// Issue 20, finding 5: the names only a controller gives reach the pods made from an instrumented template.
#[rstest]
#[case::deployment(
    pod("").container(container("app")).template_of("Deployment", "web"),
    WorkloadKind::Deployment,
    None,
    "k8s.replicaset.name=web-$(OTEL_RESOURCE_ATTRIBUTES_POD_TEMPLATE_HASH)",
    ("OTEL_RESOURCE_ATTRIBUTES_POD_TEMPLATE_HASH", "<metadata.labels['pod-template-hash']>")
)]
#[case::cronjob(
    pod("").container(container("app")).template_of("CronJob", "nightly"),
    WorkloadKind::CronJob,
    None,
    "k8s.job.name=$(OTEL_RESOURCE_ATTRIBUTES_JOB_NAME)",
    ("OTEL_RESOURCE_ATTRIBUTES_JOB_NAME", "<metadata.labels['batch.kubernetes.io/job-name']>")
)]
#[case::cronjob_before_1_27(
    pod("").container(container("app")).template_of("CronJob", "nightly"),
    WorkloadKind::CronJob,
    Some(KubeVersion { major: 1, minor: 26 }),
    "k8s.job.name=$(OTEL_RESOURCE_ATTRIBUTES_JOB_NAME)",
    ("OTEL_RESOURCE_ATTRIBUTES_JOB_NAME", "<metadata.labels['job-name']>")
)]
fn controller_given_names_come_from_the_pods_labels(
    #[case] object: Value,
    #[case] kind: WorkloadKind,
    #[case] server_version: Option<KubeVersion>,
    #[case] pair: &str,
    #[case] helper: (&str, &str),
) {
    let ns = NamespaceMeta::default();
    let config = inject_all();
    let m = mutate(&object, &Target { server_version, ..Target::new(kind, "shop", &ns, &config) });
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("applies");
    let pointer =
        format!("{}/spec/containers/0/env", kind.template_path().iter().map(|t| format!("/{t}")).collect::<String>());
    let env = env_of(&out, &pointer);
    let attrs = env_value(&out, &pointer, "OTEL_RESOURCE_ATTRIBUTES").expect("set");
    assert!(attrs.split(',').any(|p| p == pair), "{attrs}");
    let at = |name: &str| env.iter().position(|(n, _)| n == name).expect(name);
    assert_eq!(env[at(helper.0)].1, helper.1);
    assert!(at(helper.0) < at("OTEL_RESOURCE_ATTRIBUTES"), "defined before it is referenced");
}

/// Issue 20, finding 2: what a container draws from a ConfigMap through `envFrom` is the user's.
fn with_config_map(container: crate::testing::fixtures::ContainerBuilder, data: &[(&str, &str)]) -> (Value, Mutation) {
    let mut config = inject_all();
    config.headers.insert("X-Scope-OrgID".into(), "prod".into());
    let object = pod("web").container(container).build();
    let mut maps = env_from::ConfigMaps::default();
    let data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    maps.insert("otel", env_from::Found::Data(data));
    let ns = NamespaceMeta::default();
    let m =
        mutate(&object, &Target { config_maps: Some(&maps), ..Target::new(WorkloadKind::Pod, "shop", &ns, &config) });
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("applies");
    (out, m)
}

fn drawing(prefix: &str) -> crate::testing::fixtures::ContainerBuilder {
    container("app")
        .env_entry(json!({"name": "KEEP", "value": "me"}))
        .env_from(json!({"prefix": prefix, "configMapRef": {"name": "otel"}}))
}

#[test]
fn a_config_maps_endpoint_owns_the_transport_and_is_never_overridden() {
    let (out, m) = with_config_map(drawing(""), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://mine:4318")]);
    let env = "/spec/containers/0/env";
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_ENDPOINT"), None, "the ConfigMap's stays in force");
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_HEADERS"), None, "the gateway's header stays off it");
    assert_eq!(env_value(&out, env, "OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(), Some("http/protobuf"), "its port says");
    assert!(env_value(&out, env, "OTEL_SERVICE_NAME").is_some(), "the rest is added: {m:?}");
}

#[rstest]
#[case::prefixed("OTEL_", "SERVICE_NAME", "OTEL_SERVICE_NAME")]
#[case::plain("", "OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACES_SAMPLER_ARG")]
fn a_config_maps_variable_with_its_prefix_is_kept(#[case] prefix: &str, #[case] key: &str, #[case] var: &str) {
    let (out, _) = with_config_map(drawing(prefix), &[(key, "theirs")]);
    assert_eq!(env_value(&out, "/spec/containers/0/env", var), None, "not added over the ConfigMap's {var}");
}

#[test]
fn an_empty_endpoint_in_a_config_map_opts_the_container_out() {
    let (out, m) = with_config_map(drawing(""), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]);
    assert!(m.patch.0.is_empty(), "nothing to instrument: {m:?}");
    assert_eq!(env_value(&out, "/spec/containers/0/env", "OTEL_SERVICE_NAME"), None);
    assert!(m.explanation.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT is set empty"), "{}", m.explanation);
}

#[test]
fn a_config_maps_resource_attributes_are_left_in_force_with_a_warning() {
    let (out, m) = with_config_map(drawing(""), &[("OTEL_RESOURCE_ATTRIBUTES", "team=shop")]);
    assert_eq!(env_value(&out, "/spec/containers/0/env", "OTEL_RESOURCE_ATTRIBUTES"), None);
    let warnings = m.warnings.into_vec();
    assert!(warnings.iter().any(|w| w.contains("drawn from ConfigMap otel")), "{warnings:?}");
}

#[test]
fn a_container_fed_by_a_secret_is_instrumented_with_a_warning_or_left_alone_on_request() {
    let secret = || container("app").env_from(json!({"secretRef": {"name": "creds"}}));
    let (out, m) = run(&pod("web").container(secret()).build(), WorkloadKind::Pod);
    assert!(env_value(&out, "/spec/containers/0/env", "OTEL_SERVICE_NAME").is_some());
    let warnings = m.warnings.into_vec();
    assert!(warnings.iter().any(|w| w.contains("Secret creds (envFrom) is never read")), "{warnings:?}");
    let skipped = pod("web").annotation("otel-injector.io/env-from-secret", "skip").container(secret()).build();
    let (out, m) = run(&skipped, WorkloadKind::Pod);
    assert_eq!(env_value(&out, "/spec/containers/0/env", "OTEL_SERVICE_NAME"), None, "{m:?}");
    assert!(m.explanation.to_string().contains("draws variables from Secret creds"), "{}", m.explanation);
}

#[test]
fn a_variable_moved_into_a_config_map_later_is_taken_back_from_env() {
    let mut config = inject_all();
    config.workloads = vec![WorkloadKind::Deployment];
    let object = pod("").container(container("app").image("web:1")).template_of("Deployment", "web");
    let (before, _) = run_with(&object, WorkloadKind::Deployment, &config, &NamespaceMeta::default());
    let env = "/spec/template/spec/containers/0/env";
    assert!(env_value(&before, env, "OTEL_TRACES_SAMPLER_ARG").is_some());
    let mut edited = before.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "otel"}}]);
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2".into();
    let mut maps = env_from::ConfigMaps::default();
    maps.insert("otel", env_from::Found::Data([("OTEL_TRACES_SAMPLER_ARG".to_owned(), "0.1".to_owned())].into()));
    let ns = NamespaceMeta::default();
    let old = before["spec"]["template"].to_string();
    let target = Target {
        old_template: Some(&old),
        config_maps: Some(&maps),
        ..Target::new(WorkloadKind::Deployment, "shop", &ns, &config)
    };
    let m = mutate(&edited, &target);
    let mut out = edited.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("applies");
    assert_eq!(env_value(&out, env, "OTEL_TRACES_SAMPLER_ARG"), None, "ours would beat the ConfigMap's: {m:?}");
    assert!(env_value(&out, env, "OTEL_SERVICE_NAME").is_some(), "the rest stays");
}

#[test]
fn a_secret_fed_container_is_recorded_once_and_a_second_pass_changes_nothing() {
    let object = pod("web").container(container("app").env_from(json!({"secretRef": {"name": "creds"}}))).build();
    let (out, m) = run(&object, WorkloadKind::Pod);
    assert_eq!(status_of(&out, "/metadata").secret_fed, ["app"]);
    assert_eq!(m.explanation.secret_fed, 1);
    assert!(m.explanation.to_string().contains("draws variables from Secret creds, never read"), "{}", m.explanation);
    let (again, second) = run(&out, WorkloadKind::Pod);
    assert!(second.patch.0.is_empty(), "{:?}", second.patch);
    assert_eq!(again, out);
    assert_eq!(second.explanation.secret_fed, 1, "still counted as what it is");
}
