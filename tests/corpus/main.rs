//! The real-world corpus (`../shared/corpus`): every manifest and every AdmissionReview goes through `preview` and
//! through the webhook over TLS. Each patch must apply, keep every original field, still deserialize into its
//! k8s-openapi type, validate strictly against the Kubernetes schema, match `kubectl patch --local`, and be stable
//! on a second pass.

mod checks;
#[path = "../common/mod.rs"]
mod common;

use common::corpus::{files, kustomize, objects};

use common::{TestServer, apply, patch_of};
use otel_injector::cli::OutputFormat;
use otel_injector::cli::preview::{self, Input, Options};
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::workload::WorkloadKind;
use otel_injector::testing::fixtures::review;
use serde_json::Value;

fn inject_all() -> Config {
    Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() }
}

fn preview_patches(name: &str, text: &str, config: &Config) -> Result<Vec<String>, String> {
    let options = Options::new(OutputFormat::Patch, config.clone());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let input = Input { name: name.into(), text: text.into() };
    preview::run(&[input], &options, &mut out, &mut err).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8").lines().map(str::to_owned).collect())
}

/// Runs every manifest through preview and the webhook; returns (original, patched) pairs for the batch checks.
pub async fn run_manifests(config: Config) -> Vec<checks::Pair> {
    let server = TestServer::start(config.clone()).await;
    let mut pairs = Vec::new();
    for path in files("manifests") {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        let (objects, preview_lines) = match (objects(&text), preview_patches(&name, &text, &config)) {
            (Ok(objects), Ok(lines)) => (objects, Some(lines)),
            // YAML that Go's parser accepts and standard YAML does not (`\'` in double quotes): preview reads it as
            // kubectl does; the objects come from kubectl itself.
            (Err(_), Ok(lines)) if name.contains("envars-file-container") => (kustomize(&path), Some(lines)),
            (a, b) => panic!("{name}: test loader and preview disagree: {:?} / {:?}", a.err(), b.err()),
        };
        if let Some(lines) = &preview_lines {
            assert_eq!(lines.len(), objects.len(), "{name}: one patch line per object");
        }
        for (i, object) in objects.iter().enumerate() {
            let what = format!("{name} #{i} {} {}", object["kind"].as_str().unwrap_or("?"), object["metadata"]["name"]);
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let Some(kind) = WorkloadKind::from_type_meta(api_version, object["kind"].as_str().unwrap_or_default())
            else {
                if let Some(lines) = &preview_lines {
                    assert_eq!(lines[i], "[]", "{what}: not a workload, not patched");
                }
                continue;
            };
            // The API server only sends what it serves: a removed API version is sent as batch/v1.
            let mut sent = object.clone();
            if kind == WorkloadKind::CronJob {
                sent["apiVersion"] = "batch/v1".into();
            }
            // The API server sends the object's own namespace (kubectl fills in `default`).
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
            let (status, response) = server.post(&review(&sent, "CREATE", namespace)).await;
            assert_eq!(status, 200, "{what}: {response}");
            let (patch, bytes) = patch_of(&response);
            if let Some(lines) = &preview_lines {
                let preview_bytes = if bytes.is_empty() { b"[]".as_slice() } else { bytes.as_slice() };
                assert_eq!(lines[i], String::from_utf8_lossy(preview_bytes), "{what}: preview and webhook disagree");
            }
            let patched = apply(&sent, &patch);
            let (_, again) = server.post(&review(&patched, "CREATE", namespace)).await;
            assert!(patch_of(&again).0.0.is_empty(), "{what}: second pass is not a no-op: {again}");
            pairs.push(checks::Pair { what, original: sent, patch: bytes, patched });
        }
    }
    server.server.shutdown().await;
    pairs
}

fn with_sidecar() -> Config {
    let mut config = inject_all();
    config.sidecar.enabled = true;
    config.headers.insert("X-Scope-OrgID".into(), "prod".into());
    config.sampling_ratio = 0.5;
    config
}

