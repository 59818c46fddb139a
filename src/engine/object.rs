//! A read-only view of a raw object's pod template, checked for the shape the engine relies on.
//!
//! The view borrows from the JSON the API server sent; nothing here is re-serialised, so fields unknown to
//! any typed model stay exactly as they were.

use serde_json::{Map, Value};

use crate::engine::workload::{OwnerRef, Owners, WorkloadKind};

/// The object does not have the shape of its kind; the message names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {problem}")]
pub struct ShapeError {
    /// Dotted path to the offending field, e.g. `spec.containers[0].env`.
    pub path: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn shape(path: impl Into<String>, problem: &'static str) -> ShapeError {
    ShapeError { path: path.into(), problem }
}

/// One `env` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar<'a> {
    /// The variable name.
    pub name: &'a str,
    /// Its literal `value`, if it has one.
    pub value: Option<&'a str>,
    /// Whether it is set through `valueFrom`.
    pub value_from: bool,
}

/// One container of the pod spec.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    /// Its index in `containers` or `initContainers`.
    pub index: usize,
    /// Its name.
    pub name: &'a str,
    /// Its image, if set.
    pub image: Option<&'a str>,
    /// Its `env`, or `None` when the field is absent or null.
    pub env: Option<Vec<EnvVar<'a>>>,
    /// The raw `env` entries, as the API server sent them (for rebuilding the list without losing a field).
    pub raw_env: &'a [Value],
    /// Every `containerPort` it declares.
    pub ports: Vec<i64>,
}

impl Container<'_> {
    /// The env entry with this name, if defined (the last one wins, as in the kubelet).
    pub fn env_var(&self, name: &str) -> Option<&EnvVar<'_>> {
        self.env.as_ref()?.iter().rev().find(|e| e.name == name)
    }
}

/// The pod template of an object (the object itself for a Pod), as read from the raw JSON.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    /// The object's kind.
    pub kind: WorkloadKind,
    /// Pointer tokens from the object root to the template.
    pub base: &'static [&'static str],
    /// Whether the template has a `metadata` object.
    pub has_metadata: bool,
    /// The template's labels.
    pub labels: Option<&'a Map<String, Value>>,
    /// The template's annotations.
    pub annotations: Option<&'a Map<String, Value>>,
    /// The object's `metadata.name`.
    pub name: Option<&'a str>,
    /// The object's `metadata.generateName`.
    pub generate_name: Option<&'a str>,
    /// The object's `metadata.namespace`.
    pub namespace: Option<&'a str>,
    /// The workloads that own the pod, as far as the object tells.
    pub owners: Owners,
    /// The object's managing controller (`ownerReferences` entry with `controller: true`), as kind and name.
    pub controller: Option<(&'a str, &'a str)>,
    /// `spec.containers`.
    pub containers: Vec<Container<'a>>,
    /// `spec.initContainers`.
    pub init_containers: Vec<Container<'a>>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.restartPolicy`.
    pub restart_policy: Option<&'a str>,
}

impl<'a> PodView<'a> {
    /// Reads the pod template of `object`, checking every field the engine relies on.
    pub fn read(object: &'a Value, kind: WorkloadKind) -> Result<Self, ShapeError> {
        let root = object.as_object().ok_or_else(|| shape("object", "is not a JSON object"))?;
        let meta = optional_object(root.get("metadata"), "metadata")?;
        let meta_str = |key: &str| -> Result<Option<&'a str>, ShapeError> {
            optional_str(meta.and_then(|m| m.get(key)), &format!("metadata.{key}"))
        };
        let name = meta_str("name")?;
        let generate_name = meta_str("generateName")?;
        let namespace = meta_str("namespace")?;
        let refs = owner_refs(meta)?;

