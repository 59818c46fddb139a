//! Agent tests: one case per rule of SPEC §10, through [`crate::engine::inject::mutate`] and a real JSON Patch apply.

use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::engine::config::DefaultMode;
use crate::engine::inject::{Mutation, Target, mutate};
use crate::engine::policy::NamespaceMeta;
use crate::engine::workload::WorkloadKind;
use crate::testing::fixtures::{container, pod};

const JAVA: &str = "otel-injector.io/inject-java";
const JAVA_TOKEN: &str = "-javaagent:/otel-auto-instrumentation-java/javaagent.jar";

fn run_at(object: &Value, kind: WorkloadKind, config: &Config, version: Option<&str>) -> (Value, Mutation) {
    let ns = NamespaceMeta::default();
    let mut target = Target::new(kind, "shop", &ns, config);
    target.server_version = version.map(|v| KubeVersion::parse(v).expect("version"));
    let m = mutate(object, &target);
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    (out, m)
}

/// A Deployment UPDATE from `before` to `after` on a server of `version`: the object as patched, and the answer.
fn update(before: &Value, after: &Value, config: &Config, version: &str) -> (Value, Mutation) {
    let old = before["spec"]["template"].to_string();
    let ns = NamespaceMeta::default();
    let target = Target {
        server_version: KubeVersion::parse(version).ok(),
        old_template: Some(&old),
        ..Target::new(WorkloadKind::Deployment, "shop", &ns, config)
    };
    let m = mutate(after, &target);
    let mut out = after.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("the patch applies");
    (out, m)
}

/// Container `app` with these fields.
fn with_fields(fields: &Value) -> crate::testing::fixtures::ContainerBuilder {
    let fields = fields.as_object().into_iter().flatten();
    fields.fold(container("app"), |c, (k, v)| c.field(k, v.clone()))
}

/// The names of container 0's variables.
fn var_names(spec: &Value) -> Vec<String> {
    let env = spec["containers"][0]["env"].as_array().cloned().unwrap_or_default();
    env.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect()
}

fn run(object: &Value, version: Option<&str>) -> (Value, Mutation) {
    run_at(object, WorkloadKind::Pod, &Config::default(), version)
}

fn env(object: &Value, container: usize, name: &str) -> Option<String> {
    let list = object["spec"]["containers"][container]["env"].as_array()?;
    list.iter().rev().find(|e| e["name"] == name).and_then(|e| e["value"].as_str()).map(str::to_owned)
}

fn java_pod() -> crate::testing::fixtures::PodBuilder {
    pod("web").annotation(JAVA, "true")
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect()
}

#[rstest]
#[case::unknown_version(None, Delivery::InitContainer)]
#[case::old_server(Some("1.20"), Delivery::InitContainer)]
#[case::before_image_volumes(Some("1.34"), Delivery::InitContainer)]
#[case::image_volumes_on(Some("1.35"), Delivery::ImageVolume)]
#[case::current(Some("1.37"), Delivery::ImageVolume)]
fn auto_delivery_follows_the_server_version(#[case] version: Option<&str>, #[case] want: Delivery) {
    let (out, m) = run(&java_pod().container(container("app")).build(), version);
    let volume = &out["spec"]["volumes"][0];
    assert_eq!(volume["name"], "otel-agent-java");
    match want {
        Delivery::ImageVolume => {
            assert_eq!(volume["image"]["reference"], LANGUAGES[0].default_image);
            assert!(out["spec"].get("initContainers").is_none(), "nothing to copy");
        }
        _ => {
            assert_eq!(volume["emptyDir"]["sizeLimit"], "200Mi");
            let init = &out["spec"]["initContainers"][0];
            assert_eq!(init["name"], "otel-agent-java");
            assert_eq!(init["command"], json!(["cp", "-r", "/javaagent.jar", "/otel-auto-instrumentation-java/"]));
        }
    }
    assert_eq!(env(&out, 0, "JAVA_TOOL_OPTIONS").as_deref(), Some(JAVA_TOKEN));
    let mount = &out["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        mount,
        &json!({"name": "otel-agent-java", "mountPath": "/otel-auto-instrumentation-java", "readOnly": true})
    );
    let status = crate::engine::inject::status::Status::read(
        &crate::engine::pod_view::PodView::parse(&out.to_string(), WorkloadKind::Pod).expect("valid"),
    )
    .expect("status");
    assert_eq!(status.agents.get("app"), Some(&vec!["java".to_owned()]));
    assert_eq!(status.agent_delivery.as_deref(), Some(want.as_str()));
    assert!(m.explanation.notes.iter().any(|n| n.contains(want.as_str())), "{:?}", m.explanation.notes);
}

