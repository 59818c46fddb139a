//! Environment variables for one container: add what the user has not set, merge `OTEL_RESOURCE_ATTRIBUTES`
//! key by key, and place every new variable before its first `$(VAR)` reference (SPEC §4).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use jsonptr::PointerBuf;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::env_from::Drawn;
use super::record::Record;
use super::transport::{self, Endpoint, Scope};
use super::vars::{self, ENDPOINT, HEADERS, PROTOCOL, RESOURCE_ATTRIBUTES, Source};
use crate::engine::limits;
use crate::engine::patch::{Json, ListWriter, Ops, child, item};
use crate::engine::pod_view::{Container, Env};
use crate::engine::syntax::Signal;
use crate::engine::warnings::clip;

/// The variables that point an SDK at a declarative configuration file (`OTEL_CONFIG_FILE`, stable since 2026; older
/// SDKs read the experimental name).
pub(crate) const CONFIG_FILES: [&str; 2] = ["OTEL_CONFIG_FILE", "OTEL_EXPERIMENTAL_CONFIG_FILE"];

/// A value only the kubelet knows, read through the downward API into a helper variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Helper {
    /// `metadata.name`.
    PodName,
    /// `metadata.uid`.
    PodUid,
    /// `spec.nodeName`.
    NodeName,
    /// The label `pod-template-hash`, which the Deployment controller puts on its ReplicaSets' pods.
    PodTemplateHash,
    /// The label `batch.kubernetes.io/job-name`, which the Job controller puts on its pods (Kubernetes 1.27 on).
    JobName,
    /// The label `job-name`, its name before Kubernetes 1.27.
    LegacyJobName,
}

impl Helper {
    /// The helper variable's name (the OpenTelemetry Operator's, so both tools read the same pods).
    pub fn var(self) -> &'static str {
        match self {
            Self::PodName => "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            Self::PodUid => "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
            Self::NodeName => "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
            Self::PodTemplateHash => "OTEL_RESOURCE_ATTRIBUTES_POD_TEMPLATE_HASH",
            Self::JobName | Self::LegacyJobName => "OTEL_RESOURCE_ATTRIBUTES_JOB_NAME",
        }
    }

    fn field_path(self) -> &'static str {
        match self {
            Self::PodName => "metadata.name",
            Self::PodUid => "metadata.uid",
            Self::NodeName => "spec.nodeName",
            Self::PodTemplateHash => "metadata.labels['pod-template-hash']",
            Self::JobName => "metadata.labels['batch.kubernetes.io/job-name']",
            Self::LegacyJobName => "metadata.labels['job-name']",
        }
    }

    /// The env entry defining the helper from the downward API.
    pub fn entry(self) -> Value {
        json!({"name": self.var(), "valueFrom": {"fieldRef": {"fieldPath": self.field_path()}}})
    }

    /// [`Helper::entry`], encoded for a patch.
    pub fn json(self) -> Json {
        Json::constant(match self {
            Self::PodName => {
                r#"{"name":"OTEL_RESOURCE_ATTRIBUTES_POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}"#
            }
            Self::PodUid => {
                r#"{"name":"OTEL_RESOURCE_ATTRIBUTES_POD_UID","valueFrom":{"fieldRef":{"fieldPath":"metadata.uid"}}}"#
            }
            Self::NodeName => {
                r#"{"name":"OTEL_RESOURCE_ATTRIBUTES_NODE_NAME","valueFrom":{"fieldRef":{"fieldPath":"spec.nodeName"}}}"#
            }
            Self::PodTemplateHash => {
                r#"{"name":"OTEL_RESOURCE_ATTRIBUTES_POD_TEMPLATE_HASH","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['pod-template-hash']"}}}"#
            }
            Self::JobName => {
                r#"{"name":"OTEL_RESOURCE_ATTRIBUTES_JOB_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['batch.kubernetes.io/job-name']"}}}"#
            }
            Self::LegacyJobName => {
                r#"{"name":"OTEL_RESOURCE_ATTRIBUTES_JOB_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['job-name']"}}}"#
            }
        })
    }
}

/// Every helper.
const HELPERS: [Helper; 6] = [
    Helper::PodName,
    Helper::PodUid,
    Helper::NodeName,
    Helper::PodTemplateHash,
    Helper::JobName,
    Helper::LegacyJobName,
];

