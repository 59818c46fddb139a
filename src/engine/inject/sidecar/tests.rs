//! Sidecar rules (SPEC §6), through the whole engine and a real JSON Patch apply.

use super::collector::POD_IP_VAR;
use super::*;
use crate::engine::config::DefaultMode;
use crate::engine::inject::{Target, mutate};
use crate::engine::policy::NamespaceMeta;
use crate::engine::syntax::KubeVersion;
use crate::engine::workload::WorkloadKind;
use crate::testing::fixtures::{PodBuilder, container, pod};
use rstest::rstest;
use serde_json::{Value, json};

fn config(mode: SidecarMode) -> Config {
    let mut config =
        Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    config.sidecar.enabled = true;
    config.sidecar.mode = mode;
    config.headers.insert("X-Scope-OrgID".into(), "prod".into());
    config.sampling_ratio = 0.25;
    config
}

fn run_with(object: &Value, kind: WorkloadKind, config: &Config) -> (Value, crate::engine::inject::Mutation) {
    let ns = NamespaceMeta::default();
    let m = mutate(object, &Target::new(kind, "shop", &ns, config));
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    (out, m)
}

fn run(object: &Value) -> (Value, crate::engine::inject::Mutation) {
    run_with(object, WorkloadKind::Pod, &config(SidecarMode::Native))
}

fn web() -> PodBuilder {
    pod("web").container(container("app").image("web:1"))
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|c| c["name"] == name)
}

fn env(c: &Value, name: &str) -> Option<String> {
    named(&c["env"], name).and_then(|e| e["value"].as_str()).map(str::to_owned)
}

/// The kubelet's expansion of an env value (`$$` → `$`, `$(VAR)` → its value when defined earlier).
fn kubelet_expand(value: &str, defined: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|t| t.find(')').map(|c| (t, c))) {
            let (t, c) = close;
            match defined.iter().find(|(k, _)| *k == &t[..c]) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({})", &t[..c])),
            }
            rest = &t[c + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out + rest
}