#[rstest]
#[case::image_volume(Delivery::ImageVolume)]
#[case::init_container(Delivery::InitContainer)]
fn configured_delivery_wins_over_the_version(#[case] delivery: Delivery) {
    let mut config = Config::default();
    config.agents.delivery = delivery;
    let (out, _) = run_at(&java_pod().container(container("app")).build(), WorkloadKind::Pod, &config, Some("1.30"));
    let volume = &out["spec"]["volumes"][0];
    assert_eq!(volume.get("image").is_some(), delivery == Delivery::ImageVolume, "{volume}");
}

#[test]
fn the_init_container_satisfies_restricted() {
    let (out, _) = run(&java_pod().container(container("app")).build(), Some("1.20"));
    let sc = &out["spec"]["initContainers"][0]["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["runAsNonRoot"], true);
    assert!(sc["runAsUser"].as_u64().is_some_and(|u| u > 0));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    let resources = &out["spec"]["initContainers"][0]["resources"];
    assert!(resources["limits"]["memory"].is_string() && resources["requests"]["cpu"].is_string(), "{resources}");
}

#[rstest]
#[case::java("java", "JAVA_TOOL_OPTIONS", "-Xmx1g", "-Xmx1g -javaagent:/otel-auto-instrumentation-java/javaagent.jar")]
#[case::nodejs(
    "nodejs",
    "NODE_OPTIONS",
    "--max-old-space-size=512",
    "--max-old-space-size=512 --require /otel-auto-instrumentation-nodejs/autoinstrumentation/autoinstrumentation.js"
)]
#[case::python(
    "python",
    "PYTHONPATH",
    "/app/lib",
    "/otel-auto-instrumentation-python/autoinstrumentation/opentelemetry/instrumentation/auto_instrumentation:\
     /otel-auto-instrumentation-python/autoinstrumentation:/app/lib"
)]
fn a_users_value_is_extended_never_replaced(
    #[case] language: &str,
    #[case] var: &str,
    #[case] users: &str,
    #[case] want: &str,
) {
    let object = pod("web")
        .annotation(&format!("otel-injector.io/inject-{language}"), "true")
        .container(container("app").env(var, users))
        .build();
    let (out, _) = run(&object, None);
    assert_eq!(env(&out, 0, var).as_deref(), Some(want));
    // Idempotent: a second admission changes nothing.
    let (again, _) = run(&out, None);
    assert_eq!(again, out);
}

#[rstest]
#[case::javaagent("JAVA_TOOL_OPTIONS", json!({"value": "-javaagent:/dd/dd-java-agent.jar"}), "already activates")]
#[case::value_from("JAVA_TOOL_OPTIONS", json!({"valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}}), "valueFrom")]
#[case::preload("LD_PRELOAD", json!({"value": "/usr/lib/libinject.so"}), "LD_PRELOAD")]
fn a_container_that_already_loads_an_agent_is_left_alone(#[case] name: &str, #[case] entry: Value, #[case] why: &str) {
    let mut e = json!({"name": name});
    e.as_object_mut().expect("object").extend(entry.as_object().expect("object").clone());
    let object = java_pod().container(container("app").env_entry(e.clone())).build();
    let (out, m) = run(&object, None);
    let list = &out["spec"]["containers"][0]["env"];
    assert!(list.as_array().expect("env").contains(&e), "the user's entry is untouched: {list}");
    assert_eq!(env(&out, 0, "JAVA_TOOL_OPTIONS").filter(|v| v.contains(JAVA_TOKEN)), None);
    assert!(out["spec"].get("volumes").is_none(), "{}", out["spec"]);
    assert!(
        m.warnings.as_slice().iter().any(|w| w.contains("no java agent added") && w.contains(why)),
        "{:?}",
        m.warnings
    );
}

