//! Admission protocol tests (SPEC §3): envelope handling, wire format, what is and is not mutated.

use super::*;
use crate::cluster::namespaces::Fixed;
use crate::engine::config::DefaultMode;
use crate::engine::inject::Stop;
use crate::engine::policy::NamespaceMeta;
use crate::testing::fixtures::{container, pod, review as wrap};
use base64::Engine;
use rstest::rstest;
use serde_json::{Value, json};

fn config() -> Config {
    Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() }
}

fn answer(review: &Value) -> Answer {
    super::review(&serde_json::to_vec(review).expect("json"), &config(), &Fixed::default()).expect("well-formed")
}

fn response(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).expect("response is JSON")
}

fn decoded_patch(response: &Value) -> json_patch::Patch {
    let b64 = response["response"]["patch"].as_str().expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("standard base64");
    serde_json::from_slice(&bytes).expect("a JSON Patch")
}

fn web_pod() -> Value {
    pod("web").container(container("app").image("web:1")).build()
}

#[test]
fn v1_create_is_answered_with_a_base64_patch_that_applies() {
    let review = wrap(&web_pod(), "CREATE", "shop");
    let a = answer(&review);
    let r = response(&a);
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["kind"], "AdmissionReview");
    assert_eq!(r["response"]["uid"], review["request"]["uid"]);
    assert_eq!(r["response"]["allowed"], true);
    assert_eq!(r["response"]["patchType"], "JSONPatch");
    let wire =
        base64::engine::general_purpose::STANDARD.decode(r["response"]["patch"].as_str().expect("b64")).expect("b64");
    assert_eq!(a.patch.as_deref(), Some(wire.as_slice()), "the answer carries the bytes it encoded");
    let mut pod = web_pod();
    json_patch::patch(&mut pod, &decoded_patch(&r)).expect("applies");
    assert!(pod["metadata"]["annotations"]["otel-injector.io/status"].is_string());
    assert_eq!((a.decision, a.patch_ops, a.namespace.as_str()), (Decision::Instrumented, 2, "shop"));
}

#[test]
fn v1beta1_is_answered_as_v1beta1() {
    let mut review = wrap(&web_pod(), "CREATE", "shop");
    review["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let r = response(&answer(&review));
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1beta1");
    assert!(r["response"]["patch"].is_string());
}

#[test]
fn nothing_to_change_means_no_patch_and_no_patch_type_pinned_on_the_wire() {
    let mut config = config();
    config.default = DefaultMode::Skip;
    let body = serde_json::to_vec(&wrap(&web_pod(), "CREATE", "shop")).expect("json");
    let a = super::review(&body, &config, &Fixed::default()).expect("well-formed");
    assert_eq!(
        String::from_utf8(a.body).expect("utf-8"),
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"allowed":true,"status":{},"uid":"705ab4f5-6393-11e8-b7cc-42010a800002"}}"#
    );
    assert_eq!(a.decision, Decision::Skipped);
}