/// A resource attribute's value: known now, or read by the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue<'a> {
    /// A literal, percent-encoded when written.
    Literal(&'a str),
    /// `$(HELPER)`, a downward-API variable.
    Helper(Helper),
    /// `<name>-$(HELPER)`: a name the kubelet completes (a ReplicaSet's is its Deployment's and the template hash).
    Suffixed(&'a str, Helper),
}

/// What the env plan of one container produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct EnvPlan {
    /// Operations, relative to the whole object.
    pub ops: Ops,
    /// Variables added, in the order they were placed.
    pub added: Vec<&'static str>,
    /// Variables the webhook had set, brought up to date.
    pub updated: Vec<&'static str>,
    /// Variables the webhook had set and no longer wants (e.g. headers next to a user's own endpoint).
    pub removed: Vec<&'static str>,
    /// Variables the user had set, left as they were.
    pub kept: Vec<&'static str>,
    /// Remarks for the explanation.
    pub notes: Vec<String>,
    /// Problems the user should hear about.
    pub warnings: Vec<String>,
    /// The webhook's values in this container after the patch, for the status annotation.
    pub record: Record,
}

/// Why a container opted itself out, if it did (SPEC §2).
pub(crate) fn opt_out(c: &Container<'_>, drawn: &Drawn) -> Option<&'static str> {
    // `env` beats `envFrom`, as in the kubelet.
    let literal = |name: &str| match c.env_var(name) {
        Some(e) if e.value_from => None,
        Some(e) => Some(e.value.as_deref().unwrap_or_default()),
        None => drawn.value(name),
    };
    if literal(ENDPOINT) == Some("") {
        return Some("OTEL_EXPORTER_OTLP_ENDPOINT is set empty");
    }
    if literal("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Some("OTEL_SDK_DISABLED=true");
    }
    None
}

/// The variable that points the container's SDK at a declarative configuration file, if one is set (in `env`, or
/// drawn from a ConfigMap).
pub(crate) fn config_file(c: &Container<'_>, drawn: &Drawn) -> Option<&'static str> {
    CONFIG_FILES.into_iter().find(|name| c.env_var(name).is_some() || drawn.value(name).is_some())
}

/// The variable names a value references with the kubelet's `$(VAR)` syntax (`$$` escapes).
pub fn references(value: &str) -> impl Iterator<Item = &str> {
    let bytes = value.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i + 1 < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            match bytes[i + 1] {
                b'$' => i += 2,
                b'(' => {
                    let start = i + 2;
                    let Some(len) = bytes[start..].iter().position(|&b| b == b')') else {
                        i = bytes.len();
                        return None;
                    };
                    i = start + len + 1;
                    return Some(&value[start..start + len]);
                }
                _ => i += 1,
            }
        }
        None
    })
}

/// Why a strict SDK (Node.js) would discard the whole `OTEL_RESOURCE_ATTRIBUTES` for this `key=value` pair as
/// written, if it would: the value is checked as it stands in the variable, before decoding.
pub(crate) fn strict_problem(pair: &str) -> Option<&'static str> {
    let Some((_, value)) = pair.split_once('=') else { return Some("has no '='") };
    if value.contains('=') {
        return Some("has a second, unencoded '='");
    }
    let bytes = value.as_bytes();
    let bad_escape = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if bad_escape {
        return Some("has a '%' not followed by two hex digits");
    }
    if value.trim().chars().count() > crate::engine::limits::VALUE_CHARS {
        return Some("has a value over 255 characters");
    }
    None
}

/// Escapes a literal so the kubelet leaves it alone: every `$` becomes `$$`.
pub fn escape(literal: &str) -> Cow<'_, str> {
    if literal.contains('$') { literal.replace('$', "$$").into() } else { literal.into() }
}

/// `key=value` for `OTEL_RESOURCE_ATTRIBUTES`, the key escaped for the kubelet and the value given in parts (built by
/// hand: `format!` is several times slower, and this runs for every attribute of every container).
fn pair_text(key: &str, value: &[&str]) -> String {
    let key = escape(key);
    let mut pair = String::with_capacity(key.len() + 1 + value.iter().map(|p| p.len()).sum::<usize>());
    pair.push_str(&key);
    pair.push('=');
    value.iter().for_each(|part| pair.push_str(part));
    pair
}

/// A variable outside the SDK's that the webhook edits too (a language agent's activation, see [`super::agents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    /// The entry at this index of the original list gets this value.
    Change(usize, String),
    /// This variable is appended to the list.
    Append(&'static str, String),
    /// The entry at this index of the original list is removed.
    Remove(usize),
}

