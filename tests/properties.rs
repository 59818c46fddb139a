//! Properties over generated pods and templates: the patch applies, a second pass is a no-op, nothing outside what
//! we own changes, unknown fields survive, `$(VAR)` references resolve, and the output is deterministic.

mod common;

use common::preserved;
use otel_injector::engine::config::{Config, DefaultMode, SidecarMode};
use otel_injector::engine::inject::{Target, mutate};
use otel_injector::engine::policy::NamespaceMeta;
use otel_injector::engine::syntax::KubeVersion;
use otel_injector::engine::workload::WorkloadKind;
use otel_injector::testing::preserve::owned;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const OUR_VARS: [&str; 12] = [
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
    "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
];

/// A field no typed model knows, to prove it survives.
fn unknown() -> Value {
    json!({"futureField": {"nested": [1, "two", null], "flag": true}})
}

/// Variables that activate (or preload) an agent.
const AGENT_VARS: [&str; 4] = ["JAVA_TOOL_OPTIONS", "NODE_OPTIONS", "PYTHONPATH", "LD_PRELOAD"];

fn env_entry() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        proptest::sample::select(OUR_VARS.to_vec()).prop_map(str::to_owned),
        proptest::sample::select(AGENT_VARS.to_vec()).prop_map(str::to_owned),
        "[A-Z][A-Z_]{0,8}",
    ];
    let value = prop_oneof![
        "[a-z0-9=,./:-]{0,12}",
        proptest::sample::select(OUR_VARS.to_vec()).prop_map(|v| format!("x-$({v})-y")),
        Just("$$(OTEL_SERVICE_NAME)".to_owned()),
        Just("a=1,b=2".to_owned()),
    ];
    (name, prop_oneof![value.prop_map(Some), Just(None)], any::<bool>()).prop_map(|(name, value, extra)| {
        let mut e = Map::new();
        e.insert("name".into(), name.into());
        match value {
            Some(v) => {
                e.insert("value".into(), v.into());
            }
            None => {
                e.insert("valueFrom".into(), json!({"fieldRef": {"fieldPath": "metadata.name"}}));
            }
        }
        if extra {
            e.insert("fileKeyRefLike".into(), unknown());
        }
        Value::Object(e)
    })
}

fn container(name: String) -> impl Strategy<Value = Value> {
    (
        proptest::option::of(proptest::collection::vec(env_entry(), 0..8)),
        proptest::option::of("[a-z]{1,6}(:[0-9.]{1,5})?"),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(env, image, null_env, extra)| {
            let mut c = Map::new();
            c.insert("name".into(), name.clone().into());
            if let Some(image) = image {
                c.insert("image".into(), image.into());
            }
            match (env, null_env) {
                (Some(env), _) => {
                    c.insert("env".into(), env.into());
                }
                (None, true) => {
                    c.insert("env".into(), Value::Null);
                }
                (None, false) => {}
            }
            if extra {
                c.insert("restartPolicyRules".into(), unknown());
            }
            Value::Object(c)
        })
}

fn annotations() -> impl Strategy<Value = Option<Map<String, Value>>> {
    let key = prop_oneof![
        Just("otel-injector.io/sampling-ratio".to_owned()),
        Just("otel-injector.io/signals".to_owned()),
        Just("otel-injector.io/service-name".to_owned()),
        Just("resource.opentelemetry.io/team".to_owned()),
        Just("otel-injector.io/inject".to_owned()),
        Just("otel-injector.io/inject-java".to_owned()),
        Just("otel-injector.io/inject-python".to_owned()),
        Just("otel-injector.io/inject-nodejs".to_owned()),
        "[a-z~/.]{1,10}",
    ];
    let value = prop_oneof![
        "[a-z0-9,.=$()]{0,8}",
        Just("true".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("0.5".to_owned())
    ];
    proptest::option::of(proptest::collection::btree_map(key, value, 0..4))
        .prop_map(|m| m.map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

/// A pod (or pod template) with 1–4 uniquely named containers, optional init containers, and odd metadata.
fn pod() -> impl Strategy<Value = Value> {
    let containers = proptest::collection::btree_set("[a-z]{1,6}", 1..5)
        .prop_flat_map(|names| names.into_iter().map(container).collect::<Vec<_>>());
    (
        containers,
        proptest::option::of(Just(vec![json!({"name": "init-x", "image": "busybox"})])),
        annotations(),
        proptest::option::of("[a-z]{1,8}"),
        prop_oneof![Just(None), Just(Some("ReplicaSet")), Just(Some("Job")), Just(Some("StatefulSet"))],
        any::<bool>(),
    )
        .prop_map(|(containers, init, annotations, name, owner, no_metadata)| {
            let mut meta = Map::new();
            if let Some(name) = name {
                meta.insert("name".into(), name.into());
            }
            if let Some(a) = annotations {
                meta.insert("annotations".into(), Value::Object(a));
            }
            if let Some(kind) = owner {
                meta.insert(
                    "ownerReferences".into(),
                    json!([{"kind": kind, "name": "owner-12345678", "controller": true}]),
                );
                meta.insert("labels".into(), json!({"pod-template-hash": "12345678"}));
            }
            let mut spec = json!({"containers": containers, "futureSpecField": unknown()});
            if let Some(init) = init {
                spec["initContainers"] = init.into();
            }
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "spec": spec});
            if !no_metadata {
                pod["metadata"] = Value::Object(meta);
            }
            pod
        })
}

fn kind() -> impl Strategy<Value = WorkloadKind> {
    proptest::sample::select(WorkloadKind::ALL.to_vec())
}

/// Wraps a pod as the template of `kind`.
fn object(pod: Value, kind: WorkloadKind) -> Value {
    match kind {
        WorkloadKind::Pod => pod,
        WorkloadKind::CronJob => json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "w"},
            "spec": {"jobTemplate": {"spec": {"template": {"metadata": pod.get("metadata"), "spec": pod["spec"]}}}}}),
        other => json!({"apiVersion": "apps/v1", "kind": other.as_str(), "metadata": {"name": "w"},
            "spec": {"template": {"metadata": pod.get("metadata"), "spec": pod["spec"]}}}),
    }
}

