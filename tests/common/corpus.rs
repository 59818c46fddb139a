//! The real-world corpus (`../shared/corpus`): where it is, its files, and the objects of a manifest file.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// The corpus directory: `OTEL_INJECTOR_CORPUS`, else `../shared/corpus` next to this repository.
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("OTEL_INJECTOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(dir.is_dir(), "corpus not found at {} (set OTEL_INJECTOR_CORPUS)", dir.display());
    dir
}

/// The YAML and JSON files of a corpus folder, sorted.
pub fn files(sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir().join(sub))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() > 20, "suspiciously few corpus files in {sub}: {}", files.len());
    files
}

/// The objects of a manifest file as preview reads them: documents in order, `List`s flattened, empty ones skipped.
pub fn objects(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = if text.trim_start().starts_with('{') {
        serde_json::Deserializer::from_str(text).into_iter().collect::<Result<_, _>>().map_err(|e| e.to_string())?
    } else {
        let mut docs = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            docs.push(Value::deserialize(doc).map_err(|e| e.to_string())?);
        }
        docs
    };
    let mut objects = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        match doc.get("items").and_then(Value::as_array) {
            Some(items) if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) => objects.extend(items.clone()),
            _ => objects.push(doc),
        }
    }
    Ok(objects)
}

/// The objects of a manifest file, rendered with `kubectl kustomize` when only Go's YAML parser accepts it.
pub fn objects_of(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read");
    objects(&text).unwrap_or_else(|_| kustomize(path))
}

/// Renders a manifest with `kubectl kustomize`, for the YAML only Go's parser accepts.
pub fn kustomize(path: &Path) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = path.file_name().expect("file name");
    std::fs::copy(path, dir.path().join(name)).expect("copy");
    let kustomization = format!("resources:\n- {}\n", name.to_string_lossy());
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
    let out = Command::new("kubectl").arg("kustomize").arg(dir.path()).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&out.stderr));
    objects(&String::from_utf8_lossy(&out.stdout)).expect("kustomize output is YAML")
}