#[test]
fn native_sidecar_is_appended_to_init_containers() {
    let object = web().init_container(container("migrate").image("migrate:1")).build();
    let (out, m) = run(&object);
    let init = out["spec"]["initContainers"].as_array().expect("init containers");
    assert_eq!(init.len(), 2);
    assert_eq!(init[0], object["spec"]["initContainers"][0], "existing init containers are kept, first");
    assert_eq!(init[1]["name"], NAME);
    assert_eq!(init[1]["restartPolicy"], "Always");
    assert_eq!(init[1]["image"], crate::engine::config::DEFAULT_COLLECTOR_IMAGE);
    assert_eq!(init[1]["args"], json!(["--config=env:OTEL_COLLECTOR_CONFIG"]));
    assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
    assert!(m.explanation.sidecar.starts_with("added as a native sidecar"));
    let status: serde_json::Value =
        serde_json::from_str(out["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("status"))
            .expect("json");
    assert_eq!(status["sidecar"], "native");
}

#[test]
fn pods_without_init_containers_get_the_list_created() {
    let (out, m) = run(&web().build());
    assert_eq!(out["spec"]["initContainers"].as_array().map(Vec::len), Some(1));
    assert!(m.patch.0.iter().any(|op| op.path().as_str() == "/spec/initContainers"));
}

#[test]
fn classic_sidecar_is_a_regular_container_that_is_not_instrumented() {
    let (out, _) = run_with(&web().build(), WorkloadKind::Pod, &config(SidecarMode::Classic));
    let sidecar = named(&out["spec"]["containers"], NAME).expect("added to containers");
    assert!(sidecar.get("restartPolicy").is_none());
    assert!(out["spec"].get("initContainers").is_none());
    assert_eq!(env(sidecar, "OTEL_SERVICE_NAME"), None, "the collector is not instrumented");
    let (again, m) = run_with(&out, WorkloadKind::Pod, &config(SidecarMode::Classic));
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
    assert_eq!(again, out);
}

#[rstest]
#[case("grpc", "http://localhost:4317")]
#[case("http/protobuf", "http://localhost:4318")]
fn applications_export_to_the_sidecar(#[case] protocol: &str, #[case] endpoint: &str) {
    let object = web().annotation("otel-injector.io/protocol", protocol).build();
    let (out, _) = run(&object);
    let app = &out["spec"]["containers"][0];
    assert_eq!(env(app, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(), Some(endpoint));
    assert_eq!(env(app, "OTEL_EXPORTER_OTLP_HEADERS"), None, "the sidecar adds the tenant header");
    assert_eq!(env(app, "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("1"), "the sidecar samples");
}

#[test]
fn a_users_own_endpoint_is_kept() {
    let object = pod("web").container(container("app").env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://mine:4317")).build();
    let (out, _) = run(&object);
    assert_eq!(env(&out["spec"]["containers"][0], "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(), Some("http://mine:4317"));
}

#[test]
fn resources_and_a_restricted_security_context() {
    let (out, _) = run(&web().build());
    let sidecar = &out["spec"]["initContainers"][0];
    assert_eq!(
        sidecar["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}})
    );
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["port"], 13133);
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], 13133);
    assert_eq!(env(sidecar, "GOMEMLIMIT").as_deref(), Some("204MiB"));
}

#[test]
fn the_collector_receives_its_configuration_verbatim_after_kubelet_expansion() {
    let (out, _) = run(&web().annotation("otel-injector.io/service-name", "a$(B)").build());
    let sidecar = &out["spec"]["initContainers"][0];
    let raw = env(sidecar, CONFIG_VAR).expect("config variable");
    let expanded = kubelet_expand(&raw, &[("B", "expanded!")]);
    assert!(!expanded.contains("expanded!"));
    let config: Value = serde_yaml_ng::from_str(&expanded).expect("YAML");
    assert_eq!(collector::inconsistencies(&config), Vec::<String>::new());
    assert_eq!(config["extensions"]["health_check"]["endpoint"], "[${env:OTEL_COLLECTOR_POD_IP}]:13133");
    assert_eq!(config["exporters"]["otlp_grpc"]["headers"]["X-Scope-OrgID"], "prod");
    assert_eq!(config["processors"]["probabilistic_sampler"]["sampling_percentage"], 25.0);
    for var in [
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
        "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
        POD_IP_VAR,
    ] {
        assert!(named(&sidecar["env"], var).is_some_and(|e| e["valueFrom"]["fieldRef"].is_object()), "{var}");
    }
}

#[test]
fn kubelet_model_matches_the_documented_rules() {
    assert_eq!(kubelet_expand("$$(A) $(A) $(Z) $x $", &[("A", "1")]), "$(A) 1 $(Z) $x $");
}

#[rstest]
#[case::own_container_name(web().container(container("otel-collector").image("mine")), "a container named otel-collector already exists")]
#[case::grpc_port(web().container(container("agent").port(4317)), "container agent uses port 4317, which the sidecar needs")]
#[case::http_port(web().init_container(container("proxy").port(4318)), "container proxy uses port 4318, which the sidecar needs")]
#[case::health_port(web().container(container("agent").port(13133)), "container agent uses port 13133, which the sidecar needs")]
#[case::host_network(web().spec("hostNetwork", json!(true)), "the pod uses hostNetwork, its ports would bind on the node")]
#[case::no_signals(web().annotation("otel-injector.io/signals", ""), "no signals are enabled")]
#[case::windows(web().spec("os", json!({"name": "windows"})), "a Windows pod cannot run the Linux collector")]
#[case::pod_resources_too_small(
    web().spec("resources", json!({"requests": {"cpu": "20m", "memory": "1Gi"}})),
    "pod resources (cpu 20m) leave no room for its 50m")]
#[case::pod_limits_only(
    pod("web").container(container("app").field("resources", json!({"requests": {"memory": "200Mi"}})))
        .spec("resources", json!({"limits": {"memory": "256Mi"}})),
    "pod resources (memory 256Mi) leave no room for its 64Mi")]
#[case::beside_a_sidecar_of_its_own(
    web().init_container(container("proxy").field("restartPolicy", json!("Always"))
        .field("resources", json!({"limits": {"cpu": "1"}})))
        .spec("resources", json!({"requests": {"cpu": "1"}})),
    "pod resources (cpu 1) leave no room for its 50m")]
