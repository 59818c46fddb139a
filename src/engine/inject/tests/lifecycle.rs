//! The engine over a workload's life (issue 7): never fight a controller or block an update, keep the webhook's own
//! values current and never touch the user's, and the values that were wrong. One named test (or table) per point.

use super::super::*;
use crate::engine::config::DefaultMode;
use crate::testing::fixtures::{container, pod};
use rstest::rstest;
use serde_json::json;

fn config() -> Config {
    Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() }
}

fn apply(object: &Value, m: &Mutation) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    out
}

/// A CREATE in `namespace`.
fn create_in(object: &Value, kind: WorkloadKind, config: &Config, namespace: &str) -> (Value, Mutation) {
    let ns = NamespaceMeta::default();
    let m = mutate(object, &Target::new(kind, namespace, &ns, config));
    (apply(object, &m), m)
}

fn create(object: &Value, kind: WorkloadKind, config: &Config) -> (Value, Mutation) {
    create_in(object, kind, config, "shop")
}

/// The pod template of an object of `kind` (the object itself for a Pod).
fn template_of(object: &Value, kind: WorkloadKind) -> Option<&Value> {
    kind.template_path().iter().try_fold(object, |v, token| v.get(token))
}

/// An UPDATE from `before` to `after`, as the API server sends it.
fn update(before: &Value, after: &Value, kind: WorkloadKind, config: &Config) -> (Value, Mutation) {
    let ns = NamespaceMeta::default();
    let old = template_of(before, kind).map_or_else(|| "null".to_owned(), Value::to_string);
    let m = mutate(after, &Target { old_template: Some(&old), ..Target::new(kind, "shop", &ns, config) });
    (apply(after, &m), m)
}

fn deployment(image: &str) -> Value {
    pod("").container(container("app").image(image)).template_of("Deployment", "web")
}

/// Container `i`'s variable `name` in a workload's template (or a Pod).
fn var(object: &Value, kind: WorkloadKind, i: usize, name: &str) -> Option<String> {
    let env = template_of(object, kind)?["spec"]["containers"][i]["env"].as_array()?;
    env.iter().rev().find(|e| e["name"] == name).and_then(|e| e["value"].as_str()).map(str::to_owned)
}

fn set_var(object: &mut Value, kind: WorkloadKind, i: usize, name: &str, value: &str) {
    let path =
        format!("{}/spec/containers/{i}/env", kind.template_path().iter().map(|t| format!("/{t}")).collect::<String>());
    let env = object.pointer_mut(&path).and_then(Value::as_array_mut).expect("env");
    match env.iter_mut().find(|e| e["name"] == name) {
        Some(e) => e["value"] = value.into(),
        None => env.push(json!({"name": name, "value": value})),
    }
}

fn set_image(object: &mut Value, image: &str) {
    object["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
}

fn set_template_annotation(object: &mut Value, key: &str, value: &str) {
    object["spec"]["template"]["metadata"]["annotations"][key] = value.into();
}

// 1. A workload that a controller owns is never mutated.
#[rstest]
#[case::replicaset_of_a_deployment("ReplicaSet", "Deployment", "web")]
#[case::job_of_a_cronjob("Job", "CronJob", "nightly")]
#[case::statefulset_of_an_operator("StatefulSet", "EtcdCluster", "etcd")]
fn a_workload_a_controller_owns_is_never_mutated(#[case] kind: &str, #[case] owner: &str, #[case] name: &str) {
    let mut object = pod("").container(container("app")).template_of(kind, "web-5d8f");
    object["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": owner, "name": name,
        "uid": "1", "controller": true}]);
    let kind = WorkloadKind::from_type_meta(object["apiVersion"].as_str().unwrap_or_default(), kind).expect("kind");
    let (_, m) = create(&object, kind, &config());
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
    assert_eq!(
        m.explanation.decision.reason,
        format!("owned by {owner} {name}: the owner's template is instrumented, not this one")
    );
    assert!(m.explanation.to_string().contains("owned by"), "--explain says why");
}

