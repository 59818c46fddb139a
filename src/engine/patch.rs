//! RFC 6902 operations against the raw object: pointers built from tokens, missing parents created.

use std::borrow::Cow;

use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};

use crate::engine::json_string;
use jsonptr::{PointerBuf, Token};
use serde_json::Value;

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

/// `path` with an array index appended (`-`, the end, for `None`); cheaper than [`child`] on the hot path.
pub fn item(path: &PointerBuf, index: Option<usize>, suffix: &str) -> PointerBuf {
    let mut text = String::with_capacity(path.as_str().len() + 8 + suffix.len());
    text.push_str(path.as_str());
    match index {
        Some(i) => {
            text.push('/');
            push_index(&mut text, i);
        }
        None => text.push_str("/-"),
    }
    text.push_str(suffix);
    // An encoded pointer, a number and an encoded suffix: always a valid pointer.
    PointerBuf::parse(text).unwrap_or_else(|_| path.clone())
}

/// Appends `n` in decimal (by hand: the formatting machinery costs more than the rest of [`item`]).
fn push_index(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[at..].iter().for_each(|&d| out.push(char::from(d)));
}

/// `path` with more tokens appended.
pub fn child<'t, T: Into<Token<'t>>>(path: &PointerBuf, tokens: impl IntoIterator<Item = T>) -> PointerBuf {
    let mut p = path.clone();
    tokens.into_iter().for_each(|t| p.push_back(t));
    p
}

/// A JSON value the engine writes into a patch, already encoded (so a patch is written out, never built as
/// `serde_json::Value`s and serialised). Made only by the constructors here, which always produce valid JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(Cow<'static, str>);

impl Json {
    /// A JSON string.
    pub fn str(s: &str) -> Self {
        let mut out = String::with_capacity(s.len() + 2);
        json_string::push(&mut out, s);
        Self(Cow::Owned(out))
    }

    /// A constant that is valid JSON (checked in debug builds).
    pub(crate) fn constant(text: &'static str) -> Self {
        debug_assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(), "{text}");
        Self(Cow::Borrowed(text))
    }

    /// JSON text the engine wrote itself (the sidecar container from its template); checked in debug builds.
    pub(crate) fn text(text: String) -> Self {
        debug_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(), "{text}");
        Self(Cow::Owned(text))
    }

    /// A value held as `serde_json::Value` (a rebuilt env entry, an agent's volume or init container).
    pub fn value(v: &Value) -> Self {
        Self(Cow::Owned(v.to_string()))
    }

    /// `{"name": name, "value": value}`: an env entry.
    pub fn env(name: &str, value: &str) -> Self {
        let mut out = String::with_capacity(name.len() + value.len() + 24);
        out.push_str("{\"name\":");
        json_string::push(&mut out, name);
        out.push_str(",\"value\":");
        json_string::push(&mut out, value);
        out.push('}');
        Self(Cow::Owned(out))
    }

    /// `{key: value}`.
    pub(crate) fn member(key: &str, value: &Json) -> Self {
        let mut out = String::with_capacity(key.len() + value.0.len() + 4);
        out.push('{');
        json_string::push(&mut out, key);
        out.push(':');
        out.push_str(&value.0);
        out.push('}');
        Self(Cow::Owned(out))
    }

    /// `[items…]`.
    pub(crate) fn array<'j>(items: impl IntoIterator<Item = &'j Json>) -> Self {
        let mut out = String::from("[");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&item.0);
        }
        out.push(']');
        Self(Cow::Owned(out))
    }

    /// The encoded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, parsed (for tests and `preview`, not the webhook's path).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// A JSON array written item by item into one text: a long list (an env list rebuilt) without a value per item.
#[derive(Debug)]
pub(crate) struct ListWriter(String);

impl ListWriter {
    /// An empty list with room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut text = String::with_capacity(bytes + 2);
        text.push('[');
        Self(text)
    }

    fn separate(&mut self) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
    }

    /// Appends a value.
    pub fn push(&mut self, item: &Json) {
        self.separate();
        self.0.push_str(&item.0);
    }

    /// Appends JSON text as it was sent (a member of the object the API server sent: valid JSON).
    pub(crate) fn push_raw(&mut self, raw: &serde_json::value::RawValue) {
        self.separate();
        self.0.push_str(raw.get());
    }

    /// The list.
    pub fn finish(mut self) -> Json {
        self.0.push(']');
        Json(Cow::Owned(self.0))
    }
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `add`: inserts into arrays, sets object members.
    Add,
    /// `replace`: an existing value.
    Replace,
    /// `remove`: an existing value (its `value` is not sent).
    Remove,
}

