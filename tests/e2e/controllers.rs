//! A current Kubernetes, whole (issue 18): pods made by controllers, the rollouts users cause and only those,
//! native sidecars stored for real, Pod Security, fields newer than the webhook's types, pod-level resources,
//! Windows pods and server-side apply, through the 1.37 control plane with its controllers and scheduler.

use std::collections::BTreeMap;
use std::time::Duration;

use otel_injector::engine::kubelet_env;
use serde_json::{Value, json};

use super::harness::{Cluster, Webhook, container, env_of, eventually, status_of};

/// Every workload kind's template, for the webhook to mutate.
const TEMPLATES: &str = "[Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob]";

fn apply(cluster: &Cluster, ns: &str, object: &Value) {
    cluster.kubectl_ok(&["apply", "-n", ns, "-f", "-"], Some(&object.to_string()));
}

/// A pod template whose one container is `app` on `image`.
fn template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app", "image": image}]}})
}

fn deployment(name: &str, replicas: u32, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, image)}})
}

/// The pods of `namespace`, once there are `count` of them (the controllers make them within seconds).
fn pods(cluster: &Cluster, namespace: &str, count: usize) -> Vec<Value> {
    let found = eventually(Duration::from_secs(60), || {
        let items = cluster.get(&["pods", "-n", namespace])["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= count).then_some(items)
    });
    found.unwrap_or_else(|| {
        panic!("{count} pods never appeared in {namespace}: {}", cluster.kubectl(&["get", "all", "-n", namespace]))
    })
}

/// The ReplicaSets of `namespace` (each one a rollout).
fn replica_sets(cluster: &Cluster, namespace: &str) -> usize {
    cluster.get(&["replicasets", "-n", namespace])["items"].as_array().map_or(0, Vec::len)
}

/// Makes pods with every controller: a Deployment, a StatefulSet, a DaemonSet (one pod per Node), a Job, and a Job
/// made from a CronJob the way `kubectl create job --from` does.
fn make_pods_with_every_controller(cluster: &Cluster, ns: &str) {
    apply(cluster, ns, &deployment("shop-web", 2, "shop/web:1.2"));
    apply(
        cluster,
        ns,
        &json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "db"}}, "template": template("db", "shop/db:16")}}),
    );
    apply(
        cluster,
        ns,
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", "shop/agent:3")}}),
    );
    let mut job = template("batch", "shop/batch:1");
    job["spec"]["restartPolicy"] = "Never".into();
    apply(
        cluster,
        ns,
        &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
        "spec": {"template": job}}),
    );
    let mut cron = template("nightly", "shop/report:2");
    cron["spec"]["restartPolicy"] = "OnFailure".into();
    apply(
        cluster,
        ns,
        &json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": cron}}}}),
    );
    cluster.kubectl(&["create", "job", "-n", ns, "--from=cronjob/nightly", "nightly-29000000"]);
}

fn controller_made_pods_are_instrumented_exactly_once(workloads: &str) {
    let cluster = Cluster::shared();
    let config = format!("default: inject\nworkloads: {workloads}\n");
    let hook = Webhook::start(cluster, &config);
    let ns = hook.namespace(&[]);
    make_pods_with_every_controller(cluster, &ns);
    // 2 + 2 + 2 (two Nodes) + 1 + 1.
    let pods = pods(cluster, &ns, 8);
    let mut services = BTreeMap::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        assert!(pod["metadata"]["name"].is_string() && pod["metadata"]["generateName"].is_string(), "{name}");
        let status = status_of(pod).unwrap_or_else(|| panic!("{name} is instrumented: {pod}"));
        let app = container(&pod["spec"], "app").expect("app");
        let names: Vec<&str> = app["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "OTEL_SERVICE_NAME").count(), 1, "{name}: once: {names:?}");
        assert_eq!(status["serviceName"], env_of(app)["OTEL_SERVICE_NAME"].as_str(), "{name}");
        *services.entry(env_of(app)["OTEL_SERVICE_NAME"].clone()).or_insert(0) += 1;
        // As the kubelet resolves it: the controller's names reach the attributes, from the pod's labels.
        let env = kubelet_env::resolve(pod, "app", &|_| None).expect("resolves");
        let attributes = env.get("OTEL_RESOURCE_ATTRIBUTES").map(ToString::to_string).unwrap_or_default();
        let attribute =
            |key: &str| attributes.split(',').find_map(|p| p.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned);
        let owner = pod["metadata"]["ownerReferences"][0].clone();
        match owner["kind"].as_str() {
            Some("ReplicaSet") => assert_eq!(
                attribute("k8s.replicaset.name"),
                owner["name"].as_str().map(str::to_owned),
                "{name}: {attributes}"
            ),
            Some("Job") => {
                assert_eq!(attribute("k8s.job.name"), owner["name"].as_str().map(str::to_owned), "{name}: {attributes}")
            }
            _ => {}
        }
        assert!(!attributes.contains("$("), "{name}: every reference resolves: {attributes}");
    }
    // service.name from each pod's owner, resolved without an API call.
    let want: BTreeMap<String, i32> =
        [("shop-web", 2), ("db", 2), ("agent", 2), ("batch", 1), ("nightly", 1)].map(|(k, v)| (k.to_owned(), v)).into();
    assert_eq!(services, want, "{workloads}");
    // Scheduled by the scheduler onto the two Nodes (DaemonSet pods by their controller's affinity).
    assert!(pods.iter().all(|p| p["spec"]["nodeName"].is_string()), "every pod scheduled");
    // And current: audit finds nothing to report.
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("config.yaml");
    std::fs::write(&config_file, &config).expect("write");
    let audit = hook.command(&["audit", "-n", &ns, "-o", "json", "--config", &config_file.to_string_lossy()], None);
    assert_eq!(audit.status.code(), Some(0), "{}", String::from_utf8_lossy(&audit.stdout));
}