// 2. A Job's pod template is immutable after creation.
#[test]
fn a_job_update_never_gets_a_template_patch() {
    let job = pod("").container(container("migrate").image("db:1")).template_of("Job", "migrate");
    let (instrumented, _) = create(&job, WorkloadKind::Job, &config());
    let mut relabelled = instrumented.clone();
    relabelled["metadata"]["labels"] = json!({"team": "data"});
    let changed = Config { sampling_ratio: 0.5, ..config() };
    let (_, m) = update(&instrumented, &relabelled, WorkloadKind::Job, &changed);
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
    assert_eq!(m.explanation.decision.reason, "a Job's pod template is immutable: an UPDATE is never patched");
}

// 3. An UPDATE that does not change the template does not change the template.
#[test]
fn an_update_that_leaves_the_template_alone_gets_no_patch_even_after_a_config_change() {
    let (instrumented, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &config());
    let mut scaled = instrumented.clone();
    scaled["spec"]["replicas"] = 5.into();
    scaled["metadata"]["labels"] = json!({"owner": "shop"});
    let changed = Config { sampling_ratio: 0.5, ..config() };
    let (_, m) = update(&instrumented, &scaled, WorkloadKind::Deployment, &changed);
    assert!(m.patch.0.is_empty(), "a rollout the user did not cause: {:?}", m.patch);
    assert_eq!(m.explanation.decision.reason, "the UPDATE leaves the pod template unchanged");
}

// 4. Values the webhook owns stay current.
#[test]
fn an_image_bump_brings_service_version_along() {
    let (v1, _) = create(&deployment("web:1.0"), WorkloadKind::Deployment, &config());
    let mut v2 = v1.clone();
    set_image(&mut v2, "web:2.0");
    let (out, m) = update(&v1, &v2, WorkloadKind::Deployment, &config());
    let attrs = var(&out, WorkloadKind::Deployment, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    assert!(attrs.contains("service.version=2.0") && !attrs.contains("service.version=1.0"), "{attrs}");
    assert!(m.explanation.to_string().contains("brought the webhook's OTEL_RESOURCE_ATTRIBUTES up to date"));
}

#[rstest]
#[case::sampling_ratio("otel-injector.io/sampling-ratio", "0.25", "OTEL_TRACES_SAMPLER_ARG", "0.25")]
#[case::endpoint(
    "otel-injector.io/endpoint",
    "http://gateway.eu:4317",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "http://gateway.eu:4317"
)]
#[case::protocol("otel-injector.io/protocol", "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]
#[case::signals("otel-injector.io/signals", "traces", "OTEL_LOGS_EXPORTER", "none")]
fn a_changed_annotation_reaches_the_variable_it_sets(
    #[case] key: &str,
    #[case] value: &str,
    #[case] name: &str,
    #[case] want: &str,
) {
    let (before, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &config());
    let mut after = before.clone();
    set_template_annotation(&mut after, key, value);
    let (out, _) = update(&before, &after, WorkloadKind::Deployment, &config());
    assert_eq!(var(&out, WorkloadKind::Deployment, 0, name).as_deref(), Some(want));
}

