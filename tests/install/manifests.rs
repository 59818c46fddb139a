//! `manifests/`, `certs/` and the Dockerfile: every object valid, and each field the install relies on in place.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use otel_injector::engine::config::Config;
use otel_injector::engine::workload::WorkloadKind;
use serde_json::{Value, json};

use super::render::{PlainVariant, kustomize};
use super::{documents, find, repo, run, tools_dir, validate_strictly};

/// The oldest Kubernetes the manifests are for (`matchConditions` is GA in 1.30) and the newest the validator knows.
const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn plain() -> (PlainVariant, Vec<Value>) {
    let variant = PlainVariant::new();
    let objects = documents(&kustomize(&variant.certs()));
    (variant, objects)
}

fn cert_manager() -> Vec<Value> {
    documents(&kustomize(&repo().join("manifests/cert-manager")))
}

fn strings(value: &Value) -> BTreeSet<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_variant_validates_strictly_against_the_kubernetes_schema() {
    let (variant, _) = plain();
    let renders = [
        ("plain (certs/)", kustomize(&variant.certs())),
        ("cert-manager", kustomize(&repo().join("manifests/cert-manager"))),
        ("grafana", kustomize(&repo().join("manifests/grafana"))),
    ];
    for version in VERSIONS {
        for (label, yaml) in &renders {
            let custom = validate_strictly(label, yaml, version);
            let kinds: BTreeSet<_> = custom.iter().map(|c| c.kind.as_str()).collect();
            let expected: BTreeSet<&str> =
                if *label == "cert-manager" { ["Certificate", "Issuer"].into() } else { BTreeSet::new() };
            assert_eq!(kinds, expected, "{label}: only cert-manager's resources lack a built-in schema");
        }
    }
}

#[test]
fn the_mutating_webhook_configuration_registers_both_entries_safely() {
    let (variant, objects) = plain();
    let config = find(&objects, "MutatingWebhookConfiguration", Some("otel-injector"));
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 2);
    let ca = std::fs::read(variant.certs().join("ca.crt")).expect("ca.crt");
    for hook in hooks {
        let name = hook["name"].as_str().expect("name");
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{name}");
        assert_eq!(hook["sideEffects"], "None", "{name}: dry runs call it");
        assert_eq!(hook["failurePolicy"], "Ignore", "{name}: a webhook that is down never blocks a deployment");
        let timeout = hook["timeoutSeconds"].as_u64().expect("timeoutSeconds");
        assert!((2..=5).contains(&timeout), "{name}: a few seconds, not the 10 s default: {timeout}");
        assert_eq!(hook["reinvocationPolicy"], "IfNeeded", "{name}");
        assert_eq!(hook["matchPolicy"], "Equivalent", "{name}");
        let service = &hook["clientConfig"]["service"];
        assert_eq!(
            (&service["namespace"], &service["name"], &service["path"], &service["port"]),
            (&json!("otel-injector"), &json!("otel-injector"), &json!("/mutate"), &json!(443)),
            "{name}"
        );
        let bundle = hook["clientConfig"]["caBundle"].as_str().expect("caBundle filled in by make certs");
        use base64::Engine;
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(bundle).expect("base64"), ca, "{name}");
        // Namespaces: the system ones and the webhook's own by name, and any labelled inject=false.
        let selector = &hook["namespaceSelector"]["matchExpressions"];
        let by_name = selector.as_array().and_then(|e| e.iter().find(|x| x["key"] == "kubernetes.io/metadata.name"));
        let by_name = by_name.expect("namespaces excluded by name");
        assert_eq!(by_name["operator"], "NotIn");
        assert_eq!(
            strings(&by_name["values"]),
            set(&["kube-system", "kube-node-lease", "kube-public", "otel-injector"]),
            "{name}"
        );
        for selector in [&hook["namespaceSelector"], &hook["objectSelector"]] {
            let opt_out = selector["matchExpressions"]
                .as_array()
                .and_then(|e| e.iter().find(|x| x["key"] == "otel-injector.io/inject"))
                .expect("the label opt-out");
            assert_eq!((&opt_out["operator"], &opt_out["values"]), (&json!("NotIn"), &json!(["false"])), "{name}");
        }
    }
    let pods = &hooks[0];
    assert_eq!(pods["name"], "pods.otel-injector.io");
    assert_eq!(
        pods["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                "scope": "Namespaced"}])
    );
    let conditions = pods["matchConditions"].as_array().expect("matchConditions");
    assert!(
        conditions.iter().any(|c| c["expression"].as_str().is_some_and(|e| e.contains("kubernetes.io/config.mirror"))),
        "mirror pods are skipped before a call: {conditions:?}"
    );
    // The second entry covers exactly the workload kinds the shipped config enables, CREATE and UPDATE.
    let workloads = &hooks[1];
    assert_eq!(workloads["name"], "workloads.otel-injector.io");
    let shipped = shipped_config(&objects);
    let mut expected = BTreeSet::new();
    for kind in shipped.workloads.iter().filter(|k| **k != WorkloadKind::Pod) {
        let (group, version, plural) = kind.api_resource();
        expected.insert(format!("{group}/{version}/{plural}"));
    }
    let mut covered = BTreeSet::new();
    for rule in workloads["rules"].as_array().expect("rules") {
        assert_eq!(strings(&rule["operations"]), set(&["CREATE", "UPDATE"]));
        for group in strings(&rule["apiGroups"]) {
            for version in strings(&rule["apiVersions"]) {
                for resource in strings(&rule["resources"]) {
                    covered.insert(format!("{group}/{version}/{resource}"));
                }
            }
        }
    }
    assert_eq!(covered, expected, "workload rules match the config's workloads");
    assert!(workloads.get("matchConditions").is_none_or(|c| c.as_array().is_some_and(|c| c.is_empty())));
}

