//! What the fuzzers check, shared by the fuzz targets (`fuzz/fuzz_targets/`, run by `make fuzz`) and the replay of
//! the kept corpus in `make test` (`tests/fuzz_replay.rs`).
//!
//! - [`review_bytes`]: raw bytes into the `/mutate` handler: never a panic, always a well-formed HTTP answer.
//! - [`review_object`]: a valid envelope around an object built from a grammar of pods, templates and
//!   annotations ([`Case`]): the response passes the API server's checks, the patch applies, the result keeps
//!   every original field and only the webhook's paths change, and a second pass is a no-op.
//! - [`preview_text`]: `preview` over arbitrary text: never a panic.

use std::sync::{Arc, LazyLock};

use crate::cluster::namespaces::Fixed;
use crate::engine::config::{Config, DefaultMode, SidecarMode};
use crate::engine::workload::WorkloadKind;
use crate::webhook::admission;
use arbitrary::Arbitrary;
use base64::Engine;
use serde_json::{Map, Value, json};

use super::preserve::{owned, preserved};

/// Raw bytes as the body of `POST /mutate`, through the real router and handler.
pub fn review_bytes(data: &[u8]) {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> =
        LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"));
    use tower::ServiceExt;
    let config = Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    let state =
        crate::webhook::state::AppState::new(crate::webhook::state::Parts::new(config, Arc::new(Fixed::default())));
    let router = crate::webhook::server::webhook_router(state);
    let request = axum::http::Request::post("/mutate?timeout=10s")
        .header("content-type", "application/json")
        .header("content-length", data.len())
        .body(axum::body::Body::from(data.to_vec()))
        .expect("request");
    let (status, content_type, body) = RUNTIME.block_on(async {
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, content_type, body)
    });
    match status {
        200 => {
            assert_eq!(content_type.as_deref(), Some("application/json"));
            let request: Value = serde_json::from_slice(data).expect("a 200 only for a JSON review");
            let response: Value = serde_json::from_slice(&body).expect("a JSON answer");
            api_server_accepts(&request, &response);
        }
        400 | 413 | 415 | 503 => {
            assert_eq!(content_type.as_deref(), Some("text/plain; charset=utf-8"));
            let text = std::str::from_utf8(&body).expect("UTF-8");
            assert!(text.ends_with('\n') && text.trim_end().lines().count() == 1, "one line: {text:?}");
        }
        other => panic!("unexpected status {other}: {}", String::from_utf8_lossy(&body)),
    }
}

/// The checks the API server makes of a webhook's answer (`k8s.io/apiserver/pkg/admission/plugin/webhook`): the
/// same `apiVersion`/`kind`, the request's `uid`, `allowed` set, `patch` and `patchType: JSONPatch` together, the
/// patch standard base64 of a JSON Patch. Returns the patch.
pub fn api_server_accepts(request: &Value, response: &Value) -> Option<json_patch::Patch> {
    assert_eq!(response["apiVersion"], request["apiVersion"]);
    assert_eq!(response["kind"], "AdmissionReview");
    let answer = &response["response"];
    assert_eq!(answer["uid"], request["request"]["uid"], "uid echoed");
    assert_eq!(answer["allowed"], true, "never refuses");
    if let Some(warnings) = answer.get("warnings") {
        assert!(warnings.as_array().is_some_and(|w| w.iter().all(Value::is_string)), "{warnings}");
    }
    match (answer.get("patch"), answer.get("patchType")) {
        (None, None) => None,
        (Some(Value::String(b64)), Some(t)) => {
            assert_eq!(t, "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("standard base64");
            Some(serde_json::from_slice(&bytes).expect("a JSON Patch"))
        }
        (patch, kind) => panic!("patch {patch:?} and patchType {kind:?} must come together"),
    }
}

/// `preview` over arbitrary text, each output format: an answer or an error, never a panic.
pub fn preview_text(data: &[u8]) {
    use crate::cli::OutputFormat;
    use crate::cli::preview::{Input, Options, run};
    let text = String::from_utf8_lossy(data).into_owned();
    let format = [OutputFormat::Yaml, OutputFormat::Json, OutputFormat::Patch, OutputFormat::Diff]
        [data.first().map_or(0, |b| usize::from(*b) % 4)];
    let config = Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() };
    let mut options = Options::new(format, config);
    options.explain = data.len().is_multiple_of(2);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let _ = run(&[Input { name: "fuzz".to_owned(), text }], &options, &mut out, &mut err);
}

