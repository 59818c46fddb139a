//! Preview tests: input formats, every output format, explanations, and clear errors for bad input.

use super::*;
use crate::engine::config::DefaultMode;
use crate::testing::fixtures::{container, pod, review};
use rstest::rstest;
use serde::Deserialize;

fn options(output: OutputFormat) -> Options {
    Options::new(output, Config { default: DefaultMode::Inject, ..Config::default() })
}

fn preview_text(text: &str, options: &Options) -> Result<(String, String), PreviewError> {
    let input = Input { name: "in.yaml".into(), text: text.into() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run(&[input], options, &mut out, &mut err)?;
    Ok((String::from_utf8(out).expect("utf-8"), String::from_utf8(err).expect("utf-8")))
}

const TWO_DOCS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
# a comment, then the deployment
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
---
"#;

#[test]
fn yaml_out_keeps_every_document_in_order_and_instruments_workloads() {
    let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Yaml)).expect("previews");
    let docs: Vec<Value> =
        serde_yaml_ng::Deserializer::from_str(&out).map(|d| Value::deserialize(d).expect("valid YAML out")).collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"], "Service");
    assert_eq!(docs[0]["spec"]["ports"][0]["port"], 80);
    let env = &docs[1]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.as_array().is_some_and(|e| e.iter().any(|v| v["name"] == "OTEL_SERVICE_NAME" && v["value"] == "web")));
}

#[test]
fn patch_out_is_one_line_per_object_with_the_webhook_bytes() {
    let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Patch)).expect("previews");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "[]");
    let patch: json_patch::Patch = serde_json::from_str(lines[1]).expect("a JSON Patch");
    assert_eq!(patch.0[0].path().as_str(), "/spec/template/spec/containers/0/env");
}

#[test]
fn json_out_is_the_object_or_a_list() {
    let one = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n";
    let (out, _) = preview_text(one, &options(OutputFormat::Json)).expect("previews");
    let value: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(value["kind"], "Pod");
    let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Json)).expect("previews");
    let value: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((value["kind"].as_str(), value["items"].as_array().map(Vec::len)), (Some("List"), Some(2)));
}

#[test]
fn diff_out_shows_only_changed_objects() {
    let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Diff)).expect("previews");
    assert!(
        out.starts_with("--- Deployment default/web (original)\n+++ Deployment default/web (instrumented)\n"),
        "{out}"
    );
    assert!(out.contains("+        - name: OTEL_SERVICE_NAME"), "{out}");
    assert!(!out.contains("Service"));
}

#[test]
fn explain_goes_to_stderr_per_object() {
    let mut opts = options(OutputFormat::Patch);
    opts.explain = true;
    let (_, err) = preview_text(TWO_DOCS, &opts).expect("previews");
    assert!(
        err.contains("# Service default/web (in.yaml, document 1)\n  Service is not a workload: unchanged"),
        "{err}"
    );
    assert!(
        err.contains(
            "# Deployment default/web (in.yaml, document 2)\n  decision: instrument (cluster default (inject))"
        )
    );
    assert!(err.contains("container web: instrumented"));
    assert!(err.contains("  sampling ratio = 1 (config)\n  propagators = tracecontext,baggage (config)\n"), "{err}");
    assert!(err.contains("not in workloads"), "Deployments are not in the default workloads: {err}");
}

#[test]
fn lists_and_json_streams_are_read() {
    let list = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c"}]}},
        {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]}
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"},"spec":{"containers":[{"name":"c"}]}}"#;
    let (out, _) = preview_text(list, &options(OutputFormat::Patch)).expect("previews");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_ne!(lines[0], "[]");
    assert_eq!(lines[1], "[]");
    assert_ne!(lines[2], "[]");
}

#[test]
fn namespace_annotations_and_the_namespace_flag_apply() {
    let mut opts = options(OutputFormat::Json);
    opts.config.default = DefaultMode::Skip;
    opts.namespace = "shop".into();
    opts.ns.annotations.insert("otel-injector.io/inject".into(), "true".into());
    let (out, _) =
        preview_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n", &opts)
            .expect("previews");
    assert!(out.contains("k8s.namespace.name=shop"), "{out}");
    assert!(out.contains("namespace annotation otel-injector.io/inject=true"));
}

#[test]
fn admission_reviews_go_through_the_webhook_path() {
    let object = pod("p").container(container("c")).build();
    let create = serde_json::to_string(&review(&object, "CREATE", "shop")).expect("json");
    let (out, _) = preview_text(&create, &options(OutputFormat::Patch)).expect("previews");
    assert!(out.starts_with("[{\"op\":\"add\""), "{out}");
    let mut delete = review(&object, "DELETE", "shop");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let mut opts = options(OutputFormat::Yaml);
    opts.explain = true;
    let (out, err) = preview_text(&serde_json::to_string(&delete).expect("json"), &opts).expect("previews");
    assert_eq!(out, "");
    assert!(err.contains("ignored: DELETE is never mutated"), "{err}");
}

#[rstest]
#[case::bad_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: [\n", "in.yaml: document 1: invalid YAML: ")]
#[case::bad_escape(
    "a: \"x\\qy\"\n",
    "in.yaml: document 1: invalid YAML: while parsing a quoted scalar, found unknown escape"
)]
#[case::second_doc("apiVersion: v1\nkind: Pod\n---\n- a list\n", "in.yaml: document 2: is not a Kubernetes object")]
#[case::no_kind("metadata: {name: x}\n", "in.yaml: document 1: has no apiVersion and kind")]
#[case::scalar("just text\n", "in.yaml: document 1: is not a Kubernetes object")]
#[case::bad_json("{\"apiVersion\": ", "in.yaml: document 1: invalid JSON: ")]
#[case::bad_item("apiVersion: v1\nkind: List\nitems: [3]\n", "in.yaml: document 1: items[0] has no kind")]
fn bad_input_is_a_one_line_error_naming_file_and_document(#[case] text: &str, #[case] needle: &str) {
    let err = preview_text(text, &options(OutputFormat::Yaml)).expect_err("bad input").to_string();
    assert!(err.contains(needle), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn removed_api_versions_are_previewed_with_a_warning() {
    let text = "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  jobTemplate: {spec: {template: {spec: {containers: [{name: c}]}}}}\n";
    let (out, err) = preview_text(text, &options(OutputFormat::Patch)).expect("previews");
    assert_ne!(out.trim(), "[]");
    assert!(
        err.contains("Warning: CronJob default/c: batch/v1beta1 CronJob is not served by current Kubernetes"),
        "{err}"
    );
}
