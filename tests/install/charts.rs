//! `helmfile.yaml` and `helm-values/`: rendered by a real helm and helmfile from the pinned chart copies in
//! `../shared/charts`, validated strictly; the collector's values against the chart's JSON Schema; Tempo's keys
//! against the chart's values; the collector's pipeline against its components.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{documents, find, repo, run, shared, tools_dir, validate_strictly};

/// The releases of `helmfile.yaml` that come from a chart, with their chart directory in `../shared/charts`.
const CHARTS: [(&str, &str, &str); 2] = [
    ("tempo", "tempo", "helm-values/tempo.yaml"),
    ("otel-gateway", "opentelemetry-collector", "helm-values/opentelemetry-collector.yaml"),
];

/// `helm template` (helm 4) of `release` from the local chart with `values`.
fn helm_template(release: &str, chart: &str, values: &str) -> String {
    let mut cmd = Command::new(tools_dir().join("bin/helm"));
    cmd.args(["template", release])
        .arg(shared().join("charts").join(chart))
        .args(["--namespace", "observability", "--values"])
        .arg(repo().join(values));
    run(cmd)
}

/// The repository's install files linked into a scratch directory with a `certs/` that `make certs` filled, so
/// that the webhook release's prepare hook can render it and writes its `out/` there.
struct Workspace {
    dir: tempfile::TempDir,
    _certs: super::render::PlainVariant,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for item in ["helmfile.yaml", "helm-values", "manifests"] {
            std::os::unix::fs::symlink(repo().join(item), dir.path().join(item)).expect("link");
        }
        let certs = super::render::PlainVariant::new();
        std::os::unix::fs::symlink(certs.certs(), dir.path().join("certs")).expect("link certs");
        Self { dir, _certs: certs }
    }

    /// `helmfile --state-values-set <state> <args>` here, with helm 3 first on PATH as helmfile needs.
    fn helmfile(&self, state: &[&str], args: &[&str]) -> String {
        let tools = tools_dir();
        let mut cmd = Command::new(tools.join("helmfile-bin/helmfile"));
        let path = format!("{}:{}", tools.join("helmfile-bin").display(), std::env::var("PATH").unwrap_or_default());
        cmd.current_dir(self.dir.path()).env("PATH", path);
        if !state.is_empty() {
            cmd.args(["--state-values-set", &state.join(",")]);
        }
        cmd.args(args);
        run(cmd)
    }
}

/// `helmfile template` of the repository's `helmfile.yaml`, charts from the local copies, with `state` values.
fn helmfile_template(state: &[&str]) -> String {
    let charts = format!("chartsDir={}", shared().join("charts").display());
    let mut all = vec![charts.as_str()];
    all.extend_from_slice(state);
    Workspace::new().helmfile(&all, &["template", "--skip-deps"])
}

/// The collector's rendered config (the `relay` key of its ConfigMap).
fn collector_config(objects: &[Value]) -> Value {
    let map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["data"].get("relay").is_some())
        .expect("the collector's ConfigMap");
    documents(map["data"]["relay"].as_str().expect("relay")).remove(0)
}

#[test]
fn every_chart_renders_with_our_values_and_validates_strictly() {
    for (release, chart, values) in CHARTS {
        let yaml = helm_template(release, chart, values);
        for version in ["1.30.0", "1.37.0"] {
            let custom = validate_strictly(release, &yaml, version);
            assert!(custom.is_empty(), "{release}: {custom:?}");
        }
    }
}

