//! The `env` command: what each container's process will see, resolved as the kubelet does
//! ([`crate::engine::kubelet_env`]), from manifests (ConfigMaps in the same files are used) or a pod in the cluster
//! (with the ConfigMaps it draws from). Secret values are never read: they are shown redacted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use serde_json::{Value, json};

use super::EnvArgs;
use super::preview::{self, Input};
use crate::cluster::snapshot;
use crate::engine::kubelet_env::{self, EnvValue};
use crate::engine::workload::WorkloadKind;

/// ConfigMaps' data by name.
type ConfigMaps = BTreeMap<String, BTreeMap<String, String>>;

/// The `env` command.
pub fn run(args: &EnvArgs) -> anyhow::Result<()> {
    let (pods, config_maps) = match &args.from_cluster {
        Some(target) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(from_cluster(args, target))?
        }
        None => from_files(&preview::read_inputs(&args.files)?)?,
    };
    if pods.is_empty() {
        anyhow::bail!("no Pod or workload with a pod template in the input");
    }
    print!("{}", render(&pods, &config_maps, args.container.as_deref())?);
    Ok(())
}

/// Every pod (a Pod, or a pod of a workload's template) and ConfigMap of the inputs, labelled.
fn from_files(inputs: &[Input]) -> anyhow::Result<(Vec<(String, Value)>, ConfigMaps)> {
    let mut pods = Vec::new();
    let mut config_maps = ConfigMaps::new();
    for input in inputs {
        for object in preview::objects(input)? {
            if let Some((name, data)) = preview::config_map_of(&object) {
                config_maps.insert(name, data);
            } else if let Some(pod) = pod_of(&object) {
                let kind = object["kind"].as_str().unwrap_or_default();
                let name = object["metadata"]["name"].as_str().unwrap_or("<unnamed>");
                pods.push((format!("{kind} {name}"), pod));
            }
        }
    }
    Ok((pods, config_maps))
}

/// The object as a pod: a Pod itself, or a pod of a workload's template (what its controller would create, but for
/// the names and labels only the controller gives).
fn pod_of(object: &Value) -> Option<Value> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = WorkloadKind::from_group_kind(group, object["kind"].as_str()?)?;
    if kind == WorkloadKind::Pod {
        return Some(object.clone());
    }
    let mut template = object.clone();
    for token in kind.template_path() {
        template = template.get(*token)?.clone();
    }
    let mut metadata = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
    metadata["namespace"] = object["metadata"]["namespace"].clone();
    Some(json!({"metadata": metadata, "spec": template.get("spec")?}))
}

/// The pod `pod/NAME` (or `NAME`) from the cluster, and the ConfigMaps its containers draw from.
async fn from_cluster(args: &EnvArgs, target: &str) -> anyhow::Result<(Vec<(String, Value)>, ConfigMaps)> {
    let name = target.strip_prefix("pod/").or_else(|| target.strip_prefix("pods/")).unwrap_or(target);
    let client = snapshot::connect(&args.cluster.source()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let pod = pods.get(name).await.with_context(|| format!("reading pod {}/{name}", args.namespace))?;
    let pod = serde_json::to_value(&pod)?;
    let maps: Api<ConfigMap> = Api::namespaced(client, &args.namespace);
    let mut config_maps = ConfigMaps::new();
    for wanted in referenced_config_maps(&pod) {
        if let Some(map) = maps.get_opt(&wanted).await.with_context(|| format!("reading ConfigMap {wanted}"))? {
            config_maps.insert(wanted, map.data.unwrap_or_default().into_iter().collect());
        }
    }
    Ok((vec![(format!("Pod {}/{name}", args.namespace), pod)], config_maps))
}

/// The ConfigMaps any container of `pod` draws variables from.
fn referenced_config_maps(pod: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let containers = ["containers", "initContainers"].into_iter().flat_map(|l| pod["spec"][l].as_array()).flatten();
    for c in containers {
        let from = c["envFrom"].as_array().into_iter().flatten().filter_map(|s| s.pointer("/configMapRef/name"));
        let keys =
            c["env"].as_array().into_iter().flatten().filter_map(|e| e.pointer("/valueFrom/configMapKeyRef/name"));
        for name in from.chain(keys).filter_map(Value::as_str) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Every container's environment (or only `container`'s), as `NAME=value` lines under a header per container.
fn render(pods: &[(String, Value)], config_maps: &ConfigMaps, container: Option<&str>) -> anyhow::Result<String> {
    let lookup = |name: &str| config_maps.get(name).cloned();
    let mut out = String::new();
    let mut found = false;
    for (label, pod) in pods {
        let names = ["initContainers", "containers"]
            .into_iter()
            .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
            .filter_map(|c| c["name"].as_str())
            .filter(|n| container.is_none_or(|want| want == *n));
        for name in names {
            found = true;
            let env = kubelet_env::resolve(pod, name, &lookup).map_err(anyhow::Error::msg)?;
            writeln!(out, "# {label}, container {name}")?;
            for (var, value) in &env.vars {
                let shown = match value {
                    EnvValue::Text(text) => text.replace('\n', "\\n"),
                    other => other.to_string(),
                };
                writeln!(out, "{var}={shown}")?;
            }
            for note in &env.notes {
                writeln!(out, "# note: {note}")?;
            }
        }
    }
    if let (false, Some(want)) = (found, container) {
        anyhow::bail!("no container {want:?} in the input");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: otel}
data: {OTEL_EXPORTER_OTLP_ENDPOINT: "http://mine:4318"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        envFrom: [{configMapRef: {name: otel}}]
        env:
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: gw, key: token}}}
        - {name: OTEL_RESOURCE_ATTRIBUTES, value: "k8s.namespace.name=$(NS),app=$(APP)"}
      - name: other
"#;

    #[test]
    fn a_workloads_template_is_resolved_with_the_config_maps_of_the_same_files() {
        let input = Input { name: "in.yaml".into(), text: MANIFESTS.into() };
        let (pods, maps) = from_files(&[input]).expect("reads");
        assert_eq!(pods.len(), 1);
        let text = render(&pods, &maps, Some("app")).expect("renders");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# Deployment web, container app");
        assert!(lines.contains(&"OTEL_EXPORTER_OTLP_ENDPOINT=http://mine:4318"), "{text}");
        assert!(lines.contains(&"NS=shop"), "{text}");
        assert!(lines.contains(&"POD="), "a template's pod has no name yet: {text}");
        assert!(lines.contains(&"TOKEN=<redacted: Secret gw, key token>"), "{text}");
        assert!(lines.contains(&"OTEL_RESOURCE_ATTRIBUTES=k8s.namespace.name=shop,app=$(APP)"), "{text}");
        assert!(!text.contains("container other"));
        assert!(render(&pods, &maps, Some("nope")).is_err());
    }

    #[test]
    fn the_config_maps_a_pod_draws_from_are_listed_once() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "envFrom": [{"configMapRef": {"name": "x"}}, {"secretRef": {"name": "s"}}]},
            {"name": "b", "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "y", "key": "k"}}}],
             "envFrom": [{"configMapRef": {"name": "x"}}]}
        ]}});
        assert_eq!(referenced_config_maps(&pod), ["x", "y"]);
    }
}
