//! A container's environment as the kubelet makes it, for `otel-injector env` and for the tests that hand it to real
//! SDKs: `envFrom` first (each source in order, keys with their `prefix`), then `env` in order; a literal `value`
//! is expanded with `$(VAR)` against what is defined before it (the `envFrom` keys and earlier entries; `$$` is a
//! literal `$`; a reference to nothing stays as written); `fieldRef` and `resourceFieldRef` are read from the pod as
//! the kubelet reads them. What only a running pod or a Secret knows is said, never guessed: Secret values are
//! redacted (they are never read), a pod's IPs are unknown before it runs. Service links (`FOO_SERVICE_HOST`) are
//! not added: they depend on the Services of the namespace.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::engine::syntax;

/// One variable's value as the process will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// The text itself.
    Text(String),
    /// From a Secret, which is never read.
    Secret {
        /// The Secret.
        name: String,
        /// Its key (`None`: every key of the Secret, through `envFrom`).
        key: Option<String>,
    },
    /// Known only to the kubelet of a running pod (a pod IP, a node's allocatable), or not resolvable; says why.
    Unknown(String),
}

impl fmt::Display for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Secret { name, key: Some(key) } => write!(f, "<redacted: Secret {name}, key {key}>"),
            Self::Secret { name, key: None } => write!(f, "<redacted: Secret {name}>"),
            Self::Unknown(why) => write!(f, "<unknown: {why}>"),
        }
    }
}

/// A container's resolved environment: each variable once, in the order first defined, with its final value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// The variables.
    pub vars: Vec<(String, EnvValue)>,
    /// What could not be resolved as a whole (a Secret's keys, a ConfigMap not given), for the reader.
    pub notes: Vec<String>,
}

impl Environment {
    /// The value of `name`, if defined.
    pub fn get(&self, name: &str) -> Option<&EnvValue> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The variables with a known text, for handing to a process.
    pub fn texts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().filter_map(|(n, v)| match v {
            EnvValue::Text(text) => Some((n.as_str(), text.as_str())),
            _ => None,
        })
    }

    fn set(&mut self, name: String, value: EnvValue) {
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.vars.push((name, value)),
        }
    }
}

/// Expands `$(VAR)` in `input` as the kubelet does (Kubernetes' fork of Go's expansion): `$$` is `$`, a reference
/// `lookup` does not know stays as written, and a `$` that starts nothing is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(next) = after.chars().next() else {
            // A trailing `$` is kept.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after[1..].find(')') {
                Some(end) => {
                    let name = &after[1..1 + end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[2 + end..];
                }
                None => {
                    // An unclosed reference: `$(` is kept and the scan goes on after it.
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            other => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The environment of the container named `container` of `pod` (a Pod object as JSON), with `config_map(name)`
/// giving a ConfigMap's data when it is known (`None`: not found, or not looked up).
pub fn resolve(
    pod: &Value,
    container: &str,
    config_map: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Result<Environment, String> {
    let spec = &pod["spec"];
    let c = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten())
        .find(|c| c["name"] == container)
        .ok_or_else(|| format!("no container {container:?} in the pod"))?;
    let mut env = Environment::default();
    for source in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or_default();
        if let Some(name) = source.pointer("/configMapRef/name").and_then(Value::as_str) {
            let optional = source.pointer("/configMapRef/optional").and_then(Value::as_bool).unwrap_or(false);
            match config_map(name) {
                Some(data) => {
                    for (key, value) in data {
                        let var = format!("{prefix}{key}");
                        if valid_name(&var) {
                            env.set(var, EnvValue::Text(value));
                        } else {
                            env.notes.push(format!("ConfigMap {name}: key {key:?} skipped, not a valid variable name"));
                        }
                    }
                }
                None if optional => env.notes.push(format!("ConfigMap {name} (optional): not known here")),
                None => env.notes.push(format!(
                    "ConfigMap {name}: not known here (if it does not exist, the container does not start)"
                )),
            }
        }
        if let Some(name) = source.pointer("/secretRef/name").and_then(Value::as_str) {
            env.notes
                .push(format!("Secret {name}: its keys (prefix {prefix:?}) are not known: Secrets are never read"));
        }
    }
    for entry in c["env"].as_array().into_iter().flatten() {
        let Some(name) = entry["name"].as_str() else { continue };
        let value = match (entry["value"].as_str(), entry.get("valueFrom")) {
            (Some(text), _) if !text.is_empty() => EnvValue::Text(expand(text, |var| {
                env.get(var).map(|v| match v {
                    EnvValue::Text(t) => t.clone(),
                    other => other.to_string(),
                })
            })),
            (_, Some(from)) if !from.is_null() => value_from(pod, c, from, config_map),
            _ => EnvValue::Text(String::new()),
        };
        env.set(name.to_owned(), value);
    }
    Ok(env)
}

/// A variable name the kubelet accepts from `envFrom`: not empty, printable, no `=`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && name.chars().all(|c| !c.is_control())
}

