//! Review in, response out: AdmissionReview bytes → (object, context) → engine → AdmissionReview response bytes.
//!
//! Lean by design, so a 3 MiB object costs little more than its bytes: the envelope is deserialized straight from
//! the body with its strings borrowed, `object` stays a raw slice of the body that the engine reads into its own
//! lean view, and of `oldObject` only the pod template's slice is kept, for an UPDATE's comparison. The answer is
//! written directly, in the version of the review (v1 or v1beta1), with the patch as standard base64.

use std::fmt;

use kube::core::admission::Operation;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::cluster::namespaces::Namespaces;
use crate::engine::config::Config;
use crate::engine::explanation::Explanation;
use crate::engine::inject::env_from::ConfigMaps;
use crate::engine::inject::{self, Stop, Target};
use crate::engine::pod_view::{self, Obj, S, Str};
use crate::engine::policy::NamespaceMeta;
use crate::engine::syntax::KubeVersion;
use crate::engine::workload::WorkloadKind;

/// The review cannot be read; answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed AdmissionReview: {0}")]
pub struct Malformed(pub String);

/// What the webhook did with a review (the `decision` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Patched.
    Instrumented,
    /// To be instrumented, but nothing left to change (reinvocation, pod of an instrumented workload).
    Unchanged,
    /// Policy (or an unreadable object) says no.
    Skipped,
    /// Not ours to look at: DELETE, CONNECT, subresources, other kinds, Pod UPDATE.
    Ignored,
}

impl Decision {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instrumented => "instrumented",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Ignored => "ignored",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one review, with what logs, spans and metrics need to know about it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The AdmissionReview response, ready for the wire.
    pub body: Vec<u8>,
    /// The JSON Patch in it, before base64 (what `preview -o patch` prints).
    pub patch: Option<Vec<u8>>,
    /// `request.uid`.
    pub uid: String,
    /// `request.kind.kind`.
    pub kind: String,
    /// `request.operation`.
    pub operation: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name, or its `generateName`.
    pub name: String,
    /// `request.dryRun`.
    pub dry_run: bool,
    /// What was done.
    pub decision: Decision,
    /// Why, in a few words.
    pub reason: String,
    /// Why, as a code (see [`crate::engine::policy::Cause`]; `not_applicable` for reviews the engine does not look
    /// at, `object_missing` when there is no object).
    pub cause: &'static str,
    /// Operations in the returned patch.
    pub patch_ops: usize,
    /// Warnings returned.
    pub warnings: Vec<String>,
    /// The engine's explanation, when it ran.
    pub explanation: Option<Explanation>,
}

/// `request.object` kept as text (`None`: absent or null).
#[derive(Debug, Default)]
struct Object<'a>(Option<&'a RawValue>);

impl Object<'_> {
    /// Whether there is a JSON object to look at.
    fn is_object(&self) -> bool {
        self.0.is_some_and(|raw| raw.get().starts_with('{'))
    }

    /// `metadata.namespace`, when set.
    fn namespace(&self) -> Option<String> {
        pod_view::metadata_str(self.0?.get(), "namespace")
    }
}

/// A parsed review: the envelope, the raw object, and whether the engine will look at it.
#[derive(Debug)]
pub(crate) struct Review<'a> {
    api_version: Str<'a>,
    uid: Str<'a>,
    kind: Str<'a>,
    operation: Operation,
    name: Option<Str<'a>>,
    dry_run: bool,
    object: Object<'a>,
    /// For an UPDATE of a workload, its pod template before the update (all that is kept of `oldObject`).
    old_template: Option<&'a str>,
    /// The kind to instrument, or why this request is left alone.
    target: Result<WorkloadKind, String>,
    namespace: Option<String>,
}