#[test]
fn helmfile_template_renders_every_release_including_the_webhook() {
    let yaml = helmfile_template(&[]);
    for version in ["1.30.0", "1.37.0"] {
        assert!(validate_strictly("helmfile", &yaml, version).is_empty());
    }
    let objects = documents(&yaml);
    find(&objects, "StatefulSet", Some("tempo"));
    find(&objects, "Deployment", Some("otel-gateway"));
    find(&objects, "Deployment", Some("otel-injector"));
    find(&objects, "MutatingWebhookConfiguration", Some("otel-injector"));
    assert!(!objects.iter().any(|o| o["metadata"]["namespace"] == "cert-manager"), "cert-manager is optional, off");
    // Tempo keeps 7 days and generates the service graph and span metrics Grafana reads.
    let tempo = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["data"].get("tempo.yaml").is_some())
        .expect("tempo's config");
    let tempo = &documents(tempo["data"]["tempo.yaml"].as_str().expect("text"))[0];
    assert_eq!(tempo["compactor"]["compaction"]["block_retention"], "168h");
    assert_eq!(tempo["multitenancy_enabled"], false);
    let processors = &tempo["overrides"]["defaults"]["metrics_generator"]["processors"];
    assert_eq!(processors, &serde_json::json!(["service-graphs", "span-metrics"]));
    let statefulset = find(&objects, "StatefulSet", Some("tempo"));
    assert!(statefulset["spec"]["volumeClaimTemplates"].as_array().is_some_and(|v| !v.is_empty()), "persistence");
    // The gateway sends to Tempo's OTLP gRPC port, without a tenant header.
    let gateway = collector_config(&objects);
    let exporter = &gateway["exporters"]["otlp/tempo"];
    assert_eq!(exporter["endpoint"], "tempo.observability.svc.cluster.local:4317");
    assert!(exporter.get("headers").is_none());
}

#[test]
fn a_tenant_turns_on_multi_tenancy_and_the_gateway_sends_its_header() {
    let yaml = helmfile_template(&["tenant=prod"]);
    let objects = documents(&yaml);
    let tempo = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["data"].get("tempo.yaml").is_some())
        .expect("tempo's config");
    let tempo = &documents(tempo["data"]["tempo.yaml"].as_str().expect("text"))[0];
    assert_eq!(tempo["multitenancy_enabled"], true);
    let gateway = collector_config(&objects);
    assert_eq!(gateway["exporters"]["otlp/tempo"]["headers"]["X-Scope-OrgID"], "prod");
}

#[test]
fn the_collector_values_validate_against_the_charts_json_schema() {
    let schema = shared().join("schemas/otel-collector.values.schema.json");
    let check = |values: &Path| -> Vec<String> {
        let mut cmd = Command::new(super::common::python());
        cmd.arg(repo().join("tests/install/check.py")).arg("schema").arg(&schema).arg(values);
        serde_json::from_str(&run(cmd)).expect("check.py output")
    };
    let ours = repo().join("helm-values/opentelemetry-collector.yaml");
    assert_eq!(check(&ours), Vec::<String>::new());
    // The check can fail: a misspelt key, or a mode the chart does not know.
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("typo.yaml");
    let text = std::fs::read_to_string(&ours).expect("values");
    std::fs::write(&typo, text.replace("mode: deployment", "mode: sidecar\nreplicaCounts: 2")).expect("write");
    assert_eq!(check(&typo).len(), 2, "{:?}", check(&typo));
}

/// Every path of mapping keys in `value` (`a.b.c`), stopping at keys whose value the chart leaves open (`{}`).
fn key_paths(value: &serde_yaml_ng::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let serde_yaml_ng::Value::Mapping(map) = value {
        for (k, v) in map {
            let key = format!("{prefix}{}", k.as_str().expect("string keys"));
            out.insert(key.clone());
            key_paths(v, &format!("{key}."), out);
        }
    }
}

#[test]
fn every_key_of_the_tempo_values_exists_in_the_charts_values() {
    let read = |path: &Path| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("read")).expect("YAML")
    };
    let chart = read(&shared().join("schemas/tempo.values.yaml"));
    let ours = read(&repo().join("helm-values/tempo.yaml"));
    let (mut known, mut used) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&chart, "", &mut known);
    key_paths(&ours, "", &mut used);
    // Below a key whose chart default is an empty map (free-form config), any key is the user's to choose.
    let open: Vec<String> = known
        .iter()
        .filter(|k| {
            let mut v = &chart;
            for part in k.split('.') {
                v = &v[part];
            }
            matches!(v, serde_yaml_ng::Value::Mapping(m) if m.is_empty())
        })
        .cloned()
        .collect();
    let unknown: Vec<_> =
        used.iter().filter(|k| !known.contains(*k) && !open.iter().any(|o| k.starts_with(&format!("{o}.")))).collect();
    assert!(unknown.is_empty(), "keys the tempo chart does not have: {unknown:?}");
    assert!(used.contains("tempo.retention") && used.contains("persistence.enabled"));
}