fn value_from(
    pod: &Value,
    container: &Value,
    from: &Value,
    config_map: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> EnvValue {
    if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
        return field(pod, path);
    }
    if let Some(reference) = from.get("resourceFieldRef") {
        return resource(container, reference);
    }
    if let Some(reference) = from.get("configMapKeyRef") {
        let (name, key) =
            (reference["name"].as_str().unwrap_or_default(), reference["key"].as_str().unwrap_or_default());
        return match config_map(name).and_then(|data| data.get(key).cloned()) {
            Some(value) => EnvValue::Text(value),
            None => EnvValue::Unknown(format!("ConfigMap {name}, key {key}, not known here")),
        };
    }
    if let Some(reference) = from.get("secretKeyRef") {
        let name = reference["name"].as_str().unwrap_or_default().to_owned();
        return EnvValue::Secret { name, key: reference["key"].as_str().map(str::to_owned) };
    }
    EnvValue::Unknown("an unsupported valueFrom".to_owned())
}

/// A `fieldRef`, as the kubelet reads it from the pod.
fn field(pod: &Value, path: &str) -> EnvValue {
    let meta = &pod["metadata"];
    let text = |v: &Value| EnvValue::Text(v.as_str().unwrap_or_default().to_owned());
    if let Some((map, key)) = subscript(path) {
        return EnvValue::Text(meta[map][key].as_str().unwrap_or_default().to_owned());
    }
    match path {
        "metadata.name" => text(&meta["name"]),
        "metadata.namespace" => text(&meta["namespace"]),
        "metadata.uid" => text(&meta["uid"]),
        "metadata.labels" | "metadata.annotations" => {
            let map = path.trim_start_matches("metadata.");
            let mut lines: Vec<String> = meta[map]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or_default()))
                .collect();
            lines.sort();
            EnvValue::Text(lines.join("\n"))
        }
        "spec.nodeName" => match pod["spec"]["nodeName"].as_str() {
            Some(node) => EnvValue::Text(node.to_owned()),
            None => EnvValue::Unknown("spec.nodeName: the pod is not scheduled yet".to_owned()),
        },
        "spec.serviceAccountName" => text(&pod["spec"]["serviceAccountName"]),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            match pod["status"][path.trim_start_matches("status.")].as_str() {
                Some(ip) => EnvValue::Text(ip.to_owned()),
                None => EnvValue::Unknown(format!("{path}: known once the pod runs")),
            }
        }
        other => EnvValue::Unknown(format!("fieldPath {other} is not one the kubelet supports")),
    }
}

/// `metadata.labels['key']` → `("labels", "key")`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("metadata.")?;
    let (map, key) = rest.split_once("['")?;
    let key = key.strip_suffix("']")?;
    matches!(map, "labels" | "annotations").then_some((map, key))
}