#[test]
fn patch_wire_format_is_pinned() {
    let a = answer(&wrap(&web_pod(), "CREATE", "shop"));
    let text = String::from_utf8(a.body).expect("utf-8");
    // `[{"op":"add","path":"/spec/containers/0/env",` in standard base64, then the fixed tail.
    assert!(text.starts_with(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"allowed":true,"patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvY29udGFpbmVycy8wL2VudiIs"#), "{text}");
    assert!(
        text.ends_with(r#"","patchType":"JSONPatch","status":{},"uid":"705ab4f5-6393-11e8-b7cc-42010a800002"}}"#),
        "{text}"
    );
}

#[rstest]
#[case::delete("DELETE", None, "DELETE is never mutated")]
#[case::connect("CONNECT", None, "CONNECT is never mutated")]
#[case::pod_update("UPDATE", None, "Pod UPDATE is never mutated (a Pod's spec is immutable)")]
#[case::status("UPDATE", Some("status"), "subresource status is never mutated")]
#[case::binding("CREATE", Some("binding"), "subresource binding is never mutated")]
#[case::eviction("CREATE", Some("eviction"), "subresource eviction is never mutated")]
#[case::ephemeral("UPDATE", Some("ephemeralcontainers"), "subresource ephemeralcontainers is never mutated")]
fn operations_and_subresources_left_alone(#[case] op: &str, #[case] sub: Option<&str>, #[case] reason: &str) {
    let mut review = wrap(&web_pod(), op, "shop");
    if let Some(sub) = sub {
        review["request"]["subResource"] = sub.into();
    }
    if op == "DELETE" {
        review["request"]["oldObject"] = review["request"]["object"].take();
    }
    let a = answer(&review);
    let r = response(&a);
    assert_eq!(r["response"]["allowed"], true);
    assert!(r["response"].get("patch").is_none() && r["response"].get("patchType").is_none());
    assert_eq!((a.decision, a.reason.as_str()), (Decision::Ignored, reason));
}

#[test]
fn workload_updates_are_mutated_only_when_they_change_the_template() {
    let deployment = pod("").container(container("app").image("web:2")).template_of("Deployment", "web");
    let unchanged = answer(&wrap(&deployment, "UPDATE", "shop"));
    assert_eq!(
        (unchanged.decision, unchanged.reason.as_str()),
        (Decision::Skipped, "the UPDATE leaves the pod template unchanged")
    );
    let mut changed = wrap(&deployment, "UPDATE", "shop");
    changed["request"]["oldObject"]["spec"]["template"]["spec"]["containers"][0]["image"] = "web:1".into();
    assert_eq!(answer(&changed).decision, Decision::Instrumented);
}

#[test]
fn unknown_kinds_and_kinds_not_configured_are_ignored() {
    let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}});
    assert_eq!(answer(&wrap(&ingress, "CREATE", "shop")).reason, "kind Ingress is not a workload");
    let deployment = pod("").container(container("app")).template_of("Deployment", "web");
    let body = serde_json::to_vec(&wrap(&deployment, "CREATE", "shop")).expect("json");
    let a = super::review(&body, &Config { default: DefaultMode::Inject, ..Config::default() }, &Fixed::default())
        .expect("well-formed");
    assert_eq!(
        (a.decision, a.reason.as_str()),
        (Decision::Ignored, "Deployment is not listed in the config's workloads")
    );
}

#[test]
fn dry_run_gets_exactly_the_same_answer() {
    let review = wrap(&web_pod(), "CREATE", "shop");
    let mut dry = review.clone();
    dry["request"]["dryRun"] = true.into();
    let (a, b) = (answer(&review), answer(&dry));
    assert_eq!(a.body, b.body);
    assert!(b.dry_run);
}

#[test]
fn warnings_are_returned() {
    let object = pod("web").annotation("otel-injector.io/inject", "maybe").container(container("app")).build();
    let r = response(&answer(&wrap(&object, "CREATE", "shop")));
    let warnings = r["response"]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().is_some_and(|w| w.starts_with("otel-injector.io/inject=\"maybe\"")));
}

#[test]
fn unreadable_objects_are_admitted_unchanged_with_a_warning() {
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
    let a = answer(&wrap(&object, "CREATE", "shop"));
    let r = response(&a);
    assert_eq!(r["response"]["allowed"], true);
    assert!(r["response"].get("patch").is_none());
    assert_eq!(r["response"]["warnings"][0], "otel-injector left this Pod unchanged: spec.containers is not a list");
    let mut missing = wrap(&web_pod(), "CREATE", "shop");
    missing["request"]["object"] = Value::Null;
    assert_eq!(answer(&missing).reason, "request.object is missing");
}

#[test]
fn namespace_comes_from_the_request_then_the_object_and_drives_namespace_policy() {
    let object = pod("web").meta("namespace", "team-a".into()).container(container("app")).build();
    let mut review = wrap(&object, "CREATE", "");
    if let Some(request) = review["request"].as_object_mut() {
        request.remove("namespace");
    }
    let annotations = [("otel-injector.io/inject".to_owned(), "false".to_owned())].into();
    let ns = Fixed::new([("team-a".to_owned(), NamespaceMeta { annotations, ..NamespaceMeta::default() })]);
    let a = super::review(&serde_json::to_vec(&review).expect("json"), &config(), &ns).expect("well-formed");
    assert_eq!(a.namespace, "team-a");
    assert_eq!(
        (a.decision, a.reason.as_str()),
        (Decision::Skipped, "namespace annotation otel-injector.io/inject=false")
    );
}