/// One variable to add, and where it goes.
struct Insert {
    /// Index in the original list it is inserted before (`len` = appended).
    pos: usize,
    /// Canonical order among inserts at the same position.
    rank: usize,
    name: &'static str,
    entry: Json,
}

/// Plans the env of one container.
///
/// `vars` are the standard variables in canonical order with their final (escaped) values; `attributes` are the
/// resource attributes wanted in `OTEL_RESOURCE_ATTRIBUTES`; `encode` percent-encodes a literal attribute value;
/// `previous` is what the webhook recorded for this container when it last instrumented it.
///
/// A variable the container lacks is added. One whose value is exactly what the webhook recorded is the webhook's:
/// it is brought up to date, or removed when no longer wanted. Any other value is the user's and is never touched.
/// A container that sets its own `OTEL_EXPORTER_OTLP_ENDPOINT` owns its transport: it gets no
/// `OTEL_EXPORTER_OTLP_HEADERS` (they are the gateway's) and an `OTEL_EXPORTER_OTLP_PROTOCOL` only when its
/// endpoint's port says which (4317 grpc, 4318 http/protobuf).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<'a>(
    c: &Container<'a>,
    raw_env: impl FnOnce() -> Vec<&'a RawValue>,
    path: &PointerBuf,
    vars: &[(&'static str, String)],
    attributes: &[(&str, AttrValue<'_>)],
    encode: impl Fn(&str) -> Cow<'_, str>,
    previous: Option<&Record>,
    drawn: &Drawn,
    extra: &[Edit],
) -> EnvPlan {
    let env = c.env.as_ref();
    let len = env.map_or(0, Env::len);
    let first_def = |name: &str| env?.first(name);
    let last_def = |name: &str| env?.last(name);
    // Of each variable the plan may add, the first entry that refers to it (`$(NAME)`): one pass over the values,
    // keeping only those names (a value may refer to thousands of others).
    let mut referenced: HashMap<&str, usize> = HashMap::new();
    let addable = |name: &str| {
        name == RESOURCE_ATTRIBUTES || HELPERS.iter().any(|h| h.var() == name) || vars.iter().any(|(v, _)| *v == name)
    };
    for (i, e) in env.into_iter().flat_map(Env::entries) {
        for r in e.value.as_deref().into_iter().flat_map(references).filter(|r| addable(r)) {
            referenced.entry(r).or_insert(i);
        }
    }
    let first_ref = |name: &str| referenced.get(name).copied().unwrap_or(len);
    // Indexes below come from `first_def`/`last_def`, so they name entries the view keeps.
    let var = |i: usize| env.and_then(|env| env.get(i));
    let value_of = |i: usize| var(i).and_then(|e| e.value.as_deref());
    let literal = |i: usize| var(i).filter(|e| !e.value_from).map(|e| e.value.as_deref().unwrap_or_default());
    let owned = |name: &str, i: usize| previous.zip(literal(i)).is_some_and(|(r, v)| r.owns(name, v));
    let mut out = EnvPlan::default();
    let mut inserts = Vec::new();
    let mut changes: Vec<(usize, String)> = Vec::new();
    let mut removals: Vec<usize> = Vec::new();

    let users = |name: &str| last_def(name).filter(|&i| !owned(name, i));
    // Defined by the user in `env`, or drawn from a ConfigMap through `envFrom` (and not in `env`, which would beat
    // it), with its literal value when known.
    let users_value = |name: &str| -> Option<Option<&str>> {
        match last_def(name) {
            Some(i) if !owned(name, i) => Some(literal(i)),
            Some(_) => None,
            None => drawn.value(name).map(Some),
        }
    };
    // Each signal's endpoint: its own variable (always the user's), else the generic one if the user set it.
    let endpoint = |signal: Signal| {
        let defined = |name: &str| users_value(name).filter(|v| *v != Some(""));
        match defined(transport::endpoint_var(signal)).or_else(|| defined(ENDPOINT)) {
            Some(value) => value.map_or(Endpoint::UsersUnknown, Endpoint::Users),
            None => Endpoint::Ours,
        }
    };
    let ours_of = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    let ours = (ours_of(PROTOCOL).unwrap_or_default(), ours_of(HEADERS));
    let transport = transport::plan(endpoint, ours, users_value(PROTOCOL).is_some(), users_value(HEADERS).is_some());
    // A file-configured SDK ignores the exporter variables; the service name and attributes stay, for `${env:…}`.
    let config_file = config_file(c, drawn);
    if let Some(name) = config_file {
        out.warnings.push(format!(
            "container {}: exporter settings left alone: {name} is set (its SDK reads that file, not OTEL_* variables)",
            c.name
        ));
        out.notes.push(format!(
            "{name} is set: only {RESOURCE_ATTRIBUTES} and OTEL_SERVICE_NAME are added (for ${{…}} substitution in the file)"
        ));
    }
    let ora = last_def(RESOURCE_ATTRIBUTES);
    let ora_literal = ora.and_then(literal);
    let names_service = |list: &str| {
        list.split(',')
            .filter(|p| !previous.is_some_and(|r| r.owns_pair(p.trim())))
            .filter_map(|p| p.split_once('='))
            .any(|(k, _)| k.trim() == "service.name")
    };
    let drawn_ora = if ora.is_none() { drawn.value(RESOURCE_ATTRIBUTES) } else { None };
    let users_service_name = ora_literal.or(drawn_ora).is_some_and(names_service);
    let mut wanted = Vec::with_capacity(vars.len());
    for (rank, (name, value)) in vars.iter().enumerate() {
        let source = vars::source_of(name);
        if config_file.is_some() && source != Some(Source::ServiceName) {
            continue;
        }
        if users(name).is_none()
            && let Some(config_map) = drawn.source(name)
        {
            // Drawn from a ConfigMap: theirs, and an `env` entry of ours would beat it (one the webhook set before is
            // taken back: it is not wanted).
            out.kept.push(name);
            out.notes.push(format!("{name}: from ConfigMap {config_map} (envFrom); kept"));
            continue;
        }
        let value = match source {
            Some(Source::ServiceName) if users_service_name && users(name).is_none() => {
                out.notes.push(format!("{name} not added: the user's {RESOURCE_ATTRIBUTES} names service.name"));
                continue;
            }
            Some(Source::Protocol) if users(name).is_none() => match transport.protocol_for(Scope::All) {
                Some(v) => v,
                None => continue,
            },
            Some(Source::Headers) if users(name).is_none() => match transport.headers_for(Scope::All) {
                Some(v) => v,
                None => continue,
            },
            Some(Source::SignalProtocol(signal)) => match transport.protocol_for(Scope::One(signal)) {
                Some(v) => v,
                None => continue,
            },
            Some(Source::SignalHeaders(signal)) => match transport.headers_for(Scope::One(signal)) {
                Some(v) => v,
                None => continue,
            },
            _ => value.as_str(),
        };
        wanted.push(*name);
        match last_def(name) {
            None => {
                out.record.set(name, value);
                let entry = Json::env(name, value);
                inserts.push(Insert { pos: first_ref(name), rank: 3 + rank, name, entry });
            }
            Some(i) if owned(name, i) => {
                out.record.set(name, value);
                if literal(i) != Some(value) {
                    changes.push((i, value.to_owned()));
                    out.updated.push(name);
                }
            }
            Some(_) => {
                out.kept.push(name);
                if previous.is_some_and(|r| r.recorded(name)) {
                    out.notes.push(format!("{name}: the user changed the value the webhook set; kept"));
                }
            }
        }
    }
    for name in previous.into_iter().flat_map(Record::names).filter(|n| !wanted.contains(n)) {
        if let Some(i) = last_def(name).filter(|&i| owned(name, i)) {
            removals.push(i);
            out.removed.push(name);
        }
    }

    if let (None, Some(config_map)) = (ora, drawn.source(RESOURCE_ATTRIBUTES)) {
        out.kept.push(RESOURCE_ATTRIBUTES);
        out.warnings.push(format!(
            "container {}: {RESOURCE_ATTRIBUTES} is drawn from ConfigMap {}; Kubernetes attributes not added \
             (set it in env to have them merged)",
            c.name,
            clip(config_map)
        ));
        return finish(out, inserts, changes, removals, c, raw_env, path, len, extra);
    }
    // Where OTEL_RESOURCE_ATTRIBUTES is, or will be: helpers must be defined before it.
    if ora.and_then(var).is_some_and(|e| e.value_from) {
        out.kept.push(RESOURCE_ATTRIBUTES);
        out.warnings.push(format!(
            "container {}: {RESOURCE_ATTRIBUTES} uses valueFrom; Kubernetes attributes not added",
            c.name
        ));
        return finish(out, inserts, changes, removals, c, raw_env, path, len, extra);
    }
    let current = ora.map(|i| value_of(i).unwrap_or_default());
    let pairs: Vec<&str> = current.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let (ours, users): (Vec<&str>, Vec<&str>) = pairs.iter().partition(|p| previous.is_some_and(|r| r.owns_pair(p)));
    if let Some((pair, problem)) = users.iter().find_map(|p| Some((p, strict_problem(p)?))) {
        out.warnings.push(format!(
            "container {}: a strict SDK (Node.js) would discard all of {RESOURCE_ATTRIBUTES}: {} {problem}",
            c.name,
            clip(pair)
        ));
    }
    let present: HashSet<&str> = users.iter().filter_map(|p| p.split_once('=')).map(|(k, _)| k.trim()).collect();
    let anchor = ora.unwrap_or_else(|| first_ref(RESOURCE_ATTRIBUTES));

    let mut rendered = Vec::new();
    for (key, value) in attributes.iter().filter(|(k, _)| !present.contains(&escape(k).as_ref())) {
        let pair = match value {
            AttrValue::Literal(v) => {
                let encoded = encode(v);
                if encoded.chars().count() > limits::VALUE_CHARS {
                    out.warnings.push(format!(
                        "container {}: resource attribute {} not added: over {} characters encoded (strict SDKs \
                         would discard every attribute)",
                        c.name,
                        clip(key),
                        limits::VALUE_CHARS
                    ));
                    continue;
                }
                pair_text(key, &[&escape(&encoded)])
            }
            AttrValue::Helper(h) | AttrValue::Suffixed(_, h) => {
                match first_def(h.var()) {
                    Some(i) if i >= anchor => {
                        out.notes.push(format!("{key} not added: {} is defined after {RESOURCE_ATTRIBUTES}", h.var()));
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        if !inserts.iter().any(|i| i.name == h.var()) {
                            let pos = first_ref(h.var()).min(anchor);
                            inserts.push(Insert { pos, rank: *h as usize, name: h.var(), entry: h.json() });
                        }
                    }
                }
                match value {
                    AttrValue::Suffixed(name, _) => pair_text(key, &[&escape(&encode(name)), "-$(", h.var(), ")"]),
                    _ => pair_text(key, &["$(", h.var(), ")"]),
                }
            }
        };
        out.record.set_pair(&pair);
        rendered.push(pair);
    }

    match (ora, current) {
        (Some(i), Some(current)) => {
            // The user's own pairs stay exactly as written (only separators trailing them are dropped, so the
            // next pass finds the same text); the webhook's are rendered anew after them.
            let owned_pair = |seg: &str| !seg.trim().is_empty() && previous.is_some_and(|r| r.owns_pair(seg.trim()));
            let theirs: Vec<&str> = current.split(',').filter(|seg| !owned_pair(seg)).collect();
            let joined = theirs.join(",");
            let base = joined.trim_end_matches(|c: char| c == ',' || c.is_whitespace());
            let merged = match (base, rendered.is_empty()) {
                _ if ours.is_empty() && rendered.is_empty() => current.to_owned(),
                (b, true) => b.to_owned(),
                ("", false) => rendered.join(","),
                (b, false) => format!("{b},{}", rendered.join(",")),
            };
            if users.is_empty() {
                if merged != current {
                    out.updated.push(RESOURCE_ATTRIBUTES);
                }
            } else {
                out.kept.push(RESOURCE_ATTRIBUTES);
                if !rendered.is_empty() {
                    out.notes
                        .push(format!("merged {} attribute(s) into the user's {RESOURCE_ATTRIBUTES}", rendered.len()));
                }
            }
            if merged != current || value_of(i).is_none() && !merged.is_empty() {
                changes.push((i, merged));
            }
        }
        _ if !rendered.is_empty() => {
            let entry = Json::env(RESOURCE_ATTRIBUTES, &rendered.join(","));
            inserts.push(Insert { pos: anchor, rank: usize::MAX, name: RESOURCE_ATTRIBUTES, entry });
        }
        _ => {}
    }
    finish(out, inserts, changes, removals, c, raw_env, path, len, extra)
}

/// Turns the plan into operations. Without removals: a `replace` of each changed value at its original index, then
/// one `add` of the whole list when `env` is absent, else one `add` per variable at its position, shifted by the
/// inserts before it (operations apply in order). With removals (rare: the webhook takes back one of its own
/// variables): one `replace` of the list, rebuilt from the raw entries so no field of the user's is lost.
#[allow(clippy::too_many_arguments)]
fn finish<'a>(
    mut out: EnvPlan,
    mut inserts: Vec<Insert>,
    mut changes: Vec<(usize, String)>,
    mut removals: Vec<usize>,
    c: &Container<'a>,
    raw_env: impl FnOnce() -> Vec<&'a RawValue>,
    path: &PointerBuf,
    len: usize,
    extra: &[Edit],
) -> EnvPlan {
    for edit in extra {
        match edit {
            Edit::Change(i, value) => changes.push((*i, value.clone())),
            Edit::Append(name, value) => {
                let entry = Json::env(name, value);
                inserts.push(Insert { pos: len, rank: usize::MAX, name, entry });
            }
            Edit::Remove(i) => removals.push(*i),
        }
    }
    inserts.sort_by_key(|i| (i.pos, i.rank));
    out.added = inserts.iter().map(|i| i.name).collect();
    if !removals.is_empty() {
        let raw_entries = raw_env();
        let mut list = ListWriter::with_capacity(raw_entries.iter().map(|r| r.get().len() + 1).sum::<usize>() + 256);
        let mut pending = inserts.into_iter().peekable();
        for (i, raw) in raw_entries.iter().enumerate() {
            while let Some(insert) = pending.next_if(|ins| ins.pos <= i) {
                list.push(&insert.entry);
            }
            if removals.contains(&i) {
                continue;
            }
            match changes.iter().find(|(at, _)| *at == i) {
                Some((_, value)) => {
                    let mut entry: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                    if let Some(map) = entry.as_object_mut() {
                        map.insert("value".to_owned(), Value::String(value.clone()));
                    }
                    list.push(&Json::value(&entry));
                }
                // Most entries: copied as sent, straight into the list's text.
                None => list.push_raw(raw),
            }
        }
        pending.for_each(|insert| list.push(&insert.entry));
        out.ops.replace(child(path, ["env"]), list.finish());
        return out;
    }
    let env_path = child(path, ["env"]);
    for (i, value) in changes {
        let value_path = item(&env_path, Some(i), "/value");
        match c.env.as_ref().and_then(|env| env.get(i)).and_then(|e| e.value.as_ref()) {
            Some(_) => out.ops.replace(value_path, Json::str(&value)),
            None => out.ops.add(value_path, Json::str(&value)),
        }
    }
    if inserts.is_empty() {
        return out;
    }
    if c.env.is_none() {
        out.ops.add(env_path, Json::array(inserts.iter().map(|i| &i.entry)));
        return out;
    }
    for (shift, insert) in inserts.into_iter().enumerate() {
        let at = (insert.pos < len).then_some(insert.pos + shift);
        out.ops.add(item(&env_path, at, ""), insert.entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::patch::container;
    use crate::engine::pod_view::PodView;
    use crate::engine::workload::WorkloadKind;
    use rstest::rstest;

    fn vars() -> Vec<(&'static str, String)> {
        vec![("OTEL_SERVICE_NAME", "svc".to_owned()), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317".to_owned())]
    }

    fn attrs() -> Vec<(&'static str, AttrValue<'static>)> {
        vec![
            ("k8s.namespace.name", AttrValue::Literal("shop")),
            ("k8s.pod.name", AttrValue::Helper(Helper::PodName)),
            ("team", AttrValue::Literal("a,b")),
        ]
    }

    /// Plans `env` for a one-container pod, applies the patch and returns the resulting env and the plan.
    fn run(env: Value) -> (Vec<(String, String)>, EnvPlan) {
        let mut pod = json!({"spec": {"containers": [{"name": "app"}]}});
        if !env.is_null() {
            pod["spec"]["containers"][0]["env"] = env;
        }
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let path = container(&[], "containers", 0);
        fn encode(s: &str) -> Cow<'_, str> {
            s.replace(',', "%2C").into()
        }
        let plan = plan(
            &view.containers[0],
            || view.raw_env("containers", 0),
            &path,
            &vars(),
            &attrs(),
            encode,
            None,
            &Drawn::default(),
            &[],
        );
        let mut out = pod.clone();
        json_patch::patch(&mut out, &plan.ops.clone().into_patch().to_json_patch()).expect("applies");
        let list = out["spec"]["containers"][0]["env"].as_array().cloned().unwrap_or_default();
        let pairs = list
            .iter()
            .map(|e| {
                let v = e.get("value").and_then(Value::as_str).map(str::to_owned);
                let v = v.unwrap_or_else(|| {
                    format!("<{}>", e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap_or("?"))
                });
                (e["name"].as_str().unwrap_or_default().to_owned(), v)
            })
            .collect();
        (pairs, plan)
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn absent_env_gets_one_add_in_canonical_order() {
        let (env, plan) = run(Value::Null);
        assert_eq!(plan.ops.len(), 1);
        assert_eq!(
            names(&env),
            [
                "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                "OTEL_SERVICE_NAME",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_RESOURCE_ATTRIBUTES"
            ]
        );
        assert_eq!(env[0].1, "<metadata.name>");
        assert_eq!(env[3].1, "k8s.namespace.name=shop,k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),team=a%2Cb");
    }

    #[test]
    fn null_env_is_replaced_by_the_list() {
        let mut pod = json!({"spec": {"containers": [{"name": "app", "env": null}]}});
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let raw = || view.raw_env("containers", 0);
        let plan = plan(
            &view.containers[0],
            raw,
            &container(&[], "containers", 0),
            &vars(),
            &[],
            super::super::resource::encode,
            None,
            &Drawn::default(),
            &[],
        );
        json_patch::patch(&mut pod, &plan.ops.into_patch().to_json_patch()).expect("applies");
        assert_eq!(pod["spec"]["containers"][0]["env"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn user_values_win_and_are_reported_kept() {
        let (env, plan) = run(json!([{"name": "OTEL_SERVICE_NAME", "value": "mine"}]));
        assert_eq!(env[0], ("OTEL_SERVICE_NAME".to_owned(), "mine".to_owned()));
        assert_eq!(env.iter().filter(|(n, _)| n == "OTEL_SERVICE_NAME").count(), 1);
        assert_eq!(plan.kept, ["OTEL_SERVICE_NAME"]);
        assert!(!plan.added.contains(&"OTEL_SERVICE_NAME"));
    }

    #[test]
    fn value_from_counts_as_set() {
        let (env, plan) = run(
            json!([{"name": "OTEL_SERVICE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}]),
        );
        assert_eq!(env.iter().filter(|(n, _)| n == "OTEL_SERVICE_NAME").count(), 1);
        assert_eq!(plan.kept, ["OTEL_SERVICE_NAME"]);
    }

    #[test]
    fn new_variables_go_before_their_first_reference() {
        let (env, _) = run(json!([
            {"name": "A", "value": "1"},
            {"name": "JAVA_TOOL_OPTIONS", "value": "-Dotel.service.name=$(OTEL_SERVICE_NAME)"},
            {"name": "B", "value": "$(OTEL_RESOURCE_ATTRIBUTES)"},
        ]));
        assert_eq!(
            names(&env),
            [
                "A",
                "OTEL_SERVICE_NAME",
                "JAVA_TOOL_OPTIONS",
                "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                "OTEL_RESOURCE_ATTRIBUTES",
                "B",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
        );
    }

    #[test]
    fn escaped_references_do_not_count() {
        let (env, _) = run(json!([{"name": "A", "value": "$$(OTEL_SERVICE_NAME)"}]));
        assert_eq!(names(&env)[0], "A");
    }

    #[test]
    fn user_attributes_are_merged_key_by_key_with_helpers_defined_first() {
        let (env, plan) = run(json!([
            {"name": "X", "value": "1"},
            {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=mine,service.version=3"},
        ]));
        assert_eq!(
            names(&env),
            [
                "X",
                "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_SERVICE_NAME",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
        );
        assert_eq!(
            env[2].1,
            "team=mine,service.version=3,k8s.namespace.name=shop,k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)"
        );
        assert!(plan.kept.contains(&RESOURCE_ATTRIBUTES));
        assert_eq!(plan.notes, ["merged 2 attribute(s) into the user's OTEL_RESOURCE_ATTRIBUTES"]);
    }

    #[rstest]
    #[case(json!({"name": "OTEL_RESOURCE_ATTRIBUTES"}), "k8s.namespace.name=shop")]
    #[case(json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": ""}), "k8s.namespace.name=shop")]
    #[case(json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "a=1,"}), "a=1,k8s.namespace.name=shop")]
    fn empty_or_trailing_comma_user_attributes(#[case] entry: Value, #[case] prefix: &str) {
        let (env, _) = run(json!([entry]));
        let ora = env.iter().find(|(n, _)| n == RESOURCE_ATTRIBUTES).expect("present");
        assert!(ora.1.starts_with(prefix), "{}", ora.1);
    }

    #[test]
    fn helper_defined_after_user_attributes_is_not_referenced() {
        let (env, plan) = run(json!([
            {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "a=1"},
            {"name": "OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "value": "late"},
        ]));
        let ora = &env.iter().find(|(n, _)| n == RESOURCE_ATTRIBUTES).expect("present").1;
        assert!(!ora.contains("k8s.pod.name"), "{ora}");
        assert!(plan.notes.iter().any(|n| n.contains("k8s.pod.name not added")));
    }

    #[test]
    fn helper_defined_before_is_reused() {
        let (env, plan) = run(json!([{"name": "OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "value": "mine"}]));
        assert_eq!(env.iter().filter(|(n, _)| n == Helper::PodName.var()).count(), 1);
        assert!(!plan.added.contains(&Helper::PodName.var()));
        let ora = &env.iter().find(|(n, _)| n == RESOURCE_ATTRIBUTES).expect("present").1;
        assert!(ora.contains("k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)"));
    }

    #[test]
    fn value_from_attributes_are_left_alone_with_a_warning() {
        let (env, plan) = run(
            json!([{"name": "OTEL_RESOURCE_ATTRIBUTES", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]),
        );
        assert!(!names(&env).contains(&Helper::PodName.var()));
        assert_eq!(plan.warnings.len(), 1);
    }

    #[test]
    fn second_pass_is_a_no_op() {
        let (env, _) = run(json!([{"name": "A", "value": "$(OTEL_SERVICE_NAME)"}]));
        let list: Vec<Value> = env
            .iter()
            .map(|(n, v)| match v.strip_prefix('<') {
                Some(f) => json!({"name": n, "valueFrom": {"fieldRef": {"fieldPath": f.trim_end_matches('>')}}}),
                None => json!({"name": n, "value": v}),
            })
            .collect();
        let (_, plan) = run(Value::Array(list));
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
        assert!(plan.added.is_empty());
    }

    #[rstest]
    #[case("$(A) and $(B)", vec!["A", "B"])]
    #[case("$$(A) $(B)", vec!["B"])]
    #[case("$$$(A)", vec!["A"])]
    #[case("$(A", vec![])]
    #[case("$A ${B} $", vec![])]
    #[case("$((1+2)) $(C)", vec!["(1+2", "C"])]
    fn kubelet_reference_syntax(#[case] value: &str, #[case] want: Vec<&str>) {
        assert_eq!(references(value).collect::<Vec<_>>(), want);
    }

    #[rstest]
    #[case(json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": ""}]), Some("OTEL_EXPORTER_OTLP_ENDPOINT is set empty"))]
    #[case(json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT"}]), Some("OTEL_EXPORTER_OTLP_ENDPOINT is set empty"))]
    #[case(json!([{"name": "OTEL_SDK_DISABLED", "value": "TRUE"}]), Some("OTEL_SDK_DISABLED=true"))]
    #[case(json!([{"name": "OTEL_SDK_DISABLED", "value": "false"}]), None)]
    #[case(json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://x"}]), None)]
    #[case(json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]), None)]
    fn container_opt_out(#[case] env: Value, #[case] want: Option<&str>) {
        let pod = json!({"spec": {"containers": [{"name": "app", "env": env}]}});
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        assert_eq!(opt_out(&view.containers[0], &Drawn::default()), want);
    }

    #[test]
    fn escape_doubles_dollars() {
        assert_eq!(escape("a$(B)$"), "a$$(B)$$");
    }

    #[rstest::rstest]
    #[case("team=shop", None)]
    #[case("team", Some("has no '='"))]
    #[case("url=a=b", Some("has a second, unencoded '='"))]
    #[case("note=50%", Some("has a '%' not followed by two hex digits"))]
    #[case("note=50%2", Some("has a '%' not followed by two hex digits"))]
    #[case("note=50%25", None)]
    #[case("note=%zz", Some("has a '%' not followed by two hex digits"))]
    fn pairs_a_strict_sdk_would_refuse_are_named(#[case] pair: &str, #[case] want: Option<&str>) {
        assert_eq!(strict_problem(pair), want);
    }

    #[test]
    fn a_value_over_255_characters_is_refused_by_a_strict_sdk() {
        assert_eq!(strict_problem(&format!("k={}", "v".repeat(255))), None);
        assert_eq!(strict_problem(&format!("k={}", "v".repeat(256))), Some("has a value over 255 characters"));
    }
}
