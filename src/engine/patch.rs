//! RFC 6902 operations against the raw object: pointers built from tokens, missing parents created.

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::{PointerBuf, Token};
use serde_json::{Map, Value};

/// A JSON Pointer from unescaped tokens (`/` and `~` become `~1` and `~0`).
pub fn pointer<'t, T: Into<Token<'t>>>(tokens: impl IntoIterator<Item = T>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// The pointer to a container: `<base>/spec/<list>/<index>`.
pub fn container(base: &[&str], list: &str, index: usize) -> PointerBuf {
    let mut p = pointer(base.iter().copied().chain(["spec", list]));
    p.push_back(index);
    p
}

/// `path` with more tokens appended.
pub fn child<'t, T: Into<Token<'t>>>(path: &PointerBuf, tokens: impl IntoIterator<Item = T>) -> PointerBuf {
    let mut p = path.clone();
    tokens.into_iter().for_each(|t| p.push_back(t));
    p
}

/// A list of operations under construction, applied in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ops(Vec<PatchOperation>);

impl Ops {
    /// `add` (inserts into arrays, sets object members).
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.0.push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// `replace` of an existing value.
    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.0.push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    /// Sets `key` in the object at `parent` (tokens from the root), of which the first `existing` tokens lead to
    /// objects that exist; the missing (or null) rest is created with one `add` of the nested value, so the patch
    /// applies whatever the document lacks.
    pub fn set_member(&mut self, existing: usize, parent: &[&str], key: &str, value: Value) {
        if existing >= parent.len() {
            self.add(pointer(parent.iter().copied().chain([key])), value);
            return;
        }
        // Build {parent[existing+1]: {... {key: value}}} and add it at parent[..=existing].
        let nested = parent[existing + 1..].iter().rev().fold(single(key, value), |acc, t| single(t, acc));
        self.add(pointer(parent[..=existing].iter().copied()), nested);
    }

    /// Appends `value` to the list at `path` (tokens from the root), creating the list when it does not `exist`
    /// (absent or null).
    pub fn append(&mut self, exists: bool, path: &[&str], value: Value) {
        let pointer = pointer(path.iter().copied());
        if exists {
            self.add(child(&pointer, ["-"]), value);
        } else {
            self.add(pointer, Value::Array(vec![value]));
        }
    }

    /// Appends every operation of `other`.
    pub fn extend(&mut self, other: Ops) {
        self.0.extend(other.0);
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The finished patch.
    pub fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

fn single(key: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([(key.to_owned(), value)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(doc: &Value, ops: Ops) -> Value {
        let mut doc = doc.clone();
        json_patch::patch(&mut doc, &ops.into_patch()).expect("patch applies");
        doc
    }

    #[test]
    fn pointers_escape_slash_and_tilde() {
        assert_eq!(
            pointer(["metadata", "annotations", "otel-injector.io/status"]).as_str(),
            "/metadata/annotations/otel-injector.io~1status"
        );
        assert_eq!(pointer(["a~b", "c/d~/e"]).as_str(), "/a~0b/c~1d~0~1e");
        assert_eq!(container(&["spec", "template"], "containers", 3).as_str(), "/spec/template/spec/containers/3");
        assert_eq!(child(&container(&[], "initContainers", 0), ["env", "-"]).as_str(), "/spec/initContainers/0/env/-");
    }

    #[test]
    fn set_member_creates_missing_parents() {
        let cases = [
            (json!({}), 0, "/metadata"),
            (json!({"metadata": null}), 0, "/metadata"),
            (json!({"metadata": {}}), 1, "/metadata/annotations"),
            (json!({"metadata": {"annotations": null}}), 1, "/metadata/annotations"),
            (json!({"metadata": {"annotations": {"x": "y"}}}), 2, "/metadata/annotations/a~1b"),
        ];
        for (doc, existing, path) in cases {
            let mut ops = Ops::default();
            ops.set_member(existing, &["metadata", "annotations"], "a/b", json!("v"));
            assert_eq!(ops.0[0].path().as_str(), path, "{doc}");
            let out = apply(&doc, ops);
            assert_eq!(out["metadata"]["annotations"]["a/b"], "v");
        }
    }

    #[test]
    fn append_creates_or_extends_lists() {
        for (doc, exists, want) in [
            (json!({"spec": {}}), false, "/spec/initContainers"),
            (json!({"spec": {"initContainers": null}}), false, "/spec/initContainers"),
            (json!({"spec": {"initContainers": []}}), true, "/spec/initContainers/-"),
            (json!({"spec": {"initContainers": [{"name": "a"}]}}), true, "/spec/initContainers/-"),
        ] {
            let mut ops = Ops::default();
            ops.append(exists, &["spec", "initContainers"], json!({"name": "b"}));
            assert_eq!(ops.0[0].path().as_str(), want);
            let out = apply(&doc, ops);
            assert_eq!(out["spec"]["initContainers"].as_array().and_then(|l| l.last()), Some(&json!({"name": "b"})));
        }
    }

    #[test]
    fn set_member_keeps_siblings() {
        let doc = json!({"metadata": {"annotations": {"x": "y"}, "labels": {"l": "1"}}});
        let mut ops = Ops::default();
        ops.set_member(2, &["metadata", "annotations"], "k", json!("v"));
        assert_eq!(apply(&doc, ops), json!({"metadata": {"annotations": {"x": "y", "k": "v"}, "labels": {"l": "1"}}}));
    }

    proptest! {
        /// Any key, however many `/` and `~` it holds, lands exactly where it was meant to.
        #[test]
        fn escaping_round_trips(key in "[a-z/~0-9.]{1,12}", parent in "[a-z/~]{1,6}") {
            let doc = json!({});
            let mut ops = Ops::default();
            ops.set_member(0, &[parent.as_str()], &key, json!(1));
            let out = apply(&doc, ops);
            prop_assert_eq!(&out[parent.as_str()][key.as_str()], &json!(1));
        }
    }
}