#[rstest]
#[case::not_json(b"{not json".to_vec(), "malformed AdmissionReview: invalid JSON: ")]
#[case::empty(b"".to_vec(), "malformed AdmissionReview: invalid JSON: EOF while parsing")]
#[case::array(b"[]".to_vec(), "malformed AdmissionReview: the body is not a JSON object")]
#[case::wrong_kind(br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(), "malformed AdmissionReview: expected kind AdmissionReview")]
#[case::no_request(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "malformed AdmissionReview: request is missing")]
#[case::no_uid(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#.to_vec(), "malformed AdmissionReview: request: missing field `uid`")]
#[case::bad_operation(
    serde_json::to_vec(&{ let mut r = wrap(&web_pod(), "CREATE", "shop"); r["request"]["operation"] = "PATCH".into(); r }).expect("json"),
    "malformed AdmissionReview: request.operation: unknown variant `PATCH`")]
fn malformed_reviews_say_what_is_wrong(#[case] body: Vec<u8>, #[case] prefix: &str) {
    let err = super::review(&body, &config(), &Fixed::default()).expect_err("malformed");
    assert!(err.to_string().starts_with(prefix), "{err}");
    assert!(!err.to_string().contains('\n'));
}

fn in_api_server_order(review: &Value) -> String {
    crate::testing::fixtures::review_text(review["apiVersion"].as_str().unwrap_or_default(), &review["request"])
}

#[rstest]
#[case::instrumented(web_pod())]
#[case::opted_out(pod("web").annotation("otel-injector.io/inject", "false").container(container("app")).build())]
#[case::unreadable(json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a"}, {"name": "a"}]}}))]
#[case::not_a_pod_shape(json!({"metadata": {"name": "x"}, "spec": {"containers": {"name": "a"}}}))]
#[case::production(crate::testing::fixtures::production_pod())]
fn the_order_of_a_reviews_members_does_not_change_the_answer(#[case] object: Value) {
    let review = wrap(&object, "CREATE", "shop");
    let in_order = in_api_server_order(&review);
    // serde_json writes members sorted: `object` before `operation`.
    let sorted = serde_json::to_vec(&review).expect("json");
    let read = Review::parse(in_order.as_bytes(), &config()).expect("well-formed");
    let kept = Review::parse(&sorted, &config()).expect("well-formed");
    let (a, b) = (
        read.answer(&config(), &NamespaceMeta::default(), None, Vec::new(), Stop::default(), None),
        kept.answer(&config(), &NamespaceMeta::default(), None, Vec::new(), Stop::default(), None),
    );
    assert_eq!(String::from_utf8_lossy(&a.body), String::from_utf8_lossy(&b.body));
    assert_eq!(
        (a.decision, a.cause, &a.reason, &a.name, &a.namespace),
        (b.decision, b.cause, &b.reason, &b.name, &b.namespace)
    );
}

#[test]
fn a_rebuilt_env_list_keeps_every_field() {
    // The webhook takes back a variable it set: the list is rebuilt from the object's own text.
    let mut config = config();
    config.headers.insert("x-tenant".into(), "a".into());
    let first = super::review(
        &serde_json::to_vec(&wrap(&web_pod(), "CREATE", "shop")).expect("json"),
        &config,
        &Fixed::default(),
    )
    .expect("answered");
    let mut instrumented = web_pod();
    json_patch::patch(&mut instrumented, &decoded_patch(&response(&first))).expect("applies");
    instrumented["spec"]["containers"][0]["env"][0]["futureField"] = json!({"kept": true});
    config.headers.clear();
    let review = wrap(&instrumented, "CREATE", "shop");
    let text = in_api_server_order(&review);
    let a = Review::parse(text.as_bytes(), &config).expect("well-formed");
    let answer = a.answer(&config, &NamespaceMeta::default(), None, Vec::new(), Stop::default(), None);
    let mut out = instrumented.clone();
    json_patch::patch(&mut out, &decoded_patch(&response(&answer))).expect("applies");
    let env = out["spec"]["containers"][0]["env"].as_array().expect("env");
    assert!(env.iter().all(|e| e["name"] != "OTEL_EXPORTER_OTLP_HEADERS"), "the headers are taken back: {env:?}");
    assert_eq!(env[0]["futureField"], json!({"kept": true}), "a field no model knows survives the rebuild");
}