#[rstest]
#[case::node_require("nodejs", "NODE_OPTIONS", "--require dd-trace/init")]
#[case::python_path("python", "PYTHONPATH", "/opt/opentelemetry/site")]
fn each_languages_own_agent_is_recognised(#[case] language: &str, #[case] var: &str, #[case] value: &str) {
    let object = pod("web")
        .annotation(&format!("otel-injector.io/inject-{language}"), "true")
        .container(container("app").env(var, value))
        .build();
    let (out, m) = run(&object, None);
    assert_eq!(env(&out, 0, var).as_deref(), Some(value));
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("already activates")), "{:?}", m.warnings);
}

#[test]
fn windows_pods_get_no_linux_agent() {
    let object = java_pod().spec("os", json!({"name": "windows"})).container(container("app")).build();
    let (out, m) = run(&object, Some("1.37"));
    assert!(out["spec"].get("volumes").is_none());
    assert_eq!(env(&out, 0, "JAVA_TOOL_OPTIONS"), None);
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("Windows")), "{:?}", m.warnings);
}

#[test]
fn a_users_volume_of_the_same_name_is_never_taken_over() {
    let object = java_pod()
        .spec("volumes", json!([{"name": "otel-agent-java", "emptyDir": {}}]))
        .container(container("app"))
        .build();
    let (out, m) = run(&object, Some("1.37"));
    assert_eq!(out["spec"]["volumes"], json!([{"name": "otel-agent-java", "emptyDir": {}}]));
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("not the webhook's")), "{:?}", m.warnings);
}

#[test]
fn only_where_asked_and_only_the_chosen_containers() {
    let plain = pod("web").annotation("otel-injector.io/inject", "true").container(container("app")).build();
    let (out, _) = run(&plain, Some("1.37"));
    assert!(out["spec"].get("volumes").is_none() && env(&out, 0, "JAVA_TOOL_OPTIONS").is_none());

    let chosen = java_pod()
        .annotation("otel-injector.io/container-names", "app")
        .container(container("app"))
        .container(container("other"))
        .build();
    let (out, _) = run(&chosen, Some("1.37"));
    assert!(env(&out, 0, "JAVA_TOOL_OPTIONS").is_some());
    assert!(env(&out, 1, "JAVA_TOOL_OPTIONS").is_none() && out["spec"]["containers"][1].get("volumeMounts").is_none());
}

#[test]
fn inject_false_as_specific_as_the_agent_wins() {
    let object = java_pod().annotation("otel-injector.io/inject", "false").container(container("app")).build();
    let (_, m) = run(&object, None);
    assert!(m.patch.is_empty(), "{:?}", m.patch);
    // A namespace saying no is overridden by the pod asking for its agent.
    let ns = NamespaceMeta {
        annotations: [("otel-injector.io/inject".to_owned(), "false".to_owned())].into(),
        ..NamespaceMeta::default()
    };
    let config = Config::default();
    let object = java_pod().container(container("app")).build();
    let m = mutate(&object, &Target::new(WorkloadKind::Pod, "shop", &ns, &config));
    assert!(!m.patch.is_empty());
    assert_eq!(m.explanation.decision.reason, "annotation otel-injector.io/inject-java=true");
}