/// One RFC 6902 operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// `add` or `replace`.
    pub kind: Kind,
    /// Where.
    pub path: PointerBuf,
    /// The value.
    pub value: Json,
}

impl Op {
    /// Where it applies.
    pub fn path(&self) -> &PointerBuf {
        &self.path
    }
}

/// A JSON Patch (RFC 6902): the operations, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch(pub Vec<Op>);

impl Patch {
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patch document, as sent to the API server.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let size: usize = self.0.iter().map(|op| op.path.as_str().len() + op.value.0.len() + 40).sum();
        let mut out = String::with_capacity(size + 2);
        out.push('[');
        for (i, op) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(match op.kind {
                Kind::Add => "{\"op\":\"add\",\"path\":",
                Kind::Replace => "{\"op\":\"replace\",\"path\":",
                Kind::Remove => "{\"op\":\"remove\",\"path\":",
            });
            json_string::push(&mut out, op.path.as_str());
            if op.kind != Kind::Remove {
                out.push_str(",\"value\":");
                out.push_str(&op.value.0);
            }
            out.push('}');
        }
        out.push(']');
        out.into_bytes()
    }

    /// The same patch as the `json-patch` crate's type, to apply it (tests, `preview`).
    pub fn to_json_patch(&self) -> json_patch::Patch {
        let op = |op: &Op| match op.kind {
            Kind::Add => PatchOperation::Add(AddOperation { path: op.path.clone(), value: op.value.to_value() }),
            Kind::Replace => {
                PatchOperation::Replace(ReplaceOperation { path: op.path.clone(), value: op.value.to_value() })
            }
            Kind::Remove => PatchOperation::Remove(RemoveOperation { path: op.path.clone() }),
        };
        json_patch::Patch(self.0.iter().map(op).collect())
    }
}

/// A list of operations under construction, applied in order, with the size of the patch they make.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Ops {
    ops: Vec<Op>,
    bytes: usize,
}

/// Bytes of an operation's text besides its path and value: `{"op":"add","path":"","value":}`.
fn overhead(kind: Kind) -> usize {
    match kind {
        Kind::Add => 31,
        Kind::Replace => 35,
        Kind::Remove => 25,
    }
}

impl Ops {
    fn push(&mut self, op: Op) {
        self.bytes += op.path.as_str().len() + op.value.0.len() + overhead(op.kind);
        self.ops.push(op);
    }

    /// `add` (inserts into arrays, sets object members).
    pub fn add(&mut self, path: PointerBuf, value: Json) {
        self.push(Op { kind: Kind::Add, path, value });
    }

    /// `replace` of an existing value.
    pub fn replace(&mut self, path: PointerBuf, value: Json) {
        self.push(Op { kind: Kind::Replace, path, value });
    }

    /// `remove` of an existing value (list items: the highest index first, so the others keep theirs).
    pub fn remove(&mut self, path: PointerBuf) {
        self.push(Op { kind: Kind::Remove, path, value: Json::constant("null") });
    }

    /// How many bytes the patch written so far takes (exactly, unless a path needs JSON escapes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sets `key` in the object at `parent` (tokens from the root), of which the first `existing` tokens lead to
    /// objects that exist; the missing (or null) rest is created with one `add` of the nested value, so the patch
    /// applies whatever the document lacks.
    pub(crate) fn set_member(&mut self, existing: usize, parent: &[&str], key: &str, value: Json) {
        if existing >= parent.len() {
            self.add(pointer(parent.iter().copied().chain([key])), value);
            return;
        }
        // Build {parent[existing+1]: {... {key: value}}} and add it at parent[..=existing].
        let nested =
            parent[existing + 1..].iter().rev().fold(Json::member(key, &value), |acc, t| Json::member(t, &acc));
        self.add(pointer(parent[..=existing].iter().copied()), nested);
    }

    /// Appends `value` to the list at `path` (tokens from the root), creating the list when it does not `exist`
    /// (absent or null).
    pub(crate) fn append(&mut self, exists: bool, path: &[&str], value: Json) {
        let pointer = pointer(path.iter().copied());
        if exists {
            self.add(child(&pointer, ["-"]), value);
        } else {
            self.add(pointer, Json::array([&value]));
        }
    }