/// The sidecar: off, or a mode on an API server of some version (unknown, before or after native sidecars).
type SidecarCase = Option<(SidecarMode, Option<KubeVersion>)>;

fn sidecar() -> impl Strategy<Value = SidecarCase> {
    let mode = prop_oneof![Just(SidecarMode::Auto), Just(SidecarMode::Native), Just(SidecarMode::Classic)];
    let version = prop_oneof![Just(None), (20u32..=37).prop_map(|minor| Some(KubeVersion { major: 1, minor }))];
    prop_oneof![Just(None), (mode, version).prop_map(Some)]
}

fn config(sidecar: SidecarCase) -> Config {
    let mut config =
        Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    if let Some((mode, _)) = sidecar {
        config.sidecar.enabled = true;
        config.sidecar.mode = mode;
    }
    config
}

fn run(object: &Value, kind: WorkloadKind, sidecar: SidecarCase) -> (Value, json_patch::Patch) {
    let config = config(sidecar);
    let ns = NamespaceMeta::default();
    let server_version = sidecar.and_then(|(_, v)| v);
    let m = mutate(object, &Target { server_version, ..Target::new(kind, "prop", &ns, &config) });
    let mut out = object.clone();
    if let Err(e) = json_patch::patch(&mut out, &m.patch.to_json_patch()) {
        panic!("the patch does not apply: {e}\nobject: {object}\npatch: {:?}", m.patch);
    }
    (out, m.patch.to_json_patch())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn patches_apply_are_idempotent_and_only_touch_what_we_own(pod in pod(), kind in kind(), sidecar in sidecar()) {
        let original = object(pod, kind);
        let (once, patch) = run(&original, kind, sidecar);
        for op in &patch.0 {
            prop_assert!(owned(op.path().as_str(), kind), "op outside our ownership: {}", op.path());
        }
        if let Err(e) = preserved(&original, &once, "") {
            panic!("data lost: {e}\noriginal: {original}\npatched: {once}");
        }
        let (twice, second) = run(&once, kind, sidecar);
        prop_assert!(second.0.is_empty(), "second pass patched again: {:?}", second);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn unknown_fields_survive(pod in pod(), kind in kind(), sidecar in sidecar()) {
        let original = object(pod, kind);
        let (patched, _) = run(&original, kind, sidecar);
        let count = |v: &Value| v.to_string().matches("futureField").count();
        prop_assert_eq!(count(&original), count(&patched));
        let spec = |v: &Value| kind.template_path().iter().fold(v.clone(), |v, t| v[*t].clone())["spec"]["futureSpecField"].clone();
        prop_assert_eq!(spec(&original), spec(&patched));
    }

    #[test]
    fn every_reference_to_an_added_variable_follows_its_definition(pod in pod(), kind in kind(), sidecar in sidecar()) {
        let original = object(pod, kind);
        let (patched, _) = run(&original, kind, sidecar);
        let template = kind.template_path().iter().fold(patched.clone(), |v, t| v[*t].clone());
        let before = kind.template_path().iter().fold(original.clone(), |v, t| v[*t].clone());
        for (i, c) in template["spec"]["containers"].as_array().into_iter().flatten().enumerate() {
            let env = c["env"].as_array().cloned().unwrap_or_default();
            let old: Vec<String> = before["spec"]["containers"][i]["env"].as_array().into_iter().flatten()
                .filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
            for (at, entry) in env.iter().enumerate() {
                let value = entry["value"].as_str().unwrap_or_default();
                for r in otel_injector::engine::inject::env::references(value) {
                    if old.iter().any(|o| o == r) { continue } // the user's own ordering is theirs
                    let defined = env.iter().position(|e| e["name"] == r);
                    if let Some(d) = defined {
                        prop_assert!(d < at, "{r} is referenced at {at} but defined at {d}: {env:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn at_most_one_sidecar_and_never_a_duplicate_container_name(pod in pod(), kind in kind(), sidecar in sidecar()) {
        let original = object(pod, kind);
        let (once, _) = run(&original, kind, sidecar);
        let (twice, _) = run(&once, kind, sidecar);
        let spec = kind.template_path().iter().fold(twice, |v, t| v[*t].clone())["spec"].clone();
        let names: Vec<String> = ["initContainers", "containers"].iter()
            .flat_map(|l| spec[l].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["name"].as_str().map(str::to_owned)).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), names.len(), "duplicate container names: {:?}", names);
        prop_assert!(names.iter().filter(|n| *n == "otel-collector").count() <= 1);
    }

    #[test]
    fn output_is_deterministic(pod in pod(), kind in kind(), sidecar in sidecar()) {
        let original = object(pod, kind);
        let (_, a) = run(&original, kind, sidecar);
        let (_, b) = run(&original.clone(), kind, sidecar);
        prop_assert_eq!(serde_json::to_vec(&a).expect("json"), serde_json::to_vec(&b).expect("json"));
    }
}

/// One thing that happens to a workload after its creation.
#[derive(Debug, Clone)]
enum Step {
    /// A new image for the first container (a template change).
    Image(u8),
    /// The template's sampling-ratio annotation changes (a template change).
    Annotation(u8),
    /// The webhook's config changes (no template change).
    Config(u8),
    /// A metadata-only update (no template change).
    Nothing,
    /// The user edits one of the webhook's variables in the first container (a template change).
    UserEdit(usize, u8),
    /// The template asks for the Java agent, or no longer does (a template change).
    Agent(bool),
}

/// Variables a user may take over.
const EDITABLE: [&str; 3] = ["OTEL_TRACES_SAMPLER_ARG", "OTEL_PROPAGATORS", "OTEL_SERVICE_NAME"];

fn history() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        any::<u8>().prop_map(Step::Image),
        (0u8..5).prop_map(Step::Annotation),
        (0u8..5).prop_map(Step::Config),
        Just(Step::Nothing),
        (0..EDITABLE.len(), any::<u8>()).prop_map(|(v, n)| Step::UserEdit(v, n)),
        any::<bool>().prop_map(Step::Agent),
    ];
    proptest::collection::vec(step, 1..6)
}

fn template(object: &Value, kind: WorkloadKind) -> Value {
    kind.template_path().iter().fold(object.clone(), |v, t| v[*t].clone())
}

fn template_mut(object: &mut Value, kind: WorkloadKind) -> &mut Value {
    kind.template_path().iter().fold(object, |v, t| &mut v[*t])
}

fn admit(object: &Value, old: Option<&Value>, kind: WorkloadKind, config: &Config) -> (Value, json_patch::Patch) {
    let ns = NamespaceMeta::default();
    let old = old.map(Value::to_string);
    let m = mutate(object, &Target { old_template: old.as_deref(), ..Target::new(kind, "prop", &ns, config) });
    let mut out = object.clone();
    if let Err(e) = json_patch::patch(&mut out, &m.patch.to_json_patch()) {
        panic!("the patch does not apply: {e}\nobject: {object}\npatch: {:?}", m.patch);
    }
    (out, m.patch.to_json_patch())
}

/// A container's variables with literal values.
fn vars(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e.get("value")?.as_str()?.to_owned())))
        .collect()
}

