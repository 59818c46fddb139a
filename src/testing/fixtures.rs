//! Builders for test and benchmark objects: `pod("web").container(container("app").image("x:1"))`.

use serde_json::{Map, Value, json};

/// A container under construction.
#[derive(Debug, Clone)]
pub struct ContainerBuilder(Map<String, Value>);

/// A container named `name`.
pub fn container(name: &str) -> ContainerBuilder {
    let mut map = Map::new();
    map.insert("name".into(), name.into());
    ContainerBuilder(map)
}

impl ContainerBuilder {
    /// Sets `image`.
    pub fn image(mut self, image: &str) -> Self {
        self.0.insert("image".into(), image.into());
        self
    }

    /// Appends an env var with a literal value.
    pub fn env(self, name: &str, value: &str) -> Self {
        self.env_entry(json!({"name": name, "value": value}))
    }

    /// Appends an env var read from a pod field.
    pub fn env_field(self, name: &str, field_path: &str) -> Self {
        self.env_entry(json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}))
    }

    /// Appends an `envFrom` source.
    pub fn env_from(mut self, source: Value) -> Self {
        let list = self.0.entry("envFrom").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(source);
        }
        self
    }

    /// Appends a raw env entry.
    pub fn env_entry(mut self, entry: Value) -> Self {
        push(&mut self.0, "env", entry);
        self
    }

    /// Appends a container port.
    pub fn port(mut self, port: u16) -> Self {
        push(&mut self.0, "ports", json!({"containerPort": port}));
        self
    }

    /// Sets any field.
    pub fn field(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    /// The container JSON.
    pub fn build(self) -> Value {
        Value::Object(self.0)
    }
}

/// A pod (or pod template) under construction.
#[derive(Debug, Clone)]
pub struct PodBuilder(Value);

/// A `v1/Pod` named `name` (no name when empty).
pub fn pod(name: &str) -> PodBuilder {
    let mut p = PodBuilder(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": []}}));
    if !name.is_empty() {
        p.0["metadata"]["name"] = name.into();
    }
    p
}

impl PodBuilder {
    /// Sets a metadata field.
    pub fn meta(mut self, key: &str, value: Value) -> Self {
        self.0["metadata"][key] = value;
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = value.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = value.into();
        self
    }

    /// Adds a controller owner reference.
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        let owner = json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "0000", "controller": true});
        if let Some(meta) = self.0["metadata"].as_object_mut() {
            push(meta, "ownerReferences", owner);
        }
        self
    }

    /// Appends an app container.
    pub fn container(mut self, c: ContainerBuilder) -> Self {
        if let Some(spec) = self.0["spec"].as_object_mut() {
            push(spec, "containers", c.build());
        }
        self
    }

    /// Appends an init container.
    pub fn init_container(mut self, c: ContainerBuilder) -> Self {
        if let Some(spec) = self.0["spec"].as_object_mut() {
            push(spec, "initContainers", c.build());
        }
        self
    }

    /// Sets a pod spec field.
    pub fn spec(mut self, key: &str, value: Value) -> Self {
        self.0["spec"][key] = value;
        self
    }

    /// The Pod JSON.
    pub fn build(self) -> Value {
        self.0
    }

    /// This pod as the template of a workload of `kind` (`apps/v1` or `batch/v1`) named `name`.
    pub fn template_of(self, kind: &str, name: &str) -> Value {
        let mut template = self.0;
        if let Some(t) = template.as_object_mut() {
            t.remove("apiVersion");
            t.remove("kind");
        }
        if let Some(meta) = template["metadata"].as_object_mut() {
            meta.remove("name");
        }
        let api_version = if matches!(kind, "Job" | "CronJob") { "batch/v1" } else { "apps/v1" };
        let spec = match kind {
            "CronJob" => json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}),
            "Job" => json!({"template": template}),
            _ => json!({"selector": {"matchLabels": {"app": name}}, "template": template}),
        };
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec})
    }
}