        let base = kind.template_path();
        let prefix = base.join(".");
        let at = |field: &str| if prefix.is_empty() { field.to_owned() } else { format!("{prefix}.{field}") };
        let mut template = object;
        for (depth, token) in base.iter().enumerate() {
            template = template
                .get(token)
                .filter(|v| !v.is_null())
                .ok_or_else(|| shape(base[..=depth].join("."), "is missing: no pod template to instrument"))?;
        }
        let template = template.as_object().ok_or_else(|| shape(at(""), "is not an object"))?;
        let tmeta = optional_object(template.get("metadata"), &at("metadata"))?;
        let labels = string_map(tmeta.and_then(|m| m.get("labels")), &at("metadata.labels"))?;
        let annotations = string_map(tmeta.and_then(|m| m.get("annotations")), &at("metadata.annotations"))?;
        let spec = optional_object(template.get("spec"), &at("spec"))?
            .ok_or_else(|| shape(at("spec"), "is missing: no pod spec to instrument"))?;
        let containers = match spec.get("containers") {
            None | Some(Value::Null) => return Err(shape(at("spec.containers"), "is missing")),
            Some(v) => read_containers(v, &at("spec.containers"))?,
        };
        let init_containers = match spec.get("initContainers") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => read_containers(v, &at("spec.initContainers"))?,
        };
        let restart_policy = optional_str(spec.get("restartPolicy"), &at("spec.restartPolicy"))?;
        let host_network = match spec.get("hostNetwork") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(shape(at("spec.hostNetwork"), "is not a boolean")),
        };

        let controller = refs.iter().find(|r| r.controller).map(|r| (r.kind, r.name));
        let owners = if kind == WorkloadKind::Pod {
            let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str).map(str::to_owned);
            Owners::of_pod(&refs, label)
        } else {
            Owners::of_workload(kind, name.or(generate_name.map(stem)), &refs)
        };

        Ok(Self {
            kind,
            base,
            has_metadata: tmeta.is_some(),
            labels,
            annotations,
            name,
            generate_name,
            namespace,
            owners,
            controller,
            containers,
            init_containers,
            host_network,
            restart_policy,
        })
    }

    /// A template label's value.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels?.get(key)?.as_str()
    }

    /// A template annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations?.get(key)?.as_str()
    }

    /// Every template annotation.
    pub fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + '_ {
        self.annotations.into_iter().flatten().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }
}

/// `generateName` without its trailing dash: the stem the API server appends a suffix to.
pub fn stem(generate_name: &str) -> &str {
    generate_name.trim_end_matches('-')
}

fn optional_object<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a Map<String, Value>>, ShapeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(shape(path, "is not an object")),
    }
}

fn optional_str<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a str>, ShapeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(shape(path, "is not a string")),
    }
}

fn string_map<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a Map<String, Value>>, ShapeError> {
    let map = optional_object(v, path)?;
    if let Some((key, _)) = map.into_iter().flatten().find(|(_, v)| !v.is_string()) {
        return Err(ShapeError { path: format!("{path}.{key}"), problem: "is not a string" });
    }
    Ok(map)
}