#[test]
fn the_collector_pipeline_references_only_defined_components_in_a_safe_order() {
    let yaml = helm_template("otel-gateway", "opentelemetry-collector", "helm-values/opentelemetry-collector.yaml");
    let config = collector_config(&documents(&yaml));
    let defined = |kind: &str| -> BTreeSet<String> {
        config[kind].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let pipelines = config["service"]["pipelines"].as_object().expect("pipelines");
    assert_eq!(pipelines.keys().collect::<Vec<_>>(), ["traces"], "a tracing gateway: no metrics or logs pipeline");
    for (name, pipeline) in pipelines {
        for kind in ["receivers", "processors", "exporters"] {
            let listed: Vec<String> = pipeline[kind]
                .as_array()
                .unwrap_or_else(|| panic!("{name}.{kind}"))
                .iter()
                .map(|c| c.as_str().expect("name").to_owned())
                .collect();
            let missing: Vec<_> = listed.iter().filter(|c| !defined(kind).contains(*c)).collect();
            assert!(missing.is_empty(), "pipeline {name} uses undefined {kind}: {missing:?}");
            used.entry(kind).or_default().extend(listed);
        }
        let processors: Vec<&str> =
            pipeline["processors"].as_array().expect("processors").iter().filter_map(Value::as_str).collect();
        assert_eq!(processors.first(), Some(&"memory_limiter"), "memory_limiter first");
        assert_eq!(processors.last(), Some(&"batch"), "batch last");
        for needed in ["k8s_attributes", "resourcedetection", "attributes/scrub", "probabilistic_sampler"] {
            assert!(processors.contains(&needed), "{needed} in {name}");
        }
    }
    for kind in ["receivers", "processors", "exporters"] {
        assert_eq!(defined(kind), used[kind], "every defined {kind} is used (nothing left from the chart's defaults)");
    }
    // The scrub step deletes credentials captured as attributes.
    let scrub = serde_json::to_string(&config["processors"]["attributes/scrub"]).expect("json");
    assert!(scrub.contains("authorization") && scrub.contains("cookie"));
    // k8s_attributes gets the narrowest role that works: read pods, namespaces, ReplicaSets; nothing else.
    let objects = documents(&yaml);
    let role = find(&objects, "ClusterRole", None);
    let rules = serde_json::to_value(&role["rules"]).expect("rules");
    assert_eq!(
        rules,
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
        ])
    );
}

#[test]
fn helmfile_pins_every_chart_to_the_tested_version_and_its_values_exist() {
    let text = std::fs::read_to_string(repo().join("helmfile.yaml")).expect("helmfile.yaml");
    // The state file is a template: read its releases as helmfile renders them (`helmfile build`).
    let built = Workspace::new().helmfile(&["certManager=true"], &["build"]);
    let state = &documents(&built)[0];
    let releases = state["releases"].as_array().expect("releases");
    let names: BTreeSet<_> = releases.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["cert-manager", "otel-gateway", "otel-injector", "tempo"].into());
    for release in releases {
        let name = release["name"].as_str().expect("name");
        let chart = release["chart"].as_str().expect("chart");
        if name == "otel-injector" {
            assert_eq!(chart, "./out/otel-injector", "the webhook comes from manifests/ through kustomize");
            continue;
        }
        let version = release["version"].as_str().unwrap_or_else(|| panic!("{name}: no pinned version"));
        assert!(!version.is_empty() && !version.contains(['*', '^', '~', '>']), "{name}: pinned: {version}");
        for values in release["values"].as_array().expect("values") {
            if let Some(path) = values.as_str() {
                assert!(repo().join(path).exists(), "{name}: {path} exists");
            }
        }
        if let Some((_, dir, _)) = CHARTS.iter().find(|(release, _, _)| *release == name) {
            let chart_yaml =
                std::fs::read_to_string(shared().join("charts").join(dir).join("Chart.yaml")).expect("Chart.yaml");
            assert!(
                chart_yaml.lines().any(|l| l == format!("version: {version}")),
                "{name} pinned to the tested {dir}"
            );
            assert!(chart.ends_with(&format!("/{dir}")), "{name}: {chart}");
        }
    }
    let repositories: BTreeSet<_> =
        state["repositories"].as_array().expect("repositories").iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(repositories.contains("grafana-community"), "the Tempo chart's new home");
    assert!(text.contains("grafana-community/tempo") && !text.contains("grafana/tempo"));
}