/// The config of the ConfigMap, as the webhook reads it.
fn shipped_config(objects: &[Value]) -> Config {
    let map = find(objects, "ConfigMap", Some("otel-injector"));
    Config::from_yaml(map["data"]["config.yaml"].as_str().expect("config.yaml")).expect("the webhook accepts it")
}

#[test]
fn the_shipped_config_is_accepted_and_points_at_the_gateway_of_the_helmfile() {
    let (_variant, objects) = plain();
    let config = shipped_config(&objects);
    assert!(config.endpoint.contains("otel-gateway.observability.svc"), "{}", config.endpoint);
    // The same release and namespace in helmfile.yaml and the collector's fullnameOverride.
    let helmfile = std::fs::read_to_string(repo().join("helmfile.yaml")).expect("helmfile.yaml");
    assert!(helmfile.contains("name: otel-gateway") && helmfile.contains("namespace: observability"));
    let values = std::fs::read_to_string(repo().join("helm-values/opentelemetry-collector.yaml")).expect("values");
    assert!(values.contains("fullnameOverride: otel-gateway"));
}

#[test]
fn the_deployment_runs_two_hardened_replicas_that_drain_before_they_stop() {
    let (_variant, objects) = plain();
    let deployment = find(&objects, "Deployment", Some("otel-injector"));
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "otel-injector");
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe} on the metrics port");
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let ports: BTreeSet<_> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].to_string(), p["containerPort"].to_string()))
        .collect();
    assert_eq!(ports, [("\"metrics\"".into(), "9090".into()), ("\"webhook\"".into(), "8443".into())].into());
    let resources = &c["resources"];
    for path in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        assert!(resources.pointer(path).is_some(), "resources{path}");
    }
    assert!(resources.pointer("/limits/cpu").is_none(), "no CPU limit: throttling would delay pod creations");
    // The process drains for --drain-delay then --shutdown-grace; the kubelet must wait for both.
    let args = strings(&c["args"]);
    let seconds = |flag: &str| -> u64 {
        let arg = args.iter().find_map(|a| a.strip_prefix(&format!("{flag}="))).expect(flag);
        arg.trim_end_matches('s').parse().expect("seconds")
    };
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    assert!(grace > seconds("--drain-delay") + seconds("--shutdown-grace"), "grace {grace}");
    // Directory mounts (never subPath), so rotated certificates and config edits reach the running process.
    for mount in c["volumeMounts"].as_array().expect("mounts") {
        assert!(mount.get("subPath").is_none(), "{mount}");
    }
    for arg in ["--tls-cert=/etc/otel-injector/tls/tls.crt", "--config=/etc/otel-injector/config/config.yaml"] {
        assert!(args.contains(arg), "{arg}");
    }
    // The image is the one the Dockerfile builds, pinned to this version.
    assert_eq!(c["image"], format!("ghcr.io/otel-injector/otel-injector:{}", env!("CARGO_PKG_VERSION")));
    // Its own pods are never instrumented.
    assert_eq!(spec["template"]["metadata"]["labels"]["otel-injector.io/inject"], "false");
}