impl<'a> Review<'a> {
    /// Parses an AdmissionReview body and decides whether it is one the engine handles under `config`.
    pub fn parse(body: &'a [u8], config: &Config) -> Result<Self, Malformed> {
        let text = std::str::from_utf8(body).map_err(|e| Malformed(format!("invalid JSON: not UTF-8 ({e})")))?;
        // Only the fields the webhook reads, borrowed from the body, the object kept as text for the engine; a review
        // that cannot be read is read once more, tracking where, to name the problem.
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = match Obj::<ReviewRaw<'a>>::deserialize(&mut de) {
            Ok(Obj(raw)) => {
                de.end().map_err(|e| Malformed(format!("invalid JSON: {e}")))?;
                raw
            }
            Err(_) => return Err(Self::malformed(text)),
        };
        let api_version = raw.api_version.map(|s| s.0).unwrap_or_default();
        let kind = raw.kind.map(|s| s.0).unwrap_or_default();
        if !matches!(api_version.as_ref(), "admission.k8s.io/v1" | "admission.k8s.io/v1beta1")
            || kind != "AdmissionReview"
        {
            return Err(Malformed(format!(
                "expected kind AdmissionReview in admission.k8s.io/v1 or v1beta1, got kind {kind:?} apiVersion {api_version:?}"
            )));
        }
        let Obj(request) = raw.request.ok_or_else(|| Malformed("request is missing".to_owned()))?;
        let object = request.object;
        let sub_resource = request.sub_resource.map(|s| s.0);
        let target = target_kind(&request.operation, sub_resource.as_deref(), &request.kind, config);
        let old_template = match (&target, &request.operation) {
            (Ok(kind), Operation::Update) => {
                Some(request.old_object.and_then(|o| pod_view::template_json(o.get(), *kind)).unwrap_or("null"))
            }
            _ => None,
        };
        let namespace = request
            .namespace
            .map(|s| s.0.into_owned())
            .filter(|n| !n.is_empty())
            .or_else(|| object.namespace())
            .filter(|n| !n.is_empty());
        Ok(Self {
            api_version,
            uid: request.uid.0,
            kind: request.kind.kind.0,
            operation: request.operation,
            name: request.name.map(|s| s.0).filter(|n| !n.is_empty()),
            dry_run: request.dry_run.unwrap_or(false),
            object,
            old_template,
            target,
            namespace,
        })
    }

    /// What is wrong with a review that could not be read, naming where.
    #[cold]
    fn malformed(text: &str) -> Malformed {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Obj<ReviewRaw<'_>>>(&mut de) {
            Err(e) if e.inner().is_data() && e.path().to_string() != "." => {
                Malformed(format!("{}: {}", e.path(), e.inner()))
            }
            Err(e) if e.inner().is_data() => Malformed("the body is not a JSON object".to_owned()),
            Err(e) => Malformed(format!("invalid JSON: {}", e.inner())),
            Ok(_) => Malformed("invalid JSON".to_owned()),
        }
    }

    /// `request.uid`.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// `request.kind.kind`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `request.operation`.
    pub fn operation(&self) -> &'static str {
        operation_name(&self.operation)
    }

    /// `request.namespace`, when set.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `request.dryRun`.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The namespace whose policy the engine needs, when it will run on this review.
    pub(crate) fn policy_namespace(&self) -> Option<&str> {
        match self.target {
            Ok(_) if self.object.is_object() => Some(self.namespace.as_deref().unwrap_or("default")),
            _ => None,
        }
    }

    /// The ConfigMaps the object's containers draw variables from, with their prefixes, when the engine will run.
    pub fn config_map_refs(&self) -> Vec<(String, Vec<String>)> {
        match (&self.target, self.object.0) {
            (Ok(kind), Some(raw)) if self.object.is_object() => pod_view::config_map_refs(raw.get(), *kind),
            _ => Vec::new(),
        }
    }

    /// Answers the review with the namespace's labels and annotations (empty when unknown), the API server's
    /// version when known, and warnings found on the way (e.g. a namespace that could not be looked up); `stop`
    /// tells the engine when the caller has stopped waiting.
    pub fn answer(
        self,
        config: &Config,
        ns: &NamespaceMeta,
        server_version: Option<KubeVersion>,
        notes: Vec<String>,
        stop: Stop<'_>,
        config_maps: Option<&ConfigMaps>,
    ) -> Answer {
        let mut answer = Answer {
            body: Vec::new(),
            patch: None,
            uid: self.uid.to_string(),
            kind: self.kind.to_string(),
            operation: operation_name(&self.operation),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.as_deref().unwrap_or_default().to_owned(),
            dry_run: self.dry_run,
            decision: Decision::Ignored,
            reason: String::new(),
            cause: "not_applicable",
            patch_ops: 0,
            warnings: notes,
            explanation: None,
        };
        let object = if self.object.is_object() { Some(self.object) } else { None };
        match (&self.target, object) {
            (Err(reason), _) => answer.reason = reason.clone(),
            (Ok(_), None) => {
                answer.decision = Decision::Skipped;
                answer.reason = "request.object is missing".to_owned();
                answer.cause = "object_missing";
                answer.warnings.push("otel-injector: request.object is missing; nothing to instrument".to_owned());
            }
            (Ok(kind), Some(object)) => {
                let namespace = self.namespace.as_deref().unwrap_or("default");
                let old_template = self.old_template;
                let target =
                    Target { kind: *kind, namespace, ns, config, server_version, old_template, stop, config_maps };
                let mutation = inject::mutate_json(object.0.map_or("null", RawValue::get), &target);
                if answer.name.is_empty() {
                    answer.name = mutation.name.unwrap_or_default();
                }
                answer.patch_ops = mutation.patch.0.len();
                answer.warnings.extend(mutation.warnings.into_vec());
                answer.reason = mutation.explanation.decision.reason.clone();
                answer.cause = mutation.explanation.decision.cause.as_str();
                answer.decision = match (answer.patch_ops, mutation.explanation.decision.inject) {
                    (0, true) => Decision::Unchanged,
                    (0, false) => Decision::Skipped,
                    _ => Decision::Instrumented,
                };
                answer.explanation = Some(mutation.explanation);
                if answer.patch_ops > 0 {
                    answer.patch = Some(mutation.patch.to_json());
                }
            }
        }
        answer.body = encode(&self.api_version, &answer);
        answer
    }
}