/// Objects whose patched pod spec holds our sidecar.
fn sidecars(pairs: &[checks::Pair]) -> usize {
    let ours = |c: &Value| c["name"] == "otel-collector" && c["env"].to_string().contains("OTEL_COLLECTOR_CONFIG");
    pairs
        .iter()
        .filter_map(|p| checks::pod_spec(&p.patched))
        .filter(|spec| {
            ["initContainers", "containers"].iter().any(|l| spec[l].as_array().is_some_and(|cs| cs.iter().any(ours)))
        })
        .count()
}

#[tokio::test]
async fn every_manifest_is_instrumented_safely() {
    let pairs = run_manifests(inject_all()).await;
    assert!(pairs.len() >= 60, "only {} workload objects found", pairs.len());
    assert!(pairs.iter().filter(|p| !p.patch.is_empty()).count() >= 50, "too few objects were patched");
    assert_eq!(sidecars(&pairs), 0);
    checks::all(&pairs);
}

#[tokio::test]
async fn every_manifest_is_instrumented_safely_with_the_sidecar() {
    let pairs = run_manifests(with_sidecar()).await;
    let added = sidecars(&pairs);
    eprintln!("sidecar added to {added} of {} workload objects", pairs.len());
    assert!(added >= 50, "only {added} sidecars added");
    checks::all(&pairs);
    checks::sidecar_configs(&pairs);
}

/// Wraps a bare `request` (`*.req.json`) in an AdmissionReview v1 envelope.
fn envelope(value: Value) -> Value {
    if value.get("request").is_some() {
        value
    } else {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": value})
    }
}

#[tokio::test]
async fn every_admission_review_is_answered() {
    let pairs = run_reviews(inject_all()).await;
    checks::all(&pairs);
}

#[tokio::test]
async fn every_admission_review_is_answered_with_the_sidecar() {
    let pairs = run_reviews(with_sidecar()).await;
    assert!(sidecars(&pairs) >= 15, "only {} sidecars added", sidecars(&pairs));
    checks::all(&pairs);
    checks::sidecar_configs(&pairs);
}