#[test]
fn pods_made_by_controllers_are_instrumented_exactly_once_when_only_pods_are_mutated() {
    controller_made_pods_are_instrumented_exactly_once("[Pod]");
}

#[test]
fn pods_made_by_controllers_are_instrumented_exactly_once_when_templates_are_mutated() {
    controller_made_pods_are_instrumented_exactly_once(TEMPLATES);
}

#[test]
fn only_the_rollouts_users_cause_happen() {
    let cluster = Cluster::shared();
    let mut hook = Webhook::start(cluster, &format!("default: inject\nworkloads: {TEMPLATES}\n"));
    let ns = hook.namespace(&[]);
    apply(cluster, &ns, &deployment("web", 2, "shop/web:1.2"));
    pods(cluster, &ns, 2);
    assert_eq!(replica_sets(cluster, &ns), 1);
    // A new config (another sampling ratio) must not roll anything by itself, nor on the next unrelated change.
    hook.restart(&format!("default: inject\nworkloads: {TEMPLATES}\nsamplingRatio: 0.5\n"));
    cluster.kubectl(&["scale", "deployment", "web", "-n", &ns, "--replicas=3"]);
    cluster.kubectl(&["label", "deployment", "web", "-n", &ns, "team=shop"]);
    cluster.kubectl(&["annotate", "deployment", "web", "-n", &ns, "owner=ops"]);
    pods(cluster, &ns, 3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replica_sets(cluster, &ns), 1, "scale, label and annotate start no rollout");
    // A change of the template is a rollout the user caused: exactly one, and its pods carry the new settings.
    cluster.kubectl(&["set", "image", "deployment/web", "-n", &ns, "app=shop/web:1.3"]);
    let rolled = eventually(Duration::from_secs(30), || (replica_sets(cluster, &ns) == 2).then_some(()));
    assert!(rolled.is_some(), "one new ReplicaSet");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replica_sets(cluster, &ns), 2, "exactly one");
    let new_pods = eventually(Duration::from_secs(30), || {
        let items = cluster.get(&["pods", "-n", &ns])["items"].as_array().cloned().unwrap_or_default();
        let new: Vec<Value> = items
            .into_iter()
            .filter(|p| container(&p["spec"], "app").is_some_and(|a| a["image"] == "shop/web:1.3"))
            .collect();
        (!new.is_empty()).then_some(new)
    })
    .expect("pods of the new ReplicaSet");
    for pod in &new_pods {
        let app = container(&pod["spec"], "app").expect("app");
        assert_eq!(env_of(app)["OTEL_TRACES_SAMPLER_ARG"], "0.5", "the new settings");
        assert!(env_of(app)["OTEL_RESOURCE_ATTRIBUTES"].contains("service.version=1.3"), "{:?}", env_of(app));
    }
    // `kubectl rollout restart` is a rollout too, and gives instrumented pods.
    cluster.kubectl(&["rollout", "restart", "deployment/web", "-n", &ns]);
    let restarted = eventually(Duration::from_secs(30), || (replica_sets(cluster, &ns) == 3).then_some(()));
    assert!(restarted.is_some(), "a restart is one more ReplicaSet");
    let restarted_pods = eventually(Duration::from_secs(30), || {
        let items = cluster.get(&["pods", "-n", &ns])["items"].as_array().cloned().unwrap_or_default();
        let marked: Vec<Value> = items
            .into_iter()
            .filter(|p| p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string())
            .collect();
        (!marked.is_empty()).then_some(marked)
    })
    .expect("restarted pods");
    assert!(restarted_pods.iter().all(|p| status_of(p).is_some()), "restarted pods are instrumented");
}

#[test]
fn native_sidecars_are_stored_as_init_containers_and_a_job_with_one_is_accepted() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\nsidecar: {enabled: true}\n");
    let ns = hook.namespace(&[]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1.2"}]}});
    let stored = cluster.create(&ns, &pod);
    let sidecar = stored["spec"]["initContainers"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "otel-collector"))
        .unwrap_or_else(|| panic!("a native sidecar: {stored}"));
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert!(sidecar["readinessProbe"].is_object() && sidecar["livenessProbe"].is_object(), "{sidecar}");
    assert_eq!(status_of(&stored).expect("status")["sidecar"], "native");
    let mut job_template = template("report", "shop/report:1");
    job_template["spec"]["restartPolicy"] = "Never".into();
    apply(
        cluster,
        &ns,
        &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "report"},
        "spec": {"template": job_template}}),
    );
    let job_pod = pods(cluster, &ns, 2).into_iter().find(|p| p["metadata"]["labels"]["job-name"] == "report");
    let job_pod = job_pod.expect("the Job's pod");
    assert!(container(&job_pod["spec"], "otel-collector").is_some_and(|c| c["restartPolicy"] == "Always"));
}