#[test]
fn a_manifest_copied_to_another_namespace_gets_that_namespace() {
    let (in_shop, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &config());
    let (copied, m) = create_in(&in_shop, WorkloadKind::Deployment, &config(), "payments");
    let attrs = var(&copied, WorkloadKind::Deployment, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    assert!(attrs.starts_with("k8s.namespace.name=payments,"), "{attrs}");
    assert!(!m.patch.0.is_empty());
}

#[test]
fn a_value_the_user_edited_is_kept_and_explained() {
    let (before, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &config());
    let mut after = before.clone();
    set_var(&mut after, WorkloadKind::Deployment, 0, "OTEL_TRACES_SAMPLER_ARG", "0.9");
    set_image(&mut after, "web:2");
    let changed = Config { sampling_ratio: 0.1, propagators: vec!["b3".into()], ..config() };
    let (out, m) = update(&before, &after, WorkloadKind::Deployment, &changed);
    assert_eq!(var(&out, WorkloadKind::Deployment, 0, "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.9"), "the user's");
    assert_eq!(var(&out, WorkloadKind::Deployment, 0, "OTEL_PROPAGATORS").as_deref(), Some("b3"), "the webhook's");
    assert!(
        m.explanation.to_string().contains("OTEL_TRACES_SAMPLER_ARG: the user changed the value the webhook set; kept"),
        "{}",
        m.explanation
    );
    // And it stays the user's on every later change.
    let mut later = out.clone();
    set_image(&mut later, "web:3");
    let (again, _) = update(&out, &later, WorkloadKind::Deployment, &Config { sampling_ratio: 0.2, ..changed });
    assert_eq!(var(&again, WorkloadKind::Deployment, 0, "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.9"));
}

#[test]
fn resource_attributes_are_merged_pair_by_pair() {
    let (before, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &config());
    let mut after = before.clone();
    let ours = var(&before, WorkloadKind::Deployment, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    let edited =
        format!("team=checkout,{},k8s.cluster.name=mine", ours.replace("service.version=1", "service.version=9"));
    set_var(&mut after, WorkloadKind::Deployment, 0, "OTEL_RESOURCE_ATTRIBUTES", &edited);
    set_image(&mut after, "web:2");
    let config = Config { resource_attributes: [("k8s.cluster.name".into(), "prod".into())].into(), ..config() };
    let (out, _) = update(&before, &after, WorkloadKind::Deployment, &config);
    let attrs = var(&out, WorkloadKind::Deployment, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    let pairs: Vec<&str> = attrs.split(',').collect();
    assert!(pairs.contains(&"team=checkout"), "a pair the user added stays: {attrs}");
    assert!(
        pairs.contains(&"k8s.cluster.name=mine") && !pairs.contains(&"k8s.cluster.name=prod"),
        "the user's key wins"
    );
    assert!(pairs.contains(&"service.version=9"), "a pair the user edited is the user's: {attrs}");
    assert!(pairs.contains(&"k8s.namespace.name=shop"), "the webhook's pairs are kept: {attrs}");
}

#[test]
fn variables_the_webhook_set_and_no_longer_wants_are_taken_back() {
    let with_headers = Config { headers: [("X-Scope-OrgID".into(), "prod".into())].into(), ..config() };
    let (before, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &with_headers);
    assert!(var(&before, WorkloadKind::Deployment, 0, "OTEL_EXPORTER_OTLP_HEADERS").is_some());
    let mut after = before.clone();
    set_var(&mut after, WorkloadKind::Deployment, 0, "MY_OWN", "kept");
    set_image(&mut after, "web:2");
    let (out, m) = update(&before, &after, WorkloadKind::Deployment, &config());
    assert_eq!(var(&out, WorkloadKind::Deployment, 0, "OTEL_EXPORTER_OTLP_HEADERS"), None);
    assert_eq!(var(&out, WorkloadKind::Deployment, 0, "MY_OWN").as_deref(), Some("kept"));
    assert!(m.explanation.to_string().contains("took back the webhook's OTEL_EXPORTER_OTLP_HEADERS"));
}

#[test]
fn the_sidecar_configuration_follows_the_settings() {
    let sidecar =
        Config { sidecar: crate::engine::config::SidecarConfig { enabled: true, ..Default::default() }, ..config() };
    let (before, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &sidecar);
    let mut after = before.clone();
    set_template_annotation(&mut after, "otel-injector.io/sampling-ratio", "0.25");
    let (out, m) = update(&before, &after, WorkloadKind::Deployment, &sidecar);
    let collector = &out["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(collector["name"], "otel-collector");
    assert!(collector["env"].to_string().contains("sampling_percentage: 25.0"), "{collector}");
    assert_eq!(out["spec"]["template"]["spec"]["initContainers"].as_array().map(Vec::len), Some(1));
    let (_, again) = update(&out, &out, WorkloadKind::Deployment, &sidecar);
    assert!(again.patch.0.is_empty());
    assert!(m.patch.0.iter().all(|op| !op.path().as_str().ends_with("/initContainers/-")), "refreshed, not added");
}

#[test]
fn the_status_stays_small() {
    let mut sizes = Vec::new();
    for n in [1, 5, 20] {
        let mut builder = pod("web");
        for i in 0..n {
            builder = builder.container(container(&format!("container-{i}")).image("registry.example/shop/web:1.2.3"));
        }
        let (out, _) = create(&builder.build(), WorkloadKind::Pod, &config());
        let status = out["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("status").len();
        sizes.push((n, status));
    }
    eprintln!("status annotation bytes by containers: {sizes:?}");
    let [(_, one), (_, five), (_, twenty)] = sizes[..] else { unreachable!() };
    assert!(one <= 400, "1 container: {one} bytes");
    assert!(five <= 1200, "5 containers: {five} bytes");
    assert!(twenty <= 4500, "20 containers: {twenty} bytes");
}

// 5. Deleting the status annotation makes the next admission treat the object as new.
#[test]
fn deleting_the_status_makes_the_next_admission_treat_the_object_as_new() {
    let (before, _) = create(&deployment("web:1"), WorkloadKind::Deployment, &config());
    let mut after = before.clone();
    if let Some(a) = after["spec"]["template"]["metadata"]["annotations"].as_object_mut() {
        a.remove("otel-injector.io/status");
    }
    let changed = Config { sampling_ratio: 0.5, ..config() };
    let (out, m) = update(&before, &after, WorkloadKind::Deployment, &changed);
    let status: Status = serde_json::from_str(
        out["spec"]["template"]["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("status"),
    )
    .expect("json");
    assert!(status.env.is_empty(), "nothing is the webhook's any more: {status:?}");
    assert_eq!(
        var(&out, WorkloadKind::Deployment, 0, "OTEL_TRACES_SAMPLER_ARG").as_deref(),
        Some("1"),
        "as the user's"
    );
    assert!(m.explanation.to_string().contains("kept the user's"), "{}", m.explanation);
}

// 6. A container that sets its own endpoint keeps its own transport.
#[rstest]
#[case::http_port("http://my-collector:4318", Some("http/protobuf"))]
#[case::grpc_port("http://my-collector:4317", Some("grpc"))]
#[case::no_port("https://otlp.vendor.example", None)]
#[case::other_port("http://my-collector:9000", None)]
fn a_container_with_its_own_endpoint_keeps_its_transport(#[case] endpoint: &str, #[case] protocol: Option<&str>) {
    let config = Config { headers: [("X-Scope-OrgID".into(), "prod".into())].into(), ..config() };
    let object = pod("web").container(container("app").env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)).build();
    let (out, _) = create(&object, WorkloadKind::Pod, &config);
    assert_eq!(var(&out, WorkloadKind::Pod, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(), Some(endpoint));
    assert_eq!(var(&out, WorkloadKind::Pod, 0, "OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(), protocol);
    assert_eq!(var(&out, WorkloadKind::Pod, 0, "OTEL_EXPORTER_OTLP_HEADERS"), None, "the gateway's header");
}

// 7. `$` in resource-attribute keys is escaped as in values.
#[test]
fn dollar_signs_in_attribute_keys_are_escaped() {
    let object = pod("web")
        .annotation("resource.opentelemetry.io/a$(OTEL_SERVICE_NAME)", "1")
        .container(container("app"))
        .build();
    let (out, _) = create(&object, WorkloadKind::Pod, &config());
    let attrs = var(&out, WorkloadKind::Pod, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    assert!(attrs.ends_with(",a$$(OTEL_SERVICE_NAME)=1"), "{attrs}");
}

// 8. Endpoint values are fully validated.
#[rstest]
#[case("http://x:99999", "has a port outside 1-65535")]
#[case("http://x:0", "has a port outside 1-65535")]
#[case("ftp://x", "must be an http(s) URL")]
#[case("http://", "must be an http(s) URL")]
fn an_invalid_endpoint_annotation_is_ignored_with_a_warning(#[case] value: &str, #[case] reason: &str) {
    let object = pod("web").annotation("otel-injector.io/endpoint", value).container(container("app")).build();
    let (out, m) = create(&object, WorkloadKind::Pod, &config());
    assert_eq!(
        var(&out, WorkloadKind::Pod, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some(config().endpoint.as_str())
    );
    let warning = &m.warnings.as_slice()[0];
    assert!(warning.contains(reason), "{warning}");
}

// 10. The collector's health_check binds an IPv6 pod IP too.
#[test]
fn the_health_check_endpoint_is_bracketed_for_ipv6_pod_ips() {
    let sidecar =
        Config { sidecar: crate::engine::config::SidecarConfig { enabled: true, ..Default::default() }, ..config() };
    let (out, _) = create(&pod("web").container(container("app")).build(), WorkloadKind::Pod, &sidecar);
    let collector = out["spec"]["initContainers"][0]["env"].to_string();
    assert!(collector.contains("endpoint: '[$${env:OTEL_COLLECTOR_POD_IP}]:13133'"), "{collector}");
}

// 11. GOMEMLIMIT never renders as 0MiB (the config refuses a memory limit under 16Mi).
#[rstest]
#[case("16Mi", "12MiB")]
#[case("256Mi", "204MiB")]
#[case("1Gi", "819MiB")]
fn gomemlimit_is_80_percent_of_the_memory_limit(#[case] limit: &str, #[case] want: &str) {
    let mut config = config();
    config.sidecar.enabled = true;
    config.sidecar.resources.limits.insert("memory".into(), limit.into());
    config.sidecar.resources.requests.insert("memory".into(), limit.into());
    config.validate().expect("valid");
    let (out, _) = create(&pod("web").container(container("app")).build(), WorkloadKind::Pod, &config);
    let env = &out["spec"]["initContainers"][0]["env"];
    let gomemlimit = env.as_array().into_iter().flatten().find(|e| e["name"] == "GOMEMLIMIT").expect("set");
    assert_eq!(gomemlimit["value"], want);
}

// 12. The patched object stays valid: annotations stay under 256 KiB.
#[test]
fn an_object_near_the_annotation_limit_is_instrumented_without_the_status() {
    let big = "x".repeat(MAX_ANNOTATION_BYTES - 100);
    let object = pod("web").annotation("big", &big).container(container("app")).build();
    let (out, m) = create(&object, WorkloadKind::Pod, &config());
    assert!(out["metadata"]["annotations"].get("otel-injector.io/status").is_none());
    assert!(var(&out, WorkloadKind::Pod, 0, "OTEL_SERVICE_NAME").is_some(), "the environment is still injected");
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("over 256 KiB")), "{:?}", m.warnings);
}

// 13. `excludedNamespaces` in a config file adds to the built-in ones.
#[test]
fn excluded_namespaces_in_a_file_add_to_the_built_in_ones() {
    let config = Config::from_yaml("default: inject\nexcludedNamespaces: [legacy]\n").expect("valid");
    for namespace in ["kube-system", "kube-public", "kube-node-lease", "legacy"] {
        let (_, m) = create_in(&pod("web").container(container("app")).build(), WorkloadKind::Pod, &config, namespace);
        assert!(m.patch.0.is_empty(), "{namespace} is never instrumented");
        assert_eq!(m.explanation.decision.reason, format!("namespace {namespace} is excluded"));
    }
}

// 14. An empty container list is a warning; a user's own `otel-collector` container is an app container.
#[test]
fn an_empty_container_names_annotation_warns_and_instruments_every_container() {
    let object = pod("web").annotation("otel-injector.io/container-names", "").container(container("app")).build();
    let (out, m) = create(&object, WorkloadKind::Pod, &config());
    assert!(var(&out, WorkloadKind::Pod, 0, "OTEL_SERVICE_NAME").is_some());
    assert_eq!(
        m.warnings.as_slice(),
        ["otel-injector.io/container-names=\"\" on annotation ignored: names no container; using every app container"]
    );
}

#[test]
fn a_users_own_otel_collector_container_is_an_app_container() {
    let own = container("otel-collector").image("my/collector:1").env("OTEL_COLLECTOR_CONFIG", "receivers: {}");
    let object = pod("web").container(container("app")).container(own).build();
    let sidecar =
        Config { sidecar: crate::engine::config::SidecarConfig { enabled: true, ..Default::default() }, ..config() };
    let (out, m) = create(&object, WorkloadKind::Pod, &sidecar);
    assert!(var(&out, WorkloadKind::Pod, 1, "OTEL_SERVICE_NAME").is_some(), "instrumented like any other");
    assert!(m.explanation.sidecar.starts_with("refused: a container named otel-collector already exists"));
    assert_eq!(
        var(&out, WorkloadKind::Pod, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some(config().endpoint.as_str()),
        "not pointed at a sidecar that is not ours"
    );
}

// 15. OTEL_TRACES_SAMPLER_ARG is written in a short canonical form.
#[rstest]
#[case("-0", "0")]
#[case("0.30000000000000004", "0.3")]
#[case("0.333333333333333333333", "0.333333")]
#[case(&format!("0.{}1", "0".repeat(299)), "1e-300")]
fn the_sampler_arg_is_short_and_canonical(#[case] ratio: &str, #[case] want: &str) {
    let object = pod("web").annotation("otel-injector.io/sampling-ratio", ratio).container(container("app")).build();
    let (out, _) = create(&object, WorkloadKind::Pod, &config());
    assert_eq!(var(&out, WorkloadKind::Pod, 0, "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some(want));
}

/// Every variable of the table, read from the table: written on CREATE, recorded, and on a later UPDATE put back
/// when deleted and left alone once the user edited it. Three containers between them get every variable: one plain,
/// one sending traces to its own endpoint on 4318 and one sending metrics to its own on 4317 (those two get the
/// per-signal protocol and header variables).
#[test]
fn every_variable_of_the_table_is_recorded_put_back_and_left_to_the_user_once_edited() {
    let with_headers = Config { headers: [("X-Scope-OrgID".into(), "prod".into())].into(), ..config() };
    let object = pod("")
        .container(container("app").image("web:1"))
        .container(container("vendor").image("web:1").env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://v:4318"))
        .container(container("metrics").image("web:1").env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4317"))
        .template_of("Deployment", "web");
    let (before, m) = create(&object, WorkloadKind::Deployment, &with_headers);
    let status = Status::read(&PodView::parse(&before.to_string(), WorkloadKind::Deployment).expect("valid"))
        .expect("status annotation");
    let names = ["app", "vendor", "metrics"];
    let written_in = |name: &str| (0..3).find(|&i| var(&before, WorkloadKind::Deployment, i, name).is_some());
    for v in vars::VARS {
        let i = written_in(v.name).unwrap_or_else(|| panic!("{} written in some container: {m:?}", v.name));
        if v.source != Source::MergedAttributes {
            let record = record::Record::parse(status.env.get(names[i]).expect("a record"));
            assert!(record.recorded(v.name), "{} recorded in {:?}", v.name, status.env);
        }
    }
    for v in vars::literals() {
        let i = written_in(v.name).expect("written");
        let mut edited = before.clone();
        set_var(&mut edited, WorkloadKind::Deployment, i, v.name, "the-users-own");
        set_image(&mut edited, "web:2");
        let (out, _) = update(&before, &edited, WorkloadKind::Deployment, &with_headers);
        assert_eq!(var(&out, WorkloadKind::Deployment, i, v.name).as_deref(), Some("the-users-own"), "{}", v.name);
        // The others are still the webhook's: one the webhook set, since deleted, comes back.
        let mut removed = before.clone();
        let path = format!("/spec/template/spec/containers/{i}/env");
        let env = removed.pointer_mut(&path).and_then(Value::as_array_mut);
        env.expect("env").retain(|e| e["name"] != v.name);
        set_image(&mut removed, "web:2");
        let (out, _) = update(&before, &removed, WorkloadKind::Deployment, &with_headers);
        assert_eq!(
            var(&out, WorkloadKind::Deployment, i, v.name),
            var(&before, WorkloadKind::Deployment, i, v.name),
            "{} put back",
            v.name
        );
    }
}
