//! What a patch may change and must keep, for the property tests, the corpus and the fuzzers: every original
//! field survives (an env list may only gain entries, and `OTEL_RESOURCE_ATTRIBUTES` may only grow), and only the
//! paths the webhook owns are written. Pure: depends on `serde_json` and the library alone.

use crate::engine::workload::WorkloadKind;
use serde_json::Value;

/// Every field of `original` is in `patched` unchanged, except that `env` lists may gain entries (the original ones
/// keep their order) and `OTEL_RESOURCE_ATTRIBUTES` may grow at its end (past separators trailing the user's
/// pairs); null fields may be filled.
pub fn preserved(original: &Value, patched: &Value, path: &str) -> Result<(), String> {
    match (original, patched) {
        (Value::Null, _) => Ok(()),
        (Value::Object(a), Value::Object(b)) => a.iter().try_for_each(|(k, v)| match b.get(k) {
            Some(w) => preserved(v, w, &format!("{path}/{k}")),
            None => Err(format!("{path}/{k} was removed")),
        }),
        (Value::Array(a), Value::Array(b)) if path.ends_with("/env") => {
            let mut rest = b.iter();
            for (i, entry) in a.iter().enumerate() {
                if !rest.any(|candidate| same_env(entry, candidate)) {
                    return Err(format!("{path}/{i} ({}) was removed, changed or reordered", entry["name"]));
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if b.len() < a.len() {
                return Err(format!("{path} lost entries"));
            }
            a.iter().zip(b).enumerate().try_for_each(|(i, (x, y))| preserved(x, y, &format!("{path}/{i}")))
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path} changed from {a} to {b}")),
    }
}

fn same_env(original: &Value, candidate: &Value) -> bool {
    if original == candidate {
        return true;
    }
    // A language agent's activation extends the user's value: appended to the JVM's and Node's options, put before
    // the user's `PYTHONPATH`.
    let activation = crate::engine::config::LANGUAGES.iter().find(|l| original["name"] == l.var);
    if let (Some(language), Some(old), Some(new)) =
        (activation, original["value"].as_str(), candidate["value"].as_str())
        && candidate["name"] == original["name"]
    {
        let kept = match language.activation {
            crate::engine::config::Activation::Append => new.starts_with(old),
            crate::engine::config::Activation::Prepend => new.ends_with(old),
        };
        return kept && new.contains(language.token);
    }
    let merged = original["name"] == "OTEL_RESOURCE_ATTRIBUTES" && candidate["name"] == "OTEL_RESOURCE_ATTRIBUTES";
    // The user's pairs are kept as written; separators trailing them (commas, whitespace) may give way to ours.
    let old = original["value"].as_str().unwrap_or_default().trim_end_matches(|c: char| c == ',' || c.is_whitespace());
    let grown = candidate["value"].as_str().is_some_and(|new| new.starts_with(old));
    let without_value = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().map(|m| m.remove("value"));
        v
    };
    merged && grown && without_value(original) == without_value(candidate)
}

/// The only places the engine may write: container env lists, the template's metadata/annotations, the end of
/// the container lists (the sidecar, an agent's init container), and the end of the volume lists (an agent's).
pub fn owned(path: &str, kind: WorkloadKind) -> bool {
    let base = kind.template_path().iter().map(|t| format!("/{t}")).collect::<String>();
    let Some(rest) = path.strip_prefix(&base) else { return false };
    let env = rest.strip_prefix("/spec/containers/").and_then(|r| r.split_once('/'));
    let in_env = env.is_some_and(|(i, r)| i.parse::<usize>().is_ok() && (r == "env" || r.starts_with("env/")));
    let mounts = env.is_some_and(|(i, r)| i.parse::<usize>().is_ok() && matches!(r, "volumeMounts" | "volumeMounts/-"));
    let sidecar = ["/spec/initContainers", "/spec/initContainers/-", "/spec/containers/-"].contains(&rest);
    let volumes = ["/spec/volumes", "/spec/volumes/-"].contains(&rest);
    in_env
        || mounts
        || volumes
        || sidecar
        || rest == "/metadata"
        || rest == "/metadata/annotations"
        || rest == "/metadata/annotations/otel-injector.io~1status"
}