/// A pod that satisfies Pod Security `restricted` on its own.
fn compliant_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "shop/web:1.2", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})
}

#[test]
fn the_sidecar_never_makes_a_compliant_pod_non_compliant_under_pod_security() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\nsidecar: {enabled: true}\n");
    for level in ["restricted", "baseline"] {
        let ns = hook.namespace(&[]);
        cluster.kubectl(&["label", "namespace", &ns, &format!("pod-security.kubernetes.io/enforce={level}")]);
        let stored = cluster.create(&ns, &compliant_pod("web"));
        assert!(container(&stored["spec"], "otel-collector").is_some(), "{level}: admitted with the sidecar");
        // The same namespace refuses a pod that is not compliant on its own: the level is enforced.
        if level == "restricted" {
            let mut loose = compliant_pod("loose");
            loose["spec"]["containers"][0]["securityContext"] = json!({});
            let out = cluster.kubectl_with(&["create", "-n", &ns, "-f", "-"], Some(&loose.to_string()));
            assert!(!out.status.success(), "restricted is enforced");
        }
    }
}

#[test]
fn fields_newer_than_the_webhooks_types_survive_its_patch() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let ns = hook.namespace(&[]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "newer"},
        "spec": {
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            "volumes": [{"name": "models", "image": {"reference": "registry.example.com/models:v1", "pullPolicy": "IfNotPresent"}}],
            "containers": [{"name": "app", "image": "shop/web:1.2",
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
                "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": true}]}]}});
    let stored = cluster.create(&ns, &pod);
    assert!(status_of(&stored).is_some(), "instrumented");
    assert_eq!(stored["spec"]["resources"], pod["spec"]["resources"], "pod-level resources kept");
    assert_eq!(stored["spec"]["volumes"][0]["image"], pod["spec"]["volumes"][0]["image"], "the image volume kept");
    let app = container(&stored["spec"], "app").expect("app");
    assert_eq!(app["resizePolicy"], pod["spec"]["containers"][0]["resizePolicy"]);
    // (The service account's token mount comes after, added by the API server's own admission.)
    assert_eq!(app["volumeMounts"][0], pod["spec"]["containers"][0]["volumeMounts"][0]);
}

#[test]
fn a_pod_whose_own_resources_cannot_hold_the_sidecar_and_a_windows_pod_get_none_with_a_warning() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\nsidecar: {enabled: true}\n");
    let ns = hook.namespace(&[]);
    // Pod-level resources smaller than the sidecar's own requests (50m, 64Mi): the API server would refuse the pod
    // with the sidecar in it.
    let small = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "small"},
        "spec": {"resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "20m", "memory": "32Mi"}},
            "containers": [{"name": "app", "image": "shop/web:1.2"}]}});
    let windows = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "win"},
        "spec": {"os": {"name": "windows"}, "containers": [{"name": "app", "image": "shop/web:ltsc2022"}]}});
    for pod in [small, windows] {
        let out = cluster.kubectl_with(&["create", "-n", &ns, "-o", "json", "-f", "-"], Some(&pod.to_string()));
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "accepted: {said}");
        let stored: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(container(&stored["spec"], "otel-collector").is_none(), "no sidecar: {stored}");
        assert!(status_of(&stored).is_some(), "the app is still instrumented");
        assert!(said.contains("otel-injector added no collector sidecar"), "a warning: {said}");
    }
}

#[test]
fn server_side_apply_of_an_instrumented_deployment_has_no_conflict_and_no_rollout_of_its_own() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, &format!("default: inject\nworkloads: {TEMPLATES}\n"));
    let ns = hook.namespace(&[]);
    let manifest = deployment("web", 1, "shop/web:1.2").to_string();
    let ssa = |text: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "--field-manager=ci", "-n", &ns, "-o", "json", "-f", "-"];
        args.extend_from_slice(extra);
        let out = cluster.kubectl_with(&args, Some(text));
        assert!(out.status.success(), "no conflict: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let shown = ssa(&manifest, &["--dry-run=server"]);
    assert!(status_of(&shown["spec"]["template"]).is_some(), "--dry-run=server shows the injection");
    ssa(&manifest, &[]);
    pods(cluster, &ns, 1);
    ssa(&manifest, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replica_sets(cluster, &ns), 1, "applying the same manifest again rolls nothing");
    let changed = deployment("web", 1, "shop/web:1.3").to_string();
    let applied = ssa(&changed, &[]);
    assert!(status_of(&applied["spec"]["template"]).is_some(), "the changed template is instrumented");
    let rolled = eventually(Duration::from_secs(30), || (replica_sets(cluster, &ns) == 2).then_some(()));
    assert!(rolled.is_some(), "the change is one rollout");
}