/// What a fresh CREATE gives for the object once everything the webhook recorded as its own is taken out.
fn fresh(object: &Value, kind: WorkloadKind, config: &Config) -> Value {
    let mut stripped = object.clone();
    let t = template_mut(&mut stripped, kind);
    let status: Value = t["metadata"]["annotations"]["otel-injector.io/status"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    if let Some(a) = t["metadata"]["annotations"].as_object_mut() {
        a.remove("otel-injector.io/status");
    }
    // What the webhook added for agents: their volumes, init containers, mounts and its part of each variable.
    for language in &otel_injector::engine::config::LANGUAGES {
        let named = |v: &Value| v["name"] == language.volume;
        for list in ["volumes", "initContainers"] {
            t["spec"][list].as_array_mut().into_iter().for_each(|l| l.retain(|v| !named(v)));
        }
        for c in t["spec"]["containers"].as_array_mut().into_iter().flatten() {
            c["volumeMounts"].as_array_mut().into_iter().for_each(|l| l.retain(|v| !named(v)));
            let Some(env) = c["env"].as_array_mut() else { continue };
            for e in env.iter_mut().filter(|e| e["name"] == language.var) {
                if let Some(v) = e["value"].as_str() {
                    let rest =
                        v.replace(&format!(" {}", language.token), "").replace(&format!("{}:", language.token), "");
                    e["value"] = rest.replace(language.token, "").into();
                }
            }
            env.retain(|e| e["name"] != language.var || e["value"] != "");
        }
    }
    for c in t["spec"]["containers"].as_array_mut().into_iter().flatten() {
        let Some(record) = c["name"].as_str().and_then(|n| status["env"][n].as_str()) else { continue };
        let record = otel_injector::engine::inject::record::Record::parse(record);
        let ours: Vec<&str> = record.names().collect();
        if let Some(env) = c["env"].as_array_mut() {
            env.retain(|e| e["name"].as_str().is_none_or(|n| !ours.contains(&n) && n != "OTEL_RESOURCE_ATTRIBUTES"));
        }
    }
    admit(&stripped, None, kind, config).0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over a workload's life (CREATE, then UPDATEs that change the image, an annotation, the config, or nothing,
    /// and user edits): every admission is idempotent, an UPDATE that leaves the template alone changes nothing, a
    /// variable the user edited is never changed again, and after each template change every value the webhook
    /// owns is what a fresh CREATE of the same object gives.
    #[test]
    fn template_histories_keep_owned_values_current_and_user_values_untouched(
        pod in pod(),
        kind in prop_oneof![Just(WorkloadKind::Deployment), Just(WorkloadKind::StatefulSet), Just(WorkloadKind::CronJob)],
        history in history(),
        sidecar in sidecar(),
    ) {
        let mut config = config(sidecar);
        let (mut state, _) = admit(&object(pod, kind), None, kind, &config);
        let mut user_values: Vec<(String, String)> = Vec::new();
        for step in history {
            let mut next = state.clone();
            let t = template_mut(&mut next, kind);
            match &step {
                Step::Image(n) => t["spec"]["containers"][0]["image"] = format!("registry.example/app:{n}").into(),
                Step::Annotation(r) => {
                    t["metadata"]["annotations"]["otel-injector.io/sampling-ratio"] = format!("0.{r}").into();
                }
                Step::Config(r) => config.sampling_ratio = f64::from(*r) / 10.0,
                Step::Nothing => next["metadata"]["labels"] = json!({"touched": "yes"}),
                Step::Agent(on) => {
                    t["metadata"]["annotations"]["otel-injector.io/inject-java"] = on.to_string().into();
                }
                Step::UserEdit(v, n) => {
                    let (name, value) = (EDITABLE[*v], format!("user-{n}"));
                    let c = &mut t["spec"]["containers"][0];
                    if !c["env"].is_array() {
                        c["env"] = json!([]);
                    }
                    let env = c["env"].as_array_mut().expect("env");
                    env.retain(|e| e["name"] != name);
                    env.push(json!({"name": name, "value": value}));
                    user_values.retain(|(n, _)| n != name);
                    user_values.push((name.to_owned(), value));
                }
            }
            let old = template(&state, kind);
            let changed = template(&next, kind) != old;
            let (after, patch) = admit(&next, Some(&old), kind, &config);
            if !changed {
                prop_assert!(patch.0.is_empty(), "{step:?}: an untouched template was patched: {patch:?}");
            }
            let (again, second) = admit(&after, Some(&old), kind, &config);
            prop_assert!(second.0.is_empty(), "{step:?}: reinvocation patched again: {second:?}");
            prop_assert_eq!(&again, &after);
            let first = template(&after, kind)["spec"]["containers"][0].clone();
            for (name, value) in &user_values {
                let now = vars(&first).into_iter().rev().find(|(n, _)| n == name).map(|(_, v)| v);
                prop_assert_eq!(now.as_deref(), Some(value.as_str()), "{} was the user's", name);
            }
            if changed {
                let want = template(&fresh(&after, kind, &config), kind);
                let got = template(&after, kind);
                let status: Value = got["metadata"]["annotations"]["otel-injector.io/status"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                for (i, c) in got["spec"]["containers"].as_array().into_iter().flatten().enumerate() {
                    let Some(record) = c["name"].as_str().and_then(|n| status["env"][n].as_str()) else { continue };
                    let record = otel_injector::engine::inject::record::Record::parse(record);
                    let fresh_vars = vars(&want["spec"]["containers"][i]);
                    for (name, value) in vars(c).into_iter().filter(|(n, v)| record.owns(n, v)) {
                        let wanted = fresh_vars.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
                        prop_assert_eq!(Some(value.as_str()), wanted, "{:?}: {} is the webhook's", step, name);
                    }
                }
            }
            state = after;
        }
    }
}