/// A `resourceFieldRef`: the container's request or limit divided by the divisor, rounded up, as the kubelet does
/// (a limit not set is the node's allocatable, which only the kubelet knows).
fn resource(container: &Value, reference: &Value) -> EnvValue {
    let name = reference["resource"].as_str().unwrap_or_default();
    let Some((kind, resource)) = name.split_once('.') else {
        return EnvValue::Unknown(format!("resource {name:?} is not requests.* or limits.*"));
    };
    let quantity = match container["resources"][kind][resource].as_str() {
        Some(q) => q.to_owned(),
        None => match container["resources"][kind][resource].as_f64() {
            Some(n) => n.to_string(),
            None if kind == "limits" => {
                return EnvValue::Unknown(format!("{name} is not set: the node's allocatable, known to its kubelet"));
            }
            // A request not set is the limit, if set; else 0 (cpu: the kubelet's minimum, 1 after rounding up).
            None => match container["resources"]["limits"][resource].as_str() {
                Some(limit) => limit.to_owned(),
                None => "0".to_owned(),
            },
        },
    };
    let divisor = match &reference["divisor"] {
        Value::String(d) => d.clone(),
        Value::Number(n) => n.to_string(),
        _ => "1".to_owned(),
    };
    match (syntax::quantity(&quantity), syntax::quantity(&divisor)) {
        (Some(q), Some(d)) if d > 0.0 => {
            let value = (q / d).ceil().max(if resource == "cpu" { 1.0 } else { 0.0 });
            EnvValue::Text(format!("{value}"))
        }
        _ => EnvValue::Unknown(format!("{name}: unreadable quantity {quantity:?} or divisor {divisor:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    /// Kubernetes' own expansion cases (`third_party/forked/golang/expansion/expand_test.go`), with its context.
    #[rstest]
    #[case("$(VAR_A)", "A")]
    #[case("$(VAR_A)-$(VAR_A)", "A-A")]
    #[case("$(VAR_A)-1", "A-1")]
    #[case("___$(VAR_B)___", "___B___")]
    #[case("___$(VAR_C)", "___C")]
    #[case("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C")]
    #[case("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A")]
    #[case("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)")]
    #[case("f000-$$VAR_A", "f000-$VAR_A")]
    #[case("foo\\$(VAR_C)bar", "foo\\Cbar")]
    #[case("foo\\\\$(VAR_C)bar", "foo\\\\Cbar")]
    #[case("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar")]
    #[case("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))")]
    #[case("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)")]
    #[case("$(VAR_REF)", "$(VAR_A)")]
    #[case("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%")]
    #[case("foo$(VAR_EMPTY)bar", "foobar")]
    #[case("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!")]
    #[case("f00__(VAR_A)__", "f00__(VAR_A)__")]
    #[case("$?_boo_$!", "$?_boo_$!")]
    #[case("$VAR_A", "$VAR_A")]
    #[case("$(VAR_DNE)", "$(VAR_DNE)")]
    #[case("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)")]
    #[case("$$$$$$(VAR_A)", "$$$(VAR_A)")]
    #[case("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)")]
    #[case("$$$$$$$(VAR_A)", "$$$A")]
    #[case("$VAR_A)", "$VAR_A)")]
    #[case("${VAR_A}", "${VAR_A}")]
    #[case("$(VAR_B)_______$(A", "B_______$(A")]
    #[case("$(VAR_C)_______$(", "C_______$(")]
    #[case("$(VAR_A)foobarzab$", "Afoobarzab$")]
    #[case("foo-\\$(VAR_A", "foo-\\$(VAR_A")]
    #[case("--$($($($($--", "--$($($($($--")]
    #[case("$($($($($--foo$(", "$($($($($--foo$(")]
    #[case("foo0--$($($($(", "foo0--$($($($(")]
    #[case("$(foo$$var)", "$(foo$$var)")]
    #[case("\n", "\n")]
    #[case("$£FOO", "$£FOO")]
    #[case("prefix-$€-suffix", "prefix-$€-suffix")]
    #[case("$中文", "$中文")]
    fn expansion_matches_kubernetes_own_cases(#[case] input: &str, #[case] want: &str) {
        let context: BTreeMap<&str, &str> =
            [("VAR_A", "A"), ("VAR_B", "B"), ("VAR_C", "C"), ("VAR_REF", "$(VAR_A)"), ("VAR_EMPTY", "")].into();
        assert_eq!(expand(input, |name| context.get(name).map(|v| (*v).to_owned())), want);
    }

    fn pod(env: Value, env_from: Value) -> Value {
        json!({
            "metadata": {"name": "web-7d9f-abcde", "namespace": "shop", "uid": "u-1",
                "labels": {"pod-template-hash": "7d9f", "app": "web"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "env": env, "envFrom": env_from,
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]}
        })
    }

    fn config_maps(name: &str) -> Option<BTreeMap<String, String>> {
        (name == "otel").then(|| {
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://mine:4318"), ("SERVICE", "checkout"), ("bad=key", "x")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into()
        })
    }

    fn text(env: &Environment, name: &str) -> String {
        env.get(name).map(ToString::to_string).unwrap_or_else(|| panic!("{name} defined: {env:?}"))
    }

    #[test]
    fn env_from_comes_first_then_env_in_order_each_seeing_only_what_is_before_it() {
        let p = pod(
            json!([
                {"name": "A", "value": "$(SERVICE)-$(B)"},
                {"name": "B", "value": "b"},
                {"name": "C", "value": "$(B)-$(CFG_SERVICE)"},
                {"name": "CFG_SERVICE", "value": "mine"},
                {"name": "D", "value": "$$(B)"},
            ]),
            json!([{"configMapRef": {"name": "otel"}}, {"prefix": "CFG_", "configMapRef": {"name": "otel"}}]),
        );
        let env = resolve(&p, "app", &config_maps).expect("resolves");
        assert_eq!(text(&env, "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://mine:4318");
        assert_eq!(text(&env, "A"), "checkout-$(B)", "B is defined after A");
        assert_eq!(text(&env, "C"), "b-checkout", "the prefixed envFrom key, before env overrides it");
        assert_eq!(text(&env, "CFG_SERVICE"), "mine", "env beats envFrom");
        assert_eq!(text(&env, "D"), "$(B)");
        assert!(env.get("bad=key").is_none() && env.notes.iter().any(|n| n.contains("bad=key")), "{env:?}");
    }

    #[test]
    fn field_and_resource_references_are_read_as_the_kubelet_reads_them() {
        let p = pod(
            json!([
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "HASH", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['pod-template-hash']"}}},
                {"name": "MISSING", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['nope']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "gw", "key": "token"}}},
                {"name": "ATTRS", "value": "k8s.replicaset.name=web-$(HASH),k8s.pod.name=$(POD)"},
            ]),
            json!([{"secretRef": {"name": "creds"}}]),
        );
        let env = resolve(&p, "app", &config_maps).expect("resolves");
        assert_eq!(text(&env, "HASH"), "7d9f");
        assert_eq!(text(&env, "MISSING"), "", "a missing label is empty, as in the kubelet");
        assert_eq!(text(&env, "NODE"), "node-a");
        assert_eq!(text(&env, "CPU"), "250");
        assert_eq!(text(&env, "MEM"), "128");
        assert_eq!(text(&env, "ATTRS"), "k8s.replicaset.name=web-7d9f,k8s.pod.name=web-7d9f-abcde");
        assert!(matches!(env.get("IP"), Some(EnvValue::Unknown(_))));
        assert!(matches!(env.get("CPU_LIMIT"), Some(EnvValue::Unknown(_))));
        assert_eq!(text(&env, "TOKEN"), "<redacted: Secret gw, key token>");
        assert!(env.notes.iter().any(|n| n.contains("Secret creds")), "{:?}", env.notes);
        let texts: Vec<&str> = env.texts().map(|(n, _)| n).collect();
        assert!(!texts.contains(&"TOKEN") && texts.contains(&"ATTRS"));
    }

    #[test]
    fn an_unknown_container_is_an_error() {
        assert!(resolve(&pod(json!([]), json!([])), "nope", &config_maps).is_err());
    }
}