fn owner_refs<'a>(meta: Option<&'a Map<String, Value>>) -> Result<Vec<OwnerRef<'a>>, ShapeError> {
    let Some(list) = meta.and_then(|m| m.get("ownerReferences")).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or_else(|| shape("metadata.ownerReferences", "is not a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("metadata.ownerReferences[{i}]");
            let r = r.as_object().ok_or_else(|| shape(path.clone(), "is not an object"))?;
            let field = |key: &str| optional_str(r.get(key), &format!("{path}.{key}")).map(Option::unwrap_or_default);
            Ok(OwnerRef {
                kind: field("kind")?,
                name: field("name")?,
                controller: r.get("controller").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

fn read_containers<'a>(v: &'a Value, path: &str) -> Result<Vec<Container<'a>>, ShapeError> {
    let list = v.as_array().ok_or_else(|| shape(path, "is not a list"))?;
    list.iter().enumerate().map(|(index, c)| container(index, c, &format!("{path}[{index}]"))).collect()
}

fn container<'a>(index: usize, v: &'a Value, path: &str) -> Result<Container<'a>, ShapeError> {
    let raw = v.as_object().ok_or_else(|| shape(path, "is not an object"))?;
    let name = optional_str(raw.get("name"), &format!("{path}.name"))?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| shape(format!("{path}.name"), "is missing"))?;
    let image = optional_str(raw.get("image"), &format!("{path}.image"))?;
    let (env, raw_env) = match raw.get("env") {
        None | Some(Value::Null) => (None, &[][..]),
        Some(Value::Array(list)) => (
            Some(
                list.iter()
                    .enumerate()
                    .map(|(i, e)| env_var(e, &format!("{path}.env[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            list.as_slice(),
        ),
        Some(_) => return Err(shape(format!("{path}.env"), "is not a list")),
    };
    let ports = match raw.get("ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.get("containerPort")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| shape(format!("{path}.ports[{i}].containerPort"), "is not a number"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(shape(format!("{path}.ports"), "is not a list")),
    };
    Ok(Container { index, name, image, env, raw_env, ports })
}

fn env_var<'a>(v: &'a Value, path: &str) -> Result<EnvVar<'a>, ShapeError> {
    let e = v.as_object().ok_or_else(|| shape(path, "is not an object"))?;
    let name = optional_str(e.get("name"), &format!("{path}.name"))?
        .ok_or_else(|| shape(format!("{path}.name"), "is missing"))?;
    let value = optional_str(e.get("value"), &format!("{path}.value"))?;
    let value_from = e.get("valueFrom").is_some_and(|v| !v.is_null());
    Ok(EnvVar { name, value, value_from })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[test]
    fn reads_a_pod() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-7d9-", "namespace": "shop",
                "labels": {"pod-template-hash": "7d9"}, "annotations": {"a": "b"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9", "controller": true}]},
            "spec": {
                "hostNetwork": true,
                "initContainers": [{"name": "init", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "shop:1.2", "ports": [{"containerPort": 8080}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                            {"name": "A", "value": "2"}]}]
            }
        });
        let view = PodView::read(&pod, WorkloadKind::Pod).expect("valid");
        assert_eq!(view.generate_name, Some("web-7d9-"));
        assert_eq!(view.namespace, Some("shop"));
        assert_eq!(view.annotation("a"), Some("b"));
        assert_eq!(view.owners.deployment.as_deref(), Some("web"));
        assert!(view.host_network);
        let app = &view.containers[0];
        assert_eq!((app.name, app.image, app.ports.as_slice()), ("app", Some("shop:1.2"), &[8080][..]));
        assert_eq!(app.env_var("A").and_then(|e| e.value), Some("2"));
        assert!(app.env_var("B").is_some_and(|e| e.value_from));
        assert_eq!(view.init_containers[0].name, "init");
        assert_eq!(view.restart_policy, None);
    }

    #[test]
    fn reads_a_cronjob_template_and_names_the_workload() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": null}]}}}}}});
        let view = PodView::read(&cj, WorkloadKind::CronJob).expect("valid");
        assert_eq!(view.base, ["spec", "jobTemplate", "spec", "template"]);
        assert!(!view.has_metadata);
        assert!(view.containers[0].env.is_none());
        assert_eq!(view.owners.primary(), Some(("CronJob", "nightly")));
    }

    #[rstest]
    #[case(json!([]), "object is not a JSON object")]
    #[case(json!({"spec": {}}), "spec.containers is missing")]
    #[case(json!({"metadata": []}), "metadata is not an object")]
    #[case(json!({"spec": {"containers": {}}}), "spec.containers is not a list")]
    #[case(json!({"spec": {"containers": [{"image": "x"}]}}), "spec.containers[0].name is missing")]
    #[case(json!({"spec": {"containers": [{"name": 3}]}}), "spec.containers[0].name is not a string")]
    #[case(json!({"spec": {"containers": [{"name": "a", "env": {}}]}}), "spec.containers[0].env is not a list")]
    #[case(json!({"spec": {"containers": [{"name": "a", "env": [{"value": "x"}]}]}}), "spec.containers[0].env[0].name is missing")]
    #[case(json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": 1}]}]}}), "spec.containers[0].env[0].value is not a string")]
    #[case(json!({"metadata": {"annotations": {"x": true}}, "spec": {"containers": []}}), "metadata.annotations.x is not a string")]
    #[case(json!({"spec": {"hostNetwork": "yes", "containers": []}}), "spec.hostNetwork is not a boolean")]
    #[case(json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}}), "spec.containers[0].ports[0].containerPort is not a number")]
    fn pod_shape_errors_name_the_path(#[case] pod: Value, #[case] message: &str) {
        let err = PodView::read(&pod, WorkloadKind::Pod).expect_err("bad shape");
        assert_eq!(err.to_string(), message);
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "d"}}), "spec is missing: no pod template to instrument")]
    #[case(json!({"spec": {"template": null}}), "spec.template is missing: no pod template to instrument")]
    #[case(json!({"spec": {"template": {}}}), "spec.template.spec is missing: no pod spec to instrument")]
    #[case(json!({"spec": {"template": {"spec": {"containers": 1}}}}), "spec.template.spec.containers is not a list")]
    fn template_shape_errors_name_the_path(#[case] deployment: Value, #[case] message: &str) {
        let err = PodView::read(&deployment, WorkloadKind::Deployment).expect_err("bad shape");
        assert_eq!(err.to_string(), message);
    }
}