#[test]
fn rbac_grants_namespaces_get_list_watch_pods_list_configmaps_get_and_nothing_else() {
    let (_variant, objects) = plain();
    let role = find(&objects, "ClusterRole", Some("otel-injector"));
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ])
    );
    let binding = find(&objects, "ClusterRoleBinding", Some("otel-injector"));
    assert_eq!(binding["roleRef"]["name"], "otel-injector");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "otel-injector", "namespace": "otel-injector"}])
    );
    assert!(!objects.iter().any(|o| o["kind"] == "Role" || o["kind"] == "RoleBinding"));
}

#[test]
fn the_service_network_policy_and_disruption_budget() {
    let (_variant, objects) = plain();
    let service = find(&objects, "Service", Some("otel-injector"));
    let https = service["spec"]["ports"].as_array().expect("ports").iter().find(|p| p["port"] == 443).expect("443");
    assert_eq!(https["targetPort"], "webhook");
    let policy = find(&objects, "NetworkPolicy", Some("otel-injector"));
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress");
    let ports: BTreeSet<String> = ingress
        .iter()
        .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| p.to_string())
        .collect();
    let expected = [json!({"port": 8443, "protocol": "TCP"}), json!({"port": 9090, "protocol": "TCP"})];
    assert_eq!(ports, expected.iter().map(Value::to_string).collect());
    assert!(ingress.iter().all(|r| r.get("from").is_none()), "from anywhere: the API server's address is not known");
    let pdb = find(&objects, "PodDisruptionBudget", Some("otel-injector"));
    assert_eq!((&pdb["apiVersion"], &pdb["spec"]["minAvailable"]), (&json!("policy/v1"), &json!(1)));
    let secret = find(&objects, "Secret", Some("otel-injector-tls"));
    assert_eq!(secret["type"], "kubernetes.io/tls");
}

#[test]
fn the_cert_manager_variant_issues_the_pair_and_injects_the_ca() {
    let objects = cert_manager();
    let webhook = find(&objects, "MutatingWebhookConfiguration", Some("otel-injector"));
    assert_eq!(webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], "otel-injector/otel-injector");
    assert!(
        webhook["webhooks"].as_array().expect("webhooks").iter().all(|w| w["clientConfig"].get("caBundle").is_none())
    );
    let certificate = find(&objects, "Certificate", Some("otel-injector"));
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    assert_eq!(certificate["spec"]["secretName"], "otel-injector-tls", "the Secret the Deployment mounts");
    assert_eq!(
        strings(&certificate["spec"]["dnsNames"]),
        set(&["otel-injector.otel-injector.svc", "otel-injector.otel-injector.svc.cluster.local"])
    );
    let issuer = certificate["spec"]["issuerRef"]["name"].as_str().expect("issuer");
    let issuer = find(&objects, "Issuer", Some(issuer));
    let ca_secret = issuer["spec"]["ca"]["secretName"].as_str().expect("a CA issuer");
    let ca = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .expect("the CA's Certificate");
    assert_eq!(ca["spec"]["isCA"], true);
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"), "cert-manager writes the Secret");
}