/// One object to review, and how: built by the fuzzer from its input.
#[derive(Debug, Clone, Arbitrary)]
pub struct Case {
    kind: Kind,
    update: Option<Edit>,
    default_inject: bool,
    sidecar: Option<(Mode, Option<u8>)>,
    pod: PodCase,
    /// Members no typed model knows, at the object's top level.
    unknown: Vec<(Word, Junk)>,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Kind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Mode {
    Auto,
    Native,
    Classic,
}

/// How an UPDATE's old object differs from the new one.
#[derive(Debug, Clone, Arbitrary)]
enum Edit {
    /// The same template (nothing to do).
    Same,
    /// Another image for the first container.
    Image(Word),
    /// Without the template's annotations.
    NoAnnotations,
    /// No old object at all.
    Missing,
}

#[derive(Debug, Clone, Arbitrary)]
struct PodCase {
    name: Option<Word>,
    generate_name: Option<Word>,
    namespace: Option<Word>,
    labels: Option<Vec<(Key, Text)>>,
    annotations: Option<Vec<(Key, Text)>>,
    owner: Option<(Word, Word, bool)>,
    containers: Vec<ContainerCase>,
    init_containers: Option<Vec<ContainerCase>>,
    host_network: Option<bool>,
    restart_policy: Option<Word>,
    no_metadata: bool,
    unknown: Option<(Word, Junk)>,
}

#[derive(Debug, Clone, Arbitrary)]
struct ContainerCase {
    name: Word,
    image: Option<Text>,
    env: Option<Option<Vec<EnvCase>>>,
    ports: Vec<u16>,
    unknown: Option<(Word, Junk)>,
}

#[derive(Debug, Clone, Arbitrary)]
struct EnvCase {
    name: EnvName,
    value: Option<Text>,
    value_from: bool,
    unknown: bool,
}

/// A variable name: mostly the ones the webhook reads or writes.
#[derive(Debug, Clone, Arbitrary)]
enum EnvName {
    Ours(u8),
    Other(Word),
}

const VARS: [&str; 16] = [
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
    "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
    "OTEL_SDK_DISABLED",
    "GOMEMLIMIT",
    "OTEL_INJECTOR_SIDECAR",
];

/// An annotation or label key: mostly the policy's.
#[derive(Debug, Clone, Arbitrary)]
enum Key {
    Ours(u8),
    Resource(Word),
    Other(Word),
}

const KEYS: [&str; 13] = [
    "otel-injector.io/inject",
    "otel-injector.io/sidecar",
    "otel-injector.io/container-names",
    "otel-injector.io/service-name",
    "otel-injector.io/endpoint",
    "otel-injector.io/protocol",
    "otel-injector.io/sampling-ratio",
    "otel-injector.io/propagators",
    "otel-injector.io/signals",
    "otel-injector.io/resource-attributes",
    "otel-injector.io/status",
    "app.kubernetes.io/name",
    "app.kubernetes.io/version",
];

/// A value: mostly ones the policy has rules for, sometimes anything, sometimes not a string at all.
#[derive(Debug, Clone, Arbitrary)]
enum Text {
    Known(u8),
    Reference(u8),
    Any(String),
    NotAString(Junk),
}

const VALUES: [&str; 16] = [
    "true",
    "false",
    "0.25",
    "1e-9",
    "http://collector.observability:4317",
    "https://otlp.example:4318/",
    "grpc",
    "http/protobuf",
    "traces,metrics",
    "tracecontext,baggage",
    "team=shop,tier=web",
    "app,sidecar",
    "shop/web:1.2.3",
    "$$(OTEL_SERVICE_NAME)",
    "a=1,,b=2, ",
    r#"{"containers":["app"],"sidecar":"off","serviceNameFrom":"container","reason":"x","hash":"00","env":{"app":"SN=000000"}}"#,
];

/// A short name.
#[derive(Debug, Clone, Arbitrary)]
struct Word(u8, u8);

impl Word {
    fn text(&self) -> String {
        const STEMS: [&str; 8] = ["app", "web", "shop", "a/b", "x~y", "otel-collector", "init", "db"];
        format!("{}{}", STEMS[usize::from(self.0) % STEMS.len()], self.1 % 4)
    }
}

/// Any JSON value, a few levels deep.
#[derive(Debug, Clone, Arbitrary)]
enum Junk {
    Null,
    Bool(bool),
    Number(i32),
    Float(f32),
    Str(String),
    List(Vec<Junk>),
    Object(Vec<(Word, Junk)>),
}

impl Junk {
    fn value(&self, depth: u8) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => (*b).into(),
            Self::Number(n) => (*n).into(),
            Self::Float(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
            Self::Str(s) => s.clone().into(),
            Self::List(items) if depth < 4 => items.iter().map(|j| j.value(depth + 1)).collect(),
            Self::Object(members) if depth < 4 => {
                Value::Object(members.iter().map(|(k, v)| (k.text(), v.value(depth + 1))).collect())
            }
            _ => Value::Null,
        }
    }
}