fn push(map: &mut Map<String, Value>, key: &str, item: Value) {
    match map.get_mut(key).and_then(Value::as_array_mut) {
        Some(list) => list.push(item),
        None => {
            map.insert(key.into(), Value::Array(vec![item]));
        }
    }
}

/// An AdmissionReview v1 wrapping `object` for `operation` in `namespace`.
pub fn review(object: &Value, operation: &str, namespace: &str) -> Value {
    let kind = object["kind"].as_str().unwrap_or("Pod");
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = format!("{}s", kind.to_ascii_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": if operation == "UPDATE" { object.clone() } else { Value::Null },
            "dryRun": false
        }
    })
}

/// A ReplicaSet-created pod as the API server sends it: managedFields, last-applied annotation, three containers
/// with env, probes, resources and mounts, an init container, projected volumes. About 10 KB of JSON.
pub fn production_pod() -> Value {
    let app = |name: &str, port: u16| {
        let mut c = container(name).image(&format!("registry.example.com/shop/{name}:2.14.3")).port(port);
        for i in 0..16 {
            c = c.env(&format!("{}_SETTING_{i}", name.to_uppercase()), &format!("value-{i}-$(POD_NAME)"));
        }
        c.env_field("POD_NAME", "metadata.name")
            .field("resources", json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}))
            .field("readinessProbe", json!({"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5}))
            .field("livenessProbe", json!({"httpGet": {"path": "/live", "port": port}, "failureThreshold": 6}))
            .field("volumeMounts", json!([{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]))
            .field("terminationMessagePath", json!("/dev/termination-log"))
            .field("imagePullPolicy", json!("IfNotPresent"))
            .field("securityContext", json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}))
    };
    let managed: Vec<Value> = (0..6)
        .map(|i| {
            json!({"manager": format!("controller-{i}"), "operation": "Update", "apiVersion": "v1",
                   "time": "2026-11-01T10:00:00Z", "fieldsType": "FieldsV1",
                   "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}},
                                "f:spec": {"f:containers": {"k:{\"name\":\"checkout\"}": {".": {}, "f:env": {}, "f:image": {}}}}}})
        })
        .collect();
    let builder: PodBuilder = pod("")
        .meta("generateName", "checkout-7d9f8c6b5-".into())
        .meta("namespace", "shop".into())
        .meta("managedFields", managed.into())
        .label("app", "checkout")
        .label("pod-template-hash", "7d9f8c6b5")
        .label("app.kubernetes.io/version", "2.14.3")
        .annotation("kubectl.kubernetes.io/last-applied-configuration", &"x".repeat(2400))
        .owner("ReplicaSet", "checkout-7d9f8c6b5")
        .init_container(container("migrate").image("registry.example.com/shop/migrate:2.14.3"))
        .container(app("checkout", 8080))
        .container(app("worker", 8081))
        .container(app("cache", 6379))
        .spec("volumes", json!([{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]))
        .spec("tolerations", json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
    builder.build()
}

/// An AdmissionReview around `request` as text, its members in the order the API server writes them (`kind` and
/// `operation` before `object`; `serde_json` would sort them).
pub fn review_text(api_version: &str, request: &Value) -> String {
    const ORDER: [&str; 15] = [
        "uid",
        "kind",
        "resource",
        "subResource",
        "requestKind",
        "requestResource",
        "requestSubResource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    ];
    let fields = request.as_object().into_iter().flatten();
    let known = ORDER.iter().filter_map(|k| request.get(*k).map(|v| (*k, v)));
    let others = fields.filter(|(k, _)| !ORDER.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v));
    let members: Vec<String> = known.chain(others).map(|(k, v)| format!("{}:{v}", Value::from(k))).collect();
    format!(
        r#"{{"apiVersion":{},"kind":"AdmissionReview","request":{{{}}}}}"#,
        Value::from(api_version),
        members.join(",")
    )
}