#[test]
fn the_operators_annotation_counts_only_when_the_config_says_so() {
    let object = pod("web")
        .annotation("instrumentation.opentelemetry.io/inject-java", "true")
        .container(container("app"))
        .build();
    let (_, m) = run(&object, Some("1.37"));
    assert!(m.patch.is_empty(), "off by default, so the two never fight");
    let mut config = Config::default();
    config.agents.operator_annotations = true;
    let (out, _) = run_at(&object, WorkloadKind::Pod, &config, Some("1.37"));
    assert_eq!(names(&out["spec"]["volumes"]), ["otel-agent-java"]);
    // Ours wins at the same level.
    let both = pod("web")
        .annotation("instrumentation.opentelemetry.io/inject-java", "true")
        .annotation(JAVA, "false")
        .annotation("otel-injector.io/inject", "true")
        .container(container("app"))
        .build();
    let (out, _) = run_at(&both, WorkloadKind::Pod, &config, Some("1.37"));
    assert!(out["spec"].get("volumes").is_none());
}

#[test]
fn the_python_agent_exports_over_http() {
    let object = pod("web").annotation("otel-injector.io/inject-python", "true").container(container("app")).build();
    let (out, _) = run(&object, None);
    assert_eq!(env(&out, 0, "OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(), Some("http/protobuf"));
    assert_eq!(
        env(&out, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://otel-collector.monitoring.svc.cluster.local:4318")
    );
    let config = Config { endpoint: "http://gateway:9000".to_owned(), ..Config::default() };
    let (_, m) = run_at(&object, WorkloadKind::Pod, &config, None);
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("port 4317")), "{:?}", m.warnings);
}

#[rstest]
#[case::init_to_none("1.20")]
#[case::volume_to_none("1.37")]
fn a_template_that_stops_asking_gets_everything_taken_back(#[case] version: &str) {
    let config = Config { workloads: WorkloadKind::ALL.to_vec(), default: DefaultMode::Skip, ..Config::default() };
    let original = java_pod()
        .annotation("otel-injector.io/inject", "true")
        .container(container("app").env("JAVA_TOOL_OPTIONS", "-Xmx1g"))
        .template_of("Deployment", "web");
    let (instrumented, _) = run_at(&original, WorkloadKind::Deployment, &config, Some(version));
    let mut edited = instrumented.clone();
    let annotations = edited["spec"]["template"]["metadata"]["annotations"].as_object_mut().expect("annotations");
    annotations.remove(JAVA);
    let (out, _) = update(&instrumented, &edited, &config, version);
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(spec["volumes"], json!([]), "{spec}");
    assert!(spec.get("initContainers").is_none_or(|l| l == &json!([])), "{spec}");
    assert_eq!(spec["containers"][0]["volumeMounts"], json!([]));
    let jto = spec["containers"][0]["env"].as_array().expect("env").iter().find(|e| e["name"] == "JAVA_TOOL_OPTIONS");
    assert_eq!(jto.map(|e| e["value"].clone()), Some(json!("-Xmx1g")), "the user's value as it was");
    // A variable the webhook made for the agent alone goes with it.
    let mut asked = out.clone();
    asked["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]);
    asked["spec"]["template"]["metadata"]["annotations"][JAVA] = json!("true");
    let (with_agent, _) = update(&out, &asked, &config, version);
    assert!(var_names(&with_agent["spec"]["template"]["spec"]).contains(&"JAVA_TOOL_OPTIONS".to_owned()));
    let mut off = with_agent.clone();
    off["spec"]["template"]["metadata"]["annotations"][JAVA] = json!("false");
    let (off, _) = update(&with_agent, &off, &config, version);
    assert!(!var_names(&off["spec"]["template"]["spec"]).contains(&"JAVA_TOOL_OPTIONS".to_owned()), "{off}");
}

#[test]
fn a_pod_made_from_an_instrumented_template_is_left_as_it_is() {
    let config = Config { workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    let template = java_pod().container(container("app")).template_of("Deployment", "web");
    let (instrumented, _) = run_at(&template, WorkloadKind::Deployment, &config, Some("1.20"));
    let mut made = instrumented["spec"]["template"].clone();
    made["metadata"]["name"] = json!("web-7d4b9c-abcde");
    made["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "u", "controller": true}]);
    made["metadata"]["labels"] = json!({"pod-template-hash": "7d4b9c"});
    let (_, m) = run_at(&made, WorkloadKind::Pod, &config, Some("1.20"));
    assert!(!m.patch.0.iter().any(|op| op.path.as_str().contains("volume") || op.path.as_str().contains("init")));
}

#[test]
fn endpoint_for_http_swaps_only_the_grpc_port() {
    assert_eq!(endpoint_for("http://gw:4317").as_deref(), Ok("http://gw:4318"));
    assert_eq!(endpoint_for("https://gw.example:4317/").as_deref(), Ok("https://gw.example:4318/"));
    assert_eq!(endpoint_for("http://gw:4318").as_deref(), Ok("http://gw:4318"));
    assert!(endpoint_for("http://gw:9000").is_err());
}

#[test]
fn every_agent_default_image_is_pinned() {
    for language in &LANGUAGES {
        // Each language reads its own section of the config (a language added to the table without its section
        // would read another's).
        assert_eq!(Config::default().agents.of(language).image, language.default_image, "{}", language.name);
        let tag = language.default_image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(!tag.is_empty() && tag != "latest", "{}", language.default_image);
        assert!(language.token.starts_with(['-', '/']) && language.token.contains(language.mount_path));
    }
    // The Java agent the tests run is the default image's.
    let script = include_str!("../../../../scripts/agents.sh");
    let java = LANGUAGES[0].default_image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
    assert!(script.contains(&format!("JAVA_AGENT_VERSION={java}")), "scripts/agents.sh pins another Java agent");
}

#[test]
fn ours_are_found_and_taken_back_among_many_of_the_users() {
    let config = Config { workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    let volumes: Vec<Value> = (0..50).map(|i| json!({"name": format!("v{i}"), "emptyDir": {}})).collect();
    let mounts: Vec<Value> = (0..50).map(|i| json!({"name": format!("v{i}"), "mountPath": format!("/m{i}")})).collect();
    let original = java_pod()
        .annotation("otel-injector.io/inject", "true")
        .spec("volumes", Value::Array(volumes.clone()))
        .container(container("app").field("volumeMounts", Value::Array(mounts.clone())))
        .template_of("Deployment", "web");
    let (instrumented, _) = run_at(&original, WorkloadKind::Deployment, &config, Some("1.37"));
    let spec = &instrumented["spec"]["template"]["spec"];
    assert_eq!(spec["volumes"].as_array().map(Vec::len), Some(51));
    assert_eq!(spec["volumes"][50]["name"], "otel-agent-java");
    let mut edited = instrumented.clone();
    edited["spec"]["template"]["metadata"]["annotations"][JAVA] = json!("false");
    let (out, _) = update(&instrumented, &edited, &config, "1.37");
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(spec["volumes"], Value::Array(volumes), "the user's volumes, in their order");
    assert_eq!(spec["containers"][0]["volumeMounts"], Value::Array(mounts));
    // A reinvocation of the same UPDATE changes nothing more.
    let (_, again) = update(&instrumented, &out, &config, "1.37");
    assert!(again.patch.is_empty(), "{:?}", again.patch);
}

#[test]
fn a_reinvoked_template_with_agents_is_not_patched_again() {
    let config = Config { workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    for version in ["1.20", "1.37"] {
        let original = java_pod().container(container("app")).template_of("Deployment", "web");
        let (instrumented, _) = run_at(&original, WorkloadKind::Deployment, &config, Some(version));
        let (_, m) = update(&original, &instrumented, &config, version);
        assert!(m.patch.is_empty(), "{version}: {:?}", m.patch);
    }
}

#[rstest]
#[case::native_sidecar_and_init_container("1.30", Delivery::InitContainer)]
#[case::classic_sidecar_and_init_container("1.20", Delivery::InitContainer)]
#[case::native_sidecar_and_image_volume("1.37", Delivery::ImageVolume)]
fn agents_beside_the_collector_sidecar(#[case] version: &str, #[case] delivery: Delivery) {
    let mut config = Config::default();
    config.agents.delivery = delivery;
    let object = java_pod().annotation("otel-injector.io/sidecar", "true").container(container("app")).build();
    let (out, m) = run_at(&object, WorkloadKind::Pod, &config, Some(version));
    let inits = names(&out["spec"]["initContainers"]);
    let all = [names(&out["spec"]["containers"]), inits.clone()].concat();
    assert!(all.contains(&"otel-collector"), "{all:?}");
    assert_eq!(inits.contains(&"otel-agent-java"), delivery == Delivery::InitContainer, "{inits:?}");
    assert_eq!(env(&out, 0, "JAVA_TOOL_OPTIONS").as_deref(), Some(JAVA_TOKEN));
    // The application exports to the sidecar, which the agent reads like any SDK.
    assert_eq!(env(&out, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(), Some("http://localhost:4317"));
    let (again, _) = run_at(&out, WorkloadKind::Pod, &config, Some(version));
    assert_eq!(again, out, "{:?}", m.explanation.notes);
}

#[test]
fn a_namespace_asks_for_an_agent_and_a_pod_declines_it() {
    let ns = NamespaceMeta {
        annotations: [(JAVA.to_owned(), "true".to_owned())].into(),
        ..NamespaceMeta::relevant(std::iter::empty(), std::iter::empty())
    };
    let config = Config::default();
    let object = pod("web").container(container("app")).build();
    let m = mutate(&object, &Target::new(WorkloadKind::Pod, "shop", &ns, &config));
    assert_eq!(m.explanation.decision.reason, "namespace annotation otel-injector.io/inject-java=true");
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch.to_json_patch()).expect("applies");
    assert_eq!(env(&out, 0, "JAVA_TOOL_OPTIONS").as_deref(), Some(JAVA_TOKEN));
    let declining = pod("web").annotation(JAVA, "false").container(container("app")).build();
    let m = mutate(&declining, &Target::new(WorkloadKind::Pod, "shop", &ns, &config));
    assert!(m.patch.is_empty(), "the pod's false beats the namespace's true: {:?}", m.patch);
    // The namespace cache keeps the keys the policy reads, the Operator's too.
    let kept = NamespaceMeta::relevant(
        std::iter::empty(),
        [
            (&JAVA.to_owned(), &"true".to_owned()),
            (&"instrumentation.opentelemetry.io/inject-python".to_owned(), &"true".to_owned()),
            (&"unrelated/key".to_owned(), &"x".to_owned()),
        ],
    );
    assert_eq!(kept.annotations.len(), 2, "{kept:?}");
}

#[rstest]
#[case::java_args("java", json!({"command": ["java"], "args": ["-javaagent:/dd/dd-java-agent.jar", "-jar", "app.jar"]}))]
#[case::java_in_a_shell("java", json!({"command": ["sh", "-c", "exec java -javaagent:/x.jar -jar app.jar"]}))]
#[case::node_require("nodejs", json!({"command": ["node", "-r", "dd-trace/init", "server.js"]}))]
#[case::node_import("nodejs", json!({"args": ["--import=@opentelemetry/auto-instrumentations-node/register", "app.mjs"]}))]
#[case::python_launcher("python", json!({"command": ["/usr/local/bin/opentelemetry-instrument", "python", "app.py"]}))]
#[case::ddtrace("python", json!({"command": ["ddtrace-run", "gunicorn", "app:app"]}))]
fn a_command_line_that_loads_an_agent_is_left_alone(#[case] language: &str, #[case] fields: Value) {
    let c = with_fields(&fields);
    let object = pod("web").annotation(&format!("otel-injector.io/inject-{language}"), "true").container(c).build();
    let (out, m) = run(&object, Some("1.37"));
    assert!(out["spec"].get("volumes").is_none(), "{}", out["spec"]);
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("command line already loads")), "{:?}", m.warnings);
}

#[rstest]
#[case::plain_java(json!({"command": ["java", "-Xmx1g", "-jar", "app.jar"]}))]
#[case::a_flag_that_only_looks_alike(json!({"args": ["--requirements=x.txt", "-rf", "/javaagentless"]}))]
fn an_ordinary_command_line_gets_every_agent_asked_for(#[case] fields: Value) {
    let c = with_fields(&fields);
    let object = pod("web")
        .annotation(JAVA, "true")
        .annotation("otel-injector.io/inject-nodejs", "true")
        .annotation("otel-injector.io/inject-python", "true")
        .container(c)
        .build();
    let (out, m) = run(&object, Some("1.37"));
    assert_eq!(names(&out["spec"]["volumes"]), ["otel-agent-java", "otel-agent-nodejs", "otel-agent-python"]);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn an_agent_refused_later_is_taken_back_whole_so_the_template_stays_valid() {
    let config = Config { workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    let original = java_pod().container(container("app")).template_of("Deployment", "web");
    let (instrumented, _) = run_at(&original, WorkloadKind::Deployment, &config, Some("1.37"));
    // The user now preloads a library: the agent must go, mount and volume together.
    let mut edited = instrumented.clone();
    let env = edited["spec"]["template"]["spec"]["containers"][0]["env"].as_array_mut().expect("env");
    env.push(json!({"name": "LD_PRELOAD", "value": "/lib/libvendor.so"}));
    let (out, m) = update(&instrumented, &edited, &config, "1.37");
    let spec = &out["spec"]["template"]["spec"];
    let mounted: Vec<&str> = spec["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let volumes = names(&spec["volumes"]);
    assert!(mounted.iter().all(|m| volumes.contains(m)), "every mount has its volume: {mounted:?} {volumes:?}");
    assert!(!volumes.contains(&"otel-agent-java"), "{spec}");
    let list = spec["containers"][0]["env"].as_array().expect("env");
    assert!(list.iter().all(|e| e["name"] != "JAVA_TOOL_OPTIONS"), "{list:?}");
    assert!(m.warnings.as_slice().iter().any(|w| w.contains("LD_PRELOAD")), "{:?}", m.warnings);
}

#[test]
fn a_users_grpc_beside_the_python_agent_is_kept_with_a_warning() {
    let object = pod("web")
        .annotation("otel-injector.io/inject-python", "true")
        .container(container("app").env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"))
        .build();
    let (out, m) = run(&object, None);
    assert_eq!(env(&out, 0, "OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(), Some("grpc"), "the user's value wins");
    assert!(
        m.warnings.as_slice().iter().any(|w| w.contains("the only protocol the python agent speaks")),
        "{:?}",
        m.warnings
    );
}

#[test]
fn the_explanation_says_why_an_agent_was_not_added() {
    let object = java_pod().container(container("app").env("LD_PRELOAD", "/lib/x.so")).build();
    let (_, m) = run(&object, None);
    let rendered = m.explanation.to_string();
    assert!(rendered.contains("java agent not added: it sets LD_PRELOAD"), "{rendered}");
}

#[test]
fn pod_resources_too_small_for_the_init_container_get_no_agent_but_an_image_volume_needs_none() {
    let object = java_pod()
        .spec("resources", json!({"requests": {"cpu": "20m", "memory": "16Mi"}, "limits": {"memory": "16Mi"}}))
        .container(container("app"))
        .build();
    let (out, m) = run(&object, Some("1.20"));
    assert!(out["spec"].get("initContainers").is_none() && out["spec"].get("volumes").is_none(), "{}", out["spec"]);
    assert!(
        m.warnings.as_slice().iter().any(|w| w.contains("leave no room for its init container")),
        "{:?}",
        m.warnings
    );
    let (out, m) = run(&object, Some("1.37"));
    assert_eq!(names(&out["spec"]["volumes"]), ["otel-agent-java"], "{:?}", m.warnings);
}
