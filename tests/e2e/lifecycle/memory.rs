//! Memory that cannot be blown up: the worst reviews the API server can legally send, 25 at a time, stay under
//! 64 MiB of resident memory, and the memory is given back afterwards (tests/e2e/tenant has the hostile ones).

use std::time::Duration;

use serde_json::{Value, json};

use super::{client, patch_text, serve_with_pair};

/// A Pod with 142,000 env entries in under 3 MiB (the API server forwards objects up to 3 MiB).
fn env_heavy_pod(name: &str, image: &str) -> Value {
    let env: Vec<Value> = (0..142_000u32).map(|i| json!({"name": format!("V{i:x}")})).collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": image, "env": env}]}})
}

/// 256 KiB of annotations (the API server's limit) and managedFields nested 100 deep.
fn annotated_pod() -> Value {
    let annotations: serde_json::Map<String, Value> =
        (0..8_000).map(|i| (format!("example.com/key-{i:05}"), Value::String("v".repeat(12)))).collect();
    let deep = (0..100).fold(json!({}), |inner, i| json!({format!("f:level{i}"): inner}));
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "annotated", "namespace": "shop", "annotations": annotations,
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": deep}]},
        "spec": {"containers": [{"name": "app", "image": "web:1"}]}})
}

fn review(object: &Value, old: Option<&Value>, kind: (&str, &str, &str)) -> Vec<u8> {
    let (group, version, name) = kind;
    let resource = format!("{}s", name.to_lowercase());
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "1", "kind": {"group": group, "version": version, "kind": name},
        "resource": {"group": group, "version": version, "resource": resource},
        "namespace": "shop", "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
        "userInfo": {"username": "test"}, "object": object, "oldObject": old}}))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worst_legal_reviews_stay_under_64_mib_and_memory_is_given_back() {
    // Bodies queue for the budget; on a busy 2-core machine a debug build needs more than 10 s for them all.
    let (serve, pki, _dir) = serve_with_pair(&["--workloads", "Pod,Deployment", "--read-timeout", "30s"]);
    let (idle, idle_anon) = (serve.memory_kb("VmRSS"), serve.memory_kb("RssAnon"));
    let pod = env_heavy_pod("heavy", "web:1");
    let deployment = |image: &str| {
        let pod = env_heavy_pod("x", image);
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "heavy", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}},
                "spec": pod["spec"]}}})
    };
    let reviews = std::sync::Arc::new(vec![
        review(&pod, None, ("", "v1", "Pod")),
        review(&deployment("web:2"), Some(&deployment("web:1")), ("apps", "v1", "Deployment")),
        review(&annotated_pod(), None, ("", "v1", "Pod")),
    ]);
    eprintln!("review sizes: {:?} bytes", reviews.iter().map(Vec::len).collect::<Vec<_>>());
    assert!(serde_json::to_vec(&pod).expect("json").len() <= 3 << 20, "a legal object");
    let mut tasks = Vec::new();
    for connection in 0..25 {
        let (reviews, url, c) = (reviews.clone(), serve.url(), client(&pki.ca_pem));
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for round in 0..3 {
                let body = reviews[(connection + round) % reviews.len()].clone();
                let response =
                    c.post(&url).header("content-type", "application/json").body(body).send().await.expect("answer");
                let status = response.status().as_u16();
                answered.push((status, response.json::<Value>().await.unwrap_or(Value::Null)));
            }
            answered
        }));
    }
    let (mut instrumented, mut over_limit) = (0, 0);
    for task in tasks {
        for (status, answer) in task.await.expect("joined") {
            assert_eq!(status, 200, "{answer}");
            instrumented += usize::from(patch_text(&answer).contains("OTEL_SERVICE_NAME"));
            let warnings = answer["response"]["warnings"].to_string();
            over_limit += usize::from(warnings.contains("env entries, over the limit of 1000"));
        }
    }
    // 142,000 env entries are over the engine's limit (docs/operations.md, "Limits of one object"): admitted unchanged, with a warning.
    assert_eq!((instrumented, over_limit), (25, 50), "every worst review answered, within the limits or not");
    let peak = serve.memory_kb("VmHWM");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, after_anon) = (serve.memory_kb("VmRSS"), serve.memory_kb("RssAnon"));
    eprintln!(
        "RSS idle {idle} kB ({idle_anon} kB anonymous), peak {peak} kB, after {after} kB ({after_anon} kB anonymous); \
         75 reviews of up to 4.7 MiB, 25 at a time"
    );
    // The ceiling is the pod's 64 MiB; the release binary idles at about 14 MiB, this debug one at about 31 MiB of
    // mostly its own code, which grows with every feature: what the reviews may add is bounded, 40 MiB (release: 14 +
    // 40 < 64; measured there: 38 MiB peak).
    assert!(peak - idle < 40 * 1024, "peak RSS {peak} kB is over 40 MiB above idle ({idle} kB)");
    // Bodies are unmapped when answered; what stays is the allocator's per-thread small change (about 10 MiB).
    assert!(after_anon < idle_anon + 16 * 1024, "memory given back: {after_anon} kB after, {idle_anon} kB idle");
}