#[test]
fn make_certs_writes_a_pair_for_the_service_names_that_verifies_against_its_ca() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    otel_injector::webhook::tls::install_crypto_provider();
    let variant = PlainVariant::new();
    let ca = CertificateDer::from_pem_file(variant.certs().join("ca.crt")).expect("ca.crt");
    let leaf = CertificateDer::from_pem_file(variant.certs().join("tls.crt")).expect("tls.crt");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots)).build().expect("verifier");
    for name in ["otel-injector.otel-injector.svc", "otel-injector.otel-injector.svc.cluster.local"] {
        let server = ServerName::try_from(name).expect("name");
        verifier
            .verify_server_cert(&leaf, &[], &server, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let other = ServerName::try_from("otel-injector.default.svc").expect("name");
    assert!(verifier.verify_server_cert(&leaf, &[], &other, &[], UnixTime::now()).is_err(), "only its own names");
    // The patch carries that CA; the key stays out of the cluster and out of git.
    let bundle = std::fs::read_to_string(variant.certs().join("ca-bundle.yaml")).expect("ca-bundle.yaml");
    use base64::Engine;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(variant.certs().join("ca.crt")).expect("ca"));
    assert_eq!(bundle.matches(&encoded).count(), 2, "both webhook entries");
    let rendered = kustomize(&variant.certs());
    assert!(!rendered.contains("ca.key"));
    let ignored = std::fs::read_to_string(repo().join("certs/.gitignore")).expect("certs/.gitignore");
    for pattern in ["*.key", "*.crt", "ca-bundle.yaml"] {
        assert!(ignored.lines().any(|l| l == pattern), "{pattern} ignored");
    }
}

#[test]
fn the_dockerfile_passes_hadolint_and_builds_a_non_root_binary_only_image() {
    let dockerfile = repo().join("Dockerfile");
    let mut cmd = Command::new(tools_dir().join("bin/hadolint"));
    cmd.args(["--failure-threshold", "info"]).arg(&dockerfile);
    run(cmd);
    let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).expect("image");
        assert!(image.contains(':') && !image.ends_with(":latest"), "pinned: {image}");
    }
    assert!(froms[1].contains("distroless"), "the final stage has no shell or package manager: {}", froms[1]);
    let last_stage = text.split("\nFROM ").last().expect("final stage");
    assert_eq!(last_stage.matches("COPY ").count(), 1, "the binary only");
    assert!(last_stage.contains("USER 65532"), "non-root, the Deployment's runAsUser");
}

#[test]
fn the_grafana_datasource_links_traces_to_logs_metrics_and_the_service_map() {
    let objects = documents(&kustomize(&repo().join("manifests/grafana")));
    let map = find(&objects, "ConfigMap", None);
    assert_eq!(map["metadata"]["labels"]["grafana_datasource"], "1");
    let provisioning = documents(map["data"]["tempo.yaml"].as_str().expect("tempo.yaml"));
    let tempo = &provisioning[0]["datasources"][0];
    assert_eq!(tempo["type"], "tempo");
    assert_eq!(tempo["url"], "http://tempo.observability.svc.cluster.local:3200", "the tempo release's Service");
    let data = &tempo["jsonData"];
    assert_eq!(data["tracesToLogsV2"]["datasourceUid"], "loki");
    assert_eq!(data["tracesToMetrics"]["datasourceUid"], "prometheus");
    assert_eq!(data["serviceMap"]["datasourceUid"], "prometheus");
    assert_eq!(data["nodeGraph"]["enabled"], true);
}

#[test]
fn the_makefile_has_the_install_targets_and_undeploy_unregisters_first() {
    let makefile = std::fs::read_to_string(repo().join("Makefile")).expect("Makefile");
    for target in ["certs:", "deploy:", "undeploy:", "render:"] {
        assert!(makefile.lines().any(|l| l.starts_with(target)), "make {target}");
    }
    // Removal starts with the webhook's registration, so no pod creation waits on a webhook being deleted.
    let undeploy: Vec<&str> = makefile.split("\nundeploy:").nth(1).expect("undeploy").lines().skip(1).collect();
    assert!(undeploy[0].contains("delete mutatingwebhookconfiguration otel-injector"), "{undeploy:?}");
}