fn refusals_warn_and_still_inject_the_environment(#[case] builder: PodBuilder, #[case] why: &str) {
    let object = builder.build();
    let (out, m) = run(&object);
    assert_eq!(out["spec"].get("initContainers"), object["spec"].get("initContainers"), "no sidecar");
    assert_eq!(m.warnings.as_slice(), [format!("otel-injector added no collector sidecar: {why}")]);
    assert_eq!(m.explanation.sidecar, format!("refused: {why}"));
    let app = &out["spec"]["containers"][0];
    assert_eq!(
        env(app, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://otel-collector.monitoring.svc.cluster.local:4317"),
        "without a sidecar the app exports to the gateway"
    );
    assert_eq!(env(app, "OTEL_EXPORTER_OTLP_HEADERS").as_deref(), Some("X-Scope-OrgID=prod"));
    let status = out["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("status");
    assert!(status.contains(&format!("\"sidecar\":\"refused: {why}\"")), "{status}");
}

#[test]
fn a_pod_whose_own_resources_hold_the_sidecar_gets_it() {
    let object = pod("web")
        .container(container("app").field("resources", json!({"requests": {"cpu": "200m", "memory": "128Mi"}})))
        .init_container(container("migrate").field("resources", json!({"requests": {"cpu": "4"}})))
        .spec("resources", json!({"requests": {"cpu": "250m", "memory": "192Mi"}}))
        .build();
    let (out, m) = run(&object);
    assert!(named(&out["spec"]["initContainers"], "otel-collector").is_some(), "{:?}", m.warnings);
}

#[test]
fn never_added_twice_on_readmission() {
    let (once, _) = run(&web().build());
    let (twice, m) = run(&once);
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
    assert_eq!(once, twice);
    assert_eq!(m.explanation.sidecar, "already present (native)");
}

#[test]
fn a_sidecar_with_api_server_defaults_is_recognised() {
    let (mut once, _) = run(&web().build());
    let sidecar = &mut once["spec"]["initContainers"][0];
    sidecar["imagePullPolicy"] = "IfNotPresent".into();
    sidecar["terminationMessagePath"] = "/dev/termination-log".into();
    sidecar["terminationMessagePolicy"] = "File".into();
    sidecar["resources"]["requests"]["ephemeral-storage"] = "0".into();
    sidecar["livenessProbe"]["timeoutSeconds"] = 1.into();
    sidecar["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] = "v1".into();
    // Without the status annotation, recognition rests on the container itself.
    if let Some(a) = once["metadata"]["annotations"].as_object_mut() {
        a.remove("otel-injector.io/status");
    }
    let (_, m) = run(&once);
    assert!(!m.patch.0.iter().any(|op| op.path().as_str().contains("initContainers")), "{:?}", m.patch);
    assert_eq!(m.patch.0.len(), 1, "only the status annotation is restored: {:?}", m.patch);
}

#[test]
fn reinvocation_after_another_webhook_adds_nothing() {
    let (mut once, _) = run(&web().build());
    // Istio adds its own native sidecar in front, and a proxy container.
    if let Some(init) = once["spec"]["initContainers"].as_array_mut() {
        init.insert(0, json!({"name": "istio-init", "image": "istio/proxyv2"}));
    }
    if let Some(c) = once["spec"]["containers"].as_array_mut() {
        c.push(json!({"name": "istio-proxy", "image": "istio/proxyv2", "ports": [{"containerPort": 15090}]}));
    }
    let (_, m) = run(&once);
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
}

#[test]
fn a_pod_created_from_an_injected_template_gets_nothing_more() {
    let deployment = web().template_of("Deployment", "web");
    let (instrumented, _) = run_with(&deployment, WorkloadKind::Deployment, &config(SidecarMode::Native));
    let mut created = instrumented["spec"]["template"].clone();
    created["metadata"]["generateName"] = "web-5d8f-".into();
    created["metadata"]["labels"] = json!({"pod-template-hash": "5d8f"});
    created["metadata"]["ownerReferences"] = json!([{"kind": "ReplicaSet", "name": "web-5d8f", "controller": true}]);
    let (_, m) = run(&created);
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
}

#[rstest]
#[case(WorkloadKind::Job, "/spec/template/spec/initContainers")]
#[case(WorkloadKind::CronJob, "/spec/jobTemplate/spec/template/spec/initContainers")]
fn jobs_and_cronjobs_get_native_sidecars(#[case] kind: WorkloadKind, #[case] pointer: &str) {
    let object = web().spec("restartPolicy", json!("Never")).template_of(kind.as_str(), "nightly");
    let (out, m) = run_with(&object, kind, &config(SidecarMode::Native));
    let init = out.pointer(pointer).and_then(Value::as_array).expect("init containers");
    assert_eq!((init[0]["name"].as_str(), init[0]["restartPolicy"].as_str()), (Some(NAME), Some("Always")));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let (_, classic) = run_with(&object, kind, &config(SidecarMode::Classic));
    assert!(classic.warnings.as_slice().iter().any(|w| w.contains("use sidecar.mode: auto")), "{:?}", classic.warnings);
}

fn run_on(object: &Value, config: &Config, version: Option<(u32, u32)>) -> (Value, crate::engine::inject::Mutation) {
    let ns = NamespaceMeta::default();
    let server_version = version.map(|(major, minor)| KubeVersion { major, minor });
    let m = mutate(object, &Target { server_version, ..Target::new(WorkloadKind::Pod, "shop", &ns, config) });
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    (out, m)
}

/// `sidecar.mode: auto` (the default): native where the API server keeps `restartPolicy` on init containers
/// (1.29+, or unknown: no cluster, preview), classic on older servers, which would refuse the pod otherwise.
#[rstest]
#[case::unknown(SidecarMode::Auto, None, Placement::Native, "native")]
#[case::v1_29(SidecarMode::Auto, Some((1, 29)), Placement::Native, "native")]
#[case::v1_33(SidecarMode::Auto, Some((1, 33)), Placement::Native, "native")]
#[case::v1_28(SidecarMode::Auto, Some((1, 28)), Placement::Classic, "classic: Kubernetes 1.28 lacks native sidecars (1.29+)")]
#[case::v1_20(SidecarMode::Auto, Some((1, 20)), Placement::Classic, "classic: Kubernetes 1.20 lacks native sidecars (1.29+)")]
#[case::forced_native(SidecarMode::Native, Some((1, 20)), Placement::Native, "native")]
#[case::forced_classic(SidecarMode::Classic, Some((1, 33)), Placement::Classic, "classic")]
fn auto_mode_follows_the_server_version(
    #[case] mode: SidecarMode,
    #[case] version: Option<(u32, u32)>,
    #[case] want: Placement,
    #[case] status_text: &str,
) {
    let (out, m) = run_on(&web().build(), &config(mode), version);
    let in_init = named(&out["spec"]["initContainers"], NAME).is_some();
    let in_containers = named(&out["spec"]["containers"], NAME).is_some();
    assert_eq!((in_init, in_containers), (want == Placement::Native, want == Placement::Classic));
    let status: Value =
        serde_json::from_str(out["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("status"))
            .expect("json");
    assert_eq!(status["sidecar"], status_text);
    assert!(m.explanation.sidecar.contains("because"), "{}", m.explanation.sidecar);
    let (again, m) = run_on(&out, &config(mode), version);
    assert!(m.patch.0.is_empty(), "a second pass is a no-op: {:?}", m.patch);
    assert_eq!(again, out);
}

#[test]
fn the_server_version_changes_the_hash_only_when_the_placement_changes() {
    let hash = |version| {
        let (_, m) = run_on(&web().build(), &config(SidecarMode::Auto), version);
        m.explanation.hash.expect("instrumented")
    };
    assert_eq!(hash(Some((1, 29))), hash(Some((1, 31))));
    assert_eq!(hash(Some((1, 29))), hash(None));
    assert_ne!(hash(Some((1, 28))), hash(Some((1, 29))));
}

#[test]
fn sidecar_is_off_unless_requested_and_a_namespace_can_request_it() {
    let mut config = config(SidecarMode::Native);
    config.sidecar.enabled = false;
    let (out, m) = run_with(&web().build(), WorkloadKind::Pod, &config);
    assert!(out["spec"].get("initContainers").is_none());
    assert_eq!(m.explanation.sidecar, "not requested");
    let ns = NamespaceMeta {
        annotations: [("otel-injector.io/sidecar".to_owned(), "true".to_owned())].into(),
        ..NamespaceMeta::default()
    };
    let m = mutate(&web().build(), &Target::new(WorkloadKind::Pod, "shop", &ns, &config));
    assert!(m.explanation.sidecar.starts_with("added"));
}

#[test]
fn the_sidecar_changes_the_settings_hash() {
    let status = |enabled: bool| {
        let mut config = config(SidecarMode::Native);
        config.sidecar.enabled = enabled;
        let (out, _) = run_with(&web().build(), WorkloadKind::Pod, &config);
        out["metadata"]["annotations"]["otel-injector.io/status"].clone()
    };
    assert_ne!(status(true), status(false));
}

/// The collector configuration the sidecar of `out` carries, as the collector reads it.
fn configuration(out: &Value) -> String {
    let sidecar = named(&out["spec"]["initContainers"], NAME).expect("the sidecar");
    kubelet_expand(&env(sidecar, CONFIG_VAR).expect("config variable"), &[])
}

#[rstest]
#[case::a_name_yaml_writes_as_it_is("shop")]
#[case::a_name_yaml_quotes("123")]
#[case::a_name_that_reads_as_a_number("1e3")]
fn the_sidecar_carries_the_configuration_the_yaml_emitter_writes(#[case] namespace: &str) {
    let config = config(SidecarMode::Native);
    let object = web().owner("ReplicaSet", "web-5d8f9c7b6").label("pod-template-hash", "5d8f9c7b6").build();
    let ns = NamespaceMeta::default();
    let m = mutate(&object, &Target::new(WorkloadKind::Pod, namespace, &ns, &config));
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    let owners = crate::engine::workload::Owners {
        deployment: Some("web".into()),
        replicaset: Some("web-5d8f9c7b6".into()),
        ..Default::default()
    };
    let signals = config.signals.clone();
    let inputs = collector::Inputs {
        namespace,
        owners: &owners,
        signals: &signals,
        sampling_ratio: 0.25,
        headers: &config.headers,
        sidecar: &config.sidecar,
    };
    assert_eq!(configuration(&out), collector::render(&inputs));
}

#[test]
fn a_configuration_changed_in_place_is_not_served_the_text_made_before() {
    let mut config = config(SidecarMode::Native);
    let (out, _) = run_with(&web().build(), WorkloadKind::Pod, &config);
    assert!(configuration(&out).contains("X-Scope-OrgID: prod"));
    config.headers.insert("X-Scope-OrgID".into(), "staging".into());
    config.sidecar.image = "collector:2".into();
    let (out, _) = run_with(&web().build(), WorkloadKind::Pod, &config);
    assert!(configuration(&out).contains("X-Scope-OrgID: staging"), "{}", configuration(&out));
    assert_eq!(named(&out["spec"]["initContainers"], NAME).expect("the sidecar")["image"], "collector:2");
}