/// Answers one AdmissionReview body, with namespace policy from `namespaces`' cache (no lookups) and no server
/// version: what `preview` and the benches use; the server does the same in steps.
pub fn review(body: &[u8], config: &Config, namespaces: &dyn Namespaces) -> Result<Answer, Malformed> {
    let review = Review::parse(body, config)?;
    let ns = review.policy_namespace().and_then(|n| namespaces.get(n)).unwrap_or_default();
    Ok(review.answer(config, &ns, None, Vec::new(), Stop::default(), None))
}

/// The parts of an AdmissionReview the webhook reads; everything else is skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRaw<'a> {
    #[serde(borrow, default)]
    api_version: Option<S<'a>>,
    #[serde(borrow, default)]
    kind: Option<S<'a>>,
    #[serde(borrow, default)]
    request: Option<Obj<RequestRaw<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestRaw<'a> {
    #[serde(borrow)]
    uid: S<'a>,
    #[serde(borrow)]
    kind: GroupKind<'a>,
    #[allow(dead_code)]
    resource: IgnoredAny,
    #[serde(borrow, default)]
    sub_resource: Option<S<'a>>,
    #[serde(borrow, default)]
    name: Option<S<'a>>,
    #[serde(borrow, default)]
    namespace: Option<S<'a>>,
    operation: Operation,
    #[allow(dead_code)]
    user_info: IgnoredAny,
    #[serde(borrow, default, deserialize_with = "raw_object")]
    object: Object<'a>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: Option<bool>,
}

/// `request.object` kept as text (`null` is missing).
fn raw_object<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Object<'a>, D::Error> {
    let raw = <&'a RawValue>::deserialize(d)?;
    Ok(Object(Some(raw).filter(|raw| raw.get() != "null")))
}

#[derive(Deserialize)]
struct GroupKind<'a> {
    #[serde(borrow, default)]
    group: S<'a>,
    #[serde(borrow)]
    kind: S<'a>,
}

/// The kind to instrument, or why this request is not ours to mutate.
fn target_kind(
    operation: &Operation,
    sub_resource: Option<&str>,
    gvk: &GroupKind<'_>,
    config: &Config,
) -> Result<WorkloadKind, String> {
    if !matches!(operation, Operation::Create | Operation::Update) {
        return Err(format!("{} is never mutated", operation_name(operation)));
    }
    if let Some(sub) = sub_resource.filter(|s| !s.is_empty()) {
        return Err(format!("subresource {sub} is never mutated"));
    }
    let kind = WorkloadKind::from_group_kind(&gvk.group.0, &gvk.kind.0)
        .ok_or_else(|| format!("kind {} is not a workload", gvk.kind.0))?;
    if !config.handles(kind) {
        return Err(format!("{kind} is not listed in the config's workloads"));
    }
    if *operation == Operation::Update && !kind.mutable_on_update() {
        return Err("Pod UPDATE is never mutated (a Pod's spec is immutable)".to_owned());
    }
    Ok(kind)
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The response review in the request's version, with `patch` as standard base64 (fields in a fixed order),
/// written straight into the answer's bytes.
fn encode(api_version: &str, answer: &Answer) -> Vec<u8> {
    use crate::engine::json_string;
    let patch_len = answer.patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut out = String::with_capacity(160 + answer.uid.len() + patch_len);
    out.push_str("{\"apiVersion\":");
    json_string::push(&mut out, api_version);
    out.push_str(",\"kind\":\"AdmissionReview\",\"response\":{\"allowed\":true");
    if let Some(patch) = &answer.patch {
        // Base64 never needs escaping inside a JSON string. Encoded with SIMD where the CPU has it: the patch is most
        // of the answer.
        out.push_str(",\"patch\":\"");
        base64_simd::STANDARD.encode_append(patch, &mut out);
        out.push_str("\",\"patchType\":\"JSONPatch\"");
    }
    out.push_str(",\"status\":{},\"uid\":");
    json_string::push(&mut out, &answer.uid);
    if !answer.warnings.is_empty() {
        out.push_str(",\"warnings\":[");
        for (i, warning) in answer.warnings.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string::push(&mut out, warning);
        }
        out.push(']');
    }
    out.push_str("}}");
    out.into_bytes()
}

#[cfg(test)]
mod tests;