/// Runs every AdmissionReview through the webhook and preview; returns the instrumented pairs.
async fn run_reviews(config: Config) -> Vec<checks::Pair> {
    let server = TestServer::start(config.clone()).await;
    let mut pairs = Vec::new();
    let mut answered = 0;
    for path in files("admission-reviews") {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let request = envelope(serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON"));
        let (status, response) = server.post(&request).await;
        let preview_lines = preview_patches(&name, &request.to_string(), &config);
        if status == 400 {
            // A review the API server could never send (no kind, resource, operation or userInfo).
            let message = response.as_str().unwrap_or_default();
            assert!(name.starts_with("surik__minimal"), "{name}: unexpected 400: {message}");
            assert_eq!(message.trim_end().lines().count(), 1);
            assert!(message.starts_with("malformed AdmissionReview: request: missing field"), "{message}");
            continue;
        }
        answered += 1;
        assert_eq!(status, 200, "{name}: {response}");
        assert_eq!(response["apiVersion"], request["apiVersion"], "{name}: answered in the request's version");
        assert_eq!(response["response"]["uid"], request["request"]["uid"], "{name}");
        assert_eq!(response["response"]["allowed"], true, "{name}");
        let (patch, bytes) = patch_of(&response);
        let lines = preview_lines.expect("preview reads every review");
        let object = request["request"]["object"].clone();
        if !object.is_object() {
            assert!(patch.0.is_empty(), "{name}: no object, no patch");
            assert!(lines.is_empty(), "{name}: nothing to preview");
            continue;
        }
        let preview_bytes = if bytes.is_empty() { b"[]".as_slice() } else { bytes.as_slice() };
        assert_eq!(lines, [String::from_utf8_lossy(preview_bytes)], "{name}: preview and webhook disagree");
        if patch.0.is_empty() {
            continue;
        }
        let mut patched = apply(&object, &patch);
        let mut second = request.clone();
        second["request"]["object"] = patched.clone();
        let (_, again) = server.post(&second).await;
        assert!(patch_of(&again).0.0.is_empty(), "{name}: second pass is not a no-op");
        // Captured pods may lack TypeMeta; the offline tools need it, so give both sides the request's kind.
        let mut original = object;
        if original.get("kind").is_none() {
            let gvk = &request["request"]["kind"];
            let group = gvk["group"].as_str().unwrap_or_default();
            let version = gvk["version"].as_str().unwrap_or("v1");
            let api_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
            for object in [&mut original, &mut patched] {
                object["apiVersion"] = api_version.clone().into();
                object["kind"] = gvk["kind"].clone();
            }
        }
        pairs.push(checks::Pair { what: name, original, patch: bytes, patched });
    }
    server.server.shutdown().await;
    assert!(answered >= 25, "only {answered} reviews answered");
    assert!(pairs.len() >= 15, "only {} reviews were instrumented", pairs.len());
    pairs
}

/// The `service.version` of container 0's `OTEL_RESOURCE_ATTRIBUTES` in a workload's template.
fn service_version(object: &Value, kind: WorkloadKind) -> Option<String> {
    let template = kind.template_path().iter().fold(object, |v, t| &v[*t]);
    let env = template["spec"]["containers"][0]["env"].as_array()?;
    let attributes = env.iter().rev().find(|e| e["name"] == "OTEL_RESOURCE_ATTRIBUTES")?["value"].as_str()?;
    attributes.split(',').find_map(|p| p.strip_prefix("service.version=")).map(str::to_owned)
}

/// Every corpus workload, once instrumented, is replayed as an UPDATE: with the template unchanged it gets no patch
/// (no rollout the user did not cause); with a new image its `service.version` follows (a Job's template is
/// immutable and gets nothing).
#[tokio::test]
async fn every_corpus_workload_replayed_as_an_update() {
    let config = inject_all();
    let server = TestServer::start(config.clone()).await;
    let (mut replayed, mut followed) = (0, 0);
    for path in files("manifests") {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        for object in common::corpus::objects_of(&path) {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let Some(kind) = WorkloadKind::from_type_meta(api_version, object["kind"].as_str().unwrap_or_default())
            else {
                continue;
            };
            let mut object = object.clone();
            if kind == WorkloadKind::CronJob {
                object["apiVersion"] = "batch/v1".into();
            }
            let what = format!("{name} {kind} {}", object["metadata"]["name"]);
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
            let (_, created) = server.post(&review(&object, "CREATE", &namespace)).await;
            let stored = apply(&object, &patch_of(&created).0);
            replayed += 1;

            let (_, same) = server.post(&review(&stored, "UPDATE", &namespace)).await;
            assert!(patch_of(&same).0.0.is_empty(), "{what}: an UPDATE that leaves the template alone was patched");

            let template = kind.template_path().iter().fold(&stored, |v, t| &v[*t]);
            let Some(image) = template["spec"]["containers"][0]["image"].as_str() else { continue };
            let before = service_version(&stored, kind);
            let mut bumped = stored.clone();
            let new_image = format!("{}:corpus-replay", image.split(['@', ':']).next().unwrap_or(image));
            let pointer = format!(
                "{}/spec/containers/0/image",
                kind.template_path().iter().map(|t| format!("/{t}")).collect::<String>()
            );
            *bumped.pointer_mut(&pointer).expect("image") = new_image.into();
            let mut update = review(&bumped, "UPDATE", &namespace);
            update["request"]["oldObject"] = stored.clone();
            let (status, answer) = server.post(&update).await;
            assert_eq!(status, 200, "{what}");
            let after = apply(&bumped, &patch_of(&answer).0);
            let from_tag = before.as_deref().is_some_and(|v| image.ends_with(&format!(":{v}")));
            match kind {
                WorkloadKind::Pod | WorkloadKind::Job => {
                    assert!(patch_of(&answer).0.0.is_empty(), "{what}: a {kind} UPDATE is never patched");
                }
                _ if from_tag => {
                    assert_eq!(service_version(&after, kind).as_deref(), Some("corpus-replay"), "{what}");
                    followed += 1;
                }
                _ => {}
            }
        }
    }
    server.server.shutdown().await;
    eprintln!("{replayed} corpus workloads replayed as UPDATEs; service.version followed the image in {followed}");
    assert!(replayed >= 80 && followed >= 30, "replayed {replayed}, followed {followed}");
}