impl Text {
    fn value(&self) -> Value {
        match self {
            Self::Known(i) => VALUES[usize::from(*i) % VALUES.len()].into(),
            Self::Reference(i) => format!("x-$({})-y", VARS[usize::from(*i) % VARS.len()]).into(),
            Self::Any(s) => s.clone().into(),
            Self::NotAString(j) => j.value(3),
        }
    }
}

impl Key {
    fn text(&self) -> String {
        match self {
            Self::Ours(i) => KEYS[usize::from(*i) % KEYS.len()].to_owned(),
            Self::Resource(w) => format!("resource.opentelemetry.io/{}", w.text()),
            Self::Other(w) => w.text(),
        }
    }
}

fn map(entries: &[(Key, Text)]) -> Value {
    Value::Object(entries.iter().map(|(k, v)| (k.text(), v.value())).collect())
}

impl ContainerCase {
    fn value(&self) -> Value {
        let mut c = Map::new();
        c.insert("name".into(), self.name.text().into());
        if let Some(image) = &self.image {
            c.insert("image".into(), image.value());
        }
        match &self.env {
            Some(Some(env)) => {
                c.insert("env".into(), env.iter().map(EnvCase::value).collect());
            }
            Some(None) => {
                c.insert("env".into(), Value::Null);
            }
            None => {}
        }
        if !self.ports.is_empty() {
            let ports: Vec<Value> = self.ports.iter().take(4).map(|p| json!({"containerPort": p})).collect();
            c.insert("ports".into(), ports.into());
        }
        if let Some((k, v)) = &self.unknown {
            c.insert(format!("future{}", k.text()), v.value(0));
        }
        Value::Object(c)
    }
}

impl EnvCase {
    fn value(&self) -> Value {
        let mut e = Map::new();
        let name = match &self.name {
            EnvName::Ours(i) => VARS[usize::from(*i) % VARS.len()].to_owned(),
            EnvName::Other(w) => w.text().to_uppercase(),
        };
        e.insert("name".into(), name.into());
        if let Some(v) = &self.value {
            e.insert("value".into(), v.value());
        }
        if self.value_from {
            e.insert("valueFrom".into(), json!({"fieldRef": {"fieldPath": "metadata.name"}}));
        }
        if self.unknown {
            e.insert("futureField".into(), json!({"nested": [1, "two", null]}));
        }
        Value::Object(e)
    }
}

impl PodCase {
    fn value(&self) -> Value {
        let mut meta = Map::new();
        for (key, word) in [("name", &self.name), ("generateName", &self.generate_name), ("namespace", &self.namespace)]
        {
            if let Some(w) = word {
                meta.insert(key.into(), w.text().into());
            }
        }
        if let Some(labels) = &self.labels {
            meta.insert("labels".into(), map(labels));
        }
        if let Some(annotations) = &self.annotations {
            meta.insert("annotations".into(), map(annotations));
        }
        if let Some((kind, name, controller)) = &self.owner {
            let kind = ["ReplicaSet", "Job", "StatefulSet", "DaemonSet", "CustomThing"][usize::from(kind.0) % 5];
            meta.insert(
                "ownerReferences".into(),
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": format!("{}-7d9f8c6b5", name.text()),
                        "uid": "u", "controller": controller}]),
            );
        }
        let mut spec = Map::new();
        spec.insert("containers".into(), self.containers.iter().take(6).map(ContainerCase::value).collect());
        if let Some(init) = &self.init_containers {
            spec.insert("initContainers".into(), init.iter().take(3).map(ContainerCase::value).collect());
        }
        if let Some(h) = self.host_network {
            spec.insert("hostNetwork".into(), h.into());
        }
        if let Some(p) = &self.restart_policy {
            spec.insert("restartPolicy".into(), ["Always", "OnFailure", "Never"][usize::from(p.0) % 3].into());
        }
        if let Some((k, v)) = &self.unknown {
            spec.insert(format!("future{}", k.text()), v.value(0));
        }
        let mut pod = Map::new();
        if !self.no_metadata {
            pod.insert("metadata".into(), Value::Object(meta));
        }
        pod.insert("spec".into(), Value::Object(spec));
        Value::Object(pod)
    }
}

impl Kind {
    fn workload(self) -> WorkloadKind {
        match self {
            Self::Pod => WorkloadKind::Pod,
            Self::Deployment => WorkloadKind::Deployment,
            Self::StatefulSet => WorkloadKind::StatefulSet,
            Self::DaemonSet => WorkloadKind::DaemonSet,
            Self::ReplicaSet => WorkloadKind::ReplicaSet,
            Self::Job => WorkloadKind::Job,
            Self::CronJob => WorkloadKind::CronJob,
        }
    }

    fn group_version(self) -> (&'static str, &'static str) {
        match self {
            Self::Pod => ("", "v1"),
            Self::Job | Self::CronJob => ("batch", "v1"),
            _ => ("apps", "v1"),
        }
    }
}

