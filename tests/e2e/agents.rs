//! Language agents through real API servers (issue 22): the image volume stored on the current lane, the init
//! container on both lanes, in a Pod Security `restricted` namespace, for pods made by controllers from an
//! instrumented template.

use std::time::Duration;

use otel_injector::engine::kubelet_env;
use serde_json::{Value, json};

use super::harness::{Cluster, Webhook, container, eventually, status_of};

/// A Deployment whose template satisfies `restricted` on its own and asks for the Java and Node.js agents.
fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name},
                    "annotations": {"otel-injector.io/inject-java": "true", "otel-injector.io/inject-nodejs": "true"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "app", "image": "shop/web:1.2",
                        "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx256m"}],
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}})
}

/// The pods of `namespace`, once there are `count`.
fn pods(cluster: &Cluster, namespace: &str, count: usize) -> Vec<Value> {
    let found = eventually(Duration::from_secs(60), || {
        let items = cluster.get(&["pods", "-n", namespace])["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= count).then_some(items)
    });
    found.unwrap_or_else(|| {
        panic!(
            "{count} pods never appeared in {namespace}: {}",
            cluster.kubectl(&["get", "all,events", "-n", namespace])
        )
    })
}

/// Checks one stored pod: both agents mounted and activated, delivered as `delivery` says.
fn check_pod(pod: &Value, delivery: &str) {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let status = status_of(pod).unwrap_or_else(|| panic!("{name} is instrumented: {pod}"));
    assert_eq!(status["agents"]["app"], json!(["java", "nodejs"]), "{name}: {status}");
    assert_eq!(status["agentDelivery"], delivery, "{name}");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    for language in ["java", "nodejs"] {
        let volume =
            volumes.iter().find(|v| v["name"] == format!("otel-agent-{language}")).expect("the agent's volume");
        match delivery {
            "image-volume" => {
                assert!(volume["image"]["reference"].is_string(), "{name}: stored as an image volume: {volume}")
            }
            _ => {
                assert!(volume["emptyDir"].is_object(), "{volume}");
                let init = container(&pod["spec"], &format!("otel-agent-{language}")).expect("the init container");
                assert_eq!(init["securityContext"]["runAsNonRoot"], true);
            }
        }
    }
    let app = container(&pod["spec"], "app").expect("app");
    let mounts: Vec<&str> =
        app["volumeMounts"].as_array().into_iter().flatten().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(
        mounts.contains(&"/otel-auto-instrumentation-java") && mounts.contains(&"/otel-auto-instrumentation-nodejs"),
        "{mounts:?}"
    );
    // What the JVM and Node will read, resolved as the kubelet does: the user's option kept, the agent after it.
    let env = kubelet_env::resolve(pod, "app", &|_| None).expect("resolves");
    assert_eq!(
        env.get("JAVA_TOOL_OPTIONS").map(ToString::to_string).as_deref(),
        Some("-Xmx256m -javaagent:/otel-auto-instrumentation-java/javaagent.jar"),
        "{name}"
    );
    let node = env.get("NODE_OPTIONS").map(ToString::to_string).unwrap_or_default();
    assert_eq!(node, "--require /otel-auto-instrumentation-nodejs/autoinstrumentation/autoinstrumentation.js");
}

/// Runs a Deployment asking for agents in a `restricted` namespace and checks the pods its controllers make.
fn agents_reach_controller_made_pods(cluster: &Cluster, config: &str, delivery: &str) {
    let hook = Webhook::start(cluster, config);
    let ns = hook.namespace(&[]);
    cluster.kubectl_ok(&["label", "namespace", &ns, "pod-security.kubernetes.io/enforce=restricted"], None);
    let out = cluster.kubectl_with(&["apply", "-n", &ns, "-f", "-"], Some(&deployment("shop").to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let template = cluster.get(&["deployment", "shop", "-n", &ns]);
    assert_eq!(status_of(&template["spec"]["template"]).expect("template status")["agentDelivery"], delivery);
    for pod in pods(cluster, &ns, 2) {
        check_pod(&pod, delivery);
    }
    // The pods were made by the ReplicaSet controller, and `restricted` let them in: nothing was refused.
    let events = cluster.kubectl(&["get", "events", "-n", &ns, "-o", "json"]);
    assert!(!events.contains("violates PodSecurity"), "{events}");

    // The user turns the Java agent off: the API server applies the webhook's removals, the user's option is as it
    // was, the Node.js agent stays.
    let off = r#"[{"op": "replace", "path": "/spec/template/metadata/annotations/otel-injector.io~1inject-java", "value": "false"}]"#;
    cluster.kubectl_ok(&["patch", "deployment", "shop", "-n", &ns, "--type=json", "-p", off], None);
    let template = cluster.get(&["deployment", "shop", "-n", &ns])["spec"]["template"].clone();
    let volumes: Vec<&str> =
        template["spec"]["volumes"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(volumes, ["otel-agent-nodejs"], "{template}");
    let inits = template["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
    assert!(inits.iter().all(|c| c["name"] != "otel-agent-java"), "{inits:?}");
    let app = container(&template["spec"], "app").expect("app");
    let java: Vec<&Value> =
        app["env"].as_array().into_iter().flatten().filter(|e| e["name"] == "JAVA_TOOL_OPTIONS").collect();
    assert_eq!(java, [&json!({"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx256m"})]);
    assert_eq!(status_of(&template).expect("status")["agents"]["app"], json!(["nodejs"]));
}

#[test]
fn agents_by_image_volume_on_the_current_lane() {
    agents_reach_controller_made_pods(
        Cluster::shared(),
        "workloads: [Pod, Deployment]\nagents: {delivery: auto}\n",
        "image-volume",
    );
}

#[test]
fn agents_by_init_container_on_the_current_lane() {
    agents_reach_controller_made_pods(
        Cluster::shared(),
        "workloads: [Pod, Deployment]\nagents: {delivery: init-container}\n",
        "init-container",
    );
}

#[test]
fn agents_by_init_container_on_the_old_lane() {
    // Kubernetes 1.20 has no image volumes: `auto` copies. Its `restricted` comes from the PodSecurityPolicy era
    // (no Pod Security admission), so the namespace label is only a label there; the init container is checked.
    let cluster = Cluster::old();
    let hook = Webhook::start(cluster, "agents: {delivery: auto}\n");
    let ns = hook.namespace(&[]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web",
            "annotations": {"otel-injector.io/inject-java": "true", "otel-injector.io/inject-nodejs": "true"}},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1.2", "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx256m"}]}]}});
    let stored = cluster.create(&ns, &pod);
    check_pod(&stored, "init-container");
}

#[test]
fn a_pod_whose_own_resources_cannot_hold_the_init_container_is_admitted_without_the_agent() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "agents: {delivery: init-container}\n");
    let ns = hook.namespace(&[]);
    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": {"otel-injector.io/inject-java": "true"}},
            "spec": {"resources": {"requests": {"cpu": "20m", "memory": "16Mi"}, "limits": {"cpu": "20m", "memory": "16Mi"}},
                "containers": [{"name": "app", "image": "shop/web:1.2"}]}})
    };
    // The rule is the API server's: an init container asking for more than the pod has is refused.
    let mut by_hand = pod("by-hand");
    by_hand["metadata"]["annotations"] = json!({"otel-injector.io/inject": "false"});
    by_hand["spec"]["initContainers"] = json!([{"name": "copy", "image": "busybox",
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}}}]);
    let refused = cluster.kubectl_with(&["create", "-n", &ns, "-f", "-"], Some(&by_hand.to_string()));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the API server refuses an init container beyond the pod's resources");
    assert!(said.contains("must be greater than or equal to aggregate container requests"), "{said}");
    // So the webhook adds no agent there, and says why; the pod is created.
    let out = cluster.kubectl_with(&["create", "-n", &ns, "-f", "-"], Some(&pod("web").to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leave no room for its init container"));
    let stored = cluster.get(&["pod", "web", "-n", &ns]);
    assert!(stored["spec"].get("initContainers").is_none(), "{}", stored["spec"]);
}