    /// Appends every operation of `other`.
    pub fn extend(&mut self, other: Ops) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The finished patch.
    pub(crate) fn into_patch(self) -> Patch {
        Patch(self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(doc: &Value, ops: Ops) -> Value {
        let mut doc = doc.clone();
        json_patch::patch(&mut doc, &ops.into_patch().to_json_patch()).expect("patch applies");
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
        let env = child(&container(&[], "containers", 1), ["env"]);
        assert_eq!(item(&env, Some(12), "/value").as_str(), "/spec/containers/1/env/12/value");
        assert_eq!(item(&env, Some(0), "").as_str(), "/spec/containers/1/env/0");
        assert_eq!(item(&env, Some(1_234_567_890), "").as_str(), "/spec/containers/1/env/1234567890");
        assert_eq!(item(&env, None, ""), child(&env, ["-"]));
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
            ops.set_member(existing, &["metadata", "annotations"], "a/b", Json::str("v"));
            assert_eq!(ops.ops[0].path().as_str(), path, "{doc}");
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
            ops.append(exists, &["spec", "initContainers"], Json::value(&json!({"name": "b"})));
            assert_eq!(ops.ops[0].path().as_str(), want);
            let out = apply(&doc, ops);
            assert_eq!(out["spec"]["initContainers"].as_array().and_then(|l| l.last()), Some(&json!({"name": "b"})));
        }
    }

    #[test]
    fn set_member_keeps_siblings() {
        let doc = json!({"metadata": {"annotations": {"x": "y"}, "labels": {"l": "1"}}});
        let mut ops = Ops::default();
        ops.set_member(2, &["metadata", "annotations"], "k", Json::str("v"));
        assert_eq!(apply(&doc, ops), json!({"metadata": {"annotations": {"x": "y", "k": "v"}, "labels": {"l": "1"}}}));
    }

    #[test]
    fn a_patch_is_written_as_the_json_patch_crate_reads_it() {
        let tricky = "q\"uote\\ new\nline \u{1} tab\t é";
        let mut ops = Ops::default();
        ops.add(pointer(["a", "b~c/d"]), Json::env(tricky, tricky));
        ops.replace(pointer(["x"]), Json::str(tricky));
        ops.set_member(0, &["m", "n"], tricky, Json::array([&Json::str("1"), &Json::constant("null")]));
        let patch = ops.into_patch();
        let parsed: json_patch::Patch = serde_json::from_slice(&patch.to_json()).expect("a JSON Patch");
        assert_eq!(parsed, patch.to_json_patch());
        let doc = apply(&json!({"a": {}, "x": 1}), Ops { ops: patch.0.clone(), bytes: 0 });
        assert_eq!(doc["a"]["b~c/d"], json!({"name": tricky, "value": tricky}));
        assert_eq!(doc["x"], tricky);
        assert_eq!(doc["m"]["n"][tricky], json!(["1", null]));
    }

    #[test]
    fn a_list_written_item_by_item_is_the_list() {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(r#"{"name":"A","x":[1]}"#).expect("raw");
        let mut list = ListWriter::with_capacity(0);
        assert_eq!(ListWriter::with_capacity(8).finish().to_value(), json!([]));
        list.push(&Json::str("a"));
        list.push_raw(&raw);
        list.push(&Json::constant("null"));
        assert_eq!(list.finish().to_value(), json!(["a", {"name": "A", "x": [1]}, null]));
    }

    #[test]
    fn the_size_counted_is_the_size_written() {
        let mut ops = Ops::default();
        ops.add(pointer(["a", "b~c/d"]), Json::env("N", "q\"\n"));
        ops.replace(pointer(["x", "0"]), Json::str("v"));
        ops.append(false, &["spec", "initContainers"], Json::constant("{}"));
        let mut more = Ops::default();
        more.set_member(0, &["m", "n"], "k", Json::str("1"));
        ops.extend(more);
        let counted = ops.bytes();
        let written = ops.into_patch().to_json().len();
        // The brackets and the commas between operations are the patch's, not an operation's.
        assert_eq!(counted, written - 2 - 3);
    }

    proptest! {
        /// Any key, however many `/` and `~` it holds, lands exactly where it was meant to.
        #[test]
        fn escaping_round_trips(key in "[a-z/~0-9.]{1,12}", parent in "[a-z/~]{1,6}") {
            let doc = json!({});
            let mut ops = Ops::default();
            ops.set_member(0, &[parent.as_str()], &key, Json::constant("1"));
            let out = apply(&doc, ops);
            prop_assert_eq!(&out[parent.as_str()][key.as_str()], &json!(1));
        }
    }
}