impl Case {
    /// The object under review.
    pub fn object(&self) -> Value {
        let pod = self.pod.value();
        let kind = self.kind.workload();
        let (group, version) = self.kind.group_version();
        let api_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
        let mut object = match kind {
            WorkloadKind::Pod => pod,
            WorkloadKind::CronJob => json!({"metadata": {"name": "nightly"},
                "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": pod}}}}),
            _ => json!({"metadata": {"name": "w"}, "spec": {"replicas": 2, "template": pod}}),
        };
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), api_version.into());
            map.insert("kind".into(), kind.as_str().into());
            for (k, v) in self.unknown.iter().take(3) {
                map.entry(format!("future{}", k.text())).or_insert_with(|| v.value(0));
            }
        }
        object
    }

    fn config(&self) -> Config {
        let mut config = Config {
            default: if self.default_inject { DefaultMode::Inject } else { DefaultMode::Skip },
            workloads: WorkloadKind::ALL.to_vec(),
            ..Config::default()
        };
        if let Some((mode, _)) = self.sidecar {
            config.sidecar.enabled = true;
            config.sidecar.mode = match mode {
                Mode::Auto => SidecarMode::Auto,
                Mode::Native => SidecarMode::Native,
                Mode::Classic => SidecarMode::Classic,
            };
        }
        config
    }

    /// The review of `object` (with `old` as `oldObject` for an UPDATE).
    fn review(&self, object: &Value, old: Option<&Value>) -> Value {
        let (group, version) = self.kind.group_version();
        let kind = self.kind.workload().as_str();
        let resource = format!("{}s", kind.to_lowercase());
        let gvk = json!({"group": group, "version": version, "kind": kind});
        let gvr = json!({"group": group, "version": version, "resource": resource});
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": gvk, "resource": gvr,
            "requestKind": gvk, "requestResource": gvr, "namespace": "shop",
            "operation": if old.is_some() || self.update.is_some() { "UPDATE" } else { "CREATE" },
            "userInfo": {"username": "fuzz"}, "object": object, "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false, "options": null}})
    }

    /// The old object of an UPDATE, if this is one.
    fn old(&self, object: &Value) -> Option<Value> {
        let mut old = object.clone();
        let template = self.kind.workload().template_path().iter().fold(&mut old, |v, t| &mut v[*t]);
        match self.update.as_ref()? {
            Edit::Same => {}
            Edit::Image(w) => {
                if let Some(c) = template["spec"]["containers"].get_mut(0) {
                    c["image"] = format!("{}:2", w.text()).into();
                }
            }
            Edit::NoAnnotations => {
                if let Some(m) = template.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("annotations");
                }
            }
            Edit::Missing => return Some(Value::Null),
        }
        Some(old)
    }
}

/// Reviews `case`'s object twice (the second time as patched) and checks everything [`review_object`] promises.
pub fn review_object(case: &Case) {
    let config = case.config();
    let namespaces = Fixed::default();
    let kind = case.kind.workload();
    let object = case.object();
    let old = case.old(&object);
    let request = case.review(&object, old.as_ref());
    let body = serde_json::to_vec(&request).expect("json");
    let answer = admission::review(&body, &config, &namespaces).expect("a valid envelope is answered");
    let response: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
    let Some(patch) = api_server_accepts(&request, &response) else { return };
    for op in &patch.0 {
        assert!(owned(op.path().as_str(), kind), "an operation outside what the webhook owns: {}", op.path());
    }
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap_or_else(|e| panic!("the patch does not apply: {e}"));
    let status = object_annotations(&object, kind).is_some_and(|a| a.contains_key("otel-injector.io/status"));
    if !status {
        // With a status annotation the webhook may bring its own recorded values up to date; without one, every
        // value present is the user's.
        if let Err(e) = preserved(&object, &patched, "") {
            panic!("data lost: {e}\noriginal: {object}\npatched: {patched}");
        }
    }
    if kind == WorkloadKind::Pod && serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(object.clone()).is_ok() {
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(patched.clone()).expect("still a valid Pod");
    }
    // The API server reinvokes with the patched object (and the same old one): nothing more to do.
    let again = case.review(&patched, old.as_ref());
    let body = serde_json::to_vec(&again).expect("json");
    let answer = admission::review(&body, &config, &namespaces).expect("answered");
    let response: Value = serde_json::from_slice(&answer.body).expect("JSON");
    if let Some(second) = api_server_accepts(&again, &response) {
        assert!(second.0.is_empty(), "a second pass patched again: {second:?}\nfirst: {patch:?}\nobject: {object}");
    }
}

fn object_annotations(object: &Value, kind: WorkloadKind) -> Option<&Map<String, Value>> {
    let template = kind.template_path().iter().try_fold(object, |v, t| v.get(*t))?;
    template.get("metadata")?.get("annotations")?.as_object()
}
