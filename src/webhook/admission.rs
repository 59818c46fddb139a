//! Review in, response out: AdmissionReview bytes → (object, context) → engine → AdmissionReview response bytes.
//!
//! The object is kept as the raw JSON the API server sent; only the envelope goes through kube-core's types, so
//! v1beta1 reviews are answered as v1beta1.

use std::fmt;

use base64::Engine;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::Value;

use crate::cluster::namespaces::Namespaces;
use crate::engine::config::Config;
use crate::engine::inject::{self, Target};
use crate::engine::policy::NamespaceMeta;
use crate::engine::report::Explanation;
use crate::engine::values::KubeVersion;
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
    /// Operations in the returned patch.
    pub patch_ops: usize,
    /// Warnings returned.
    pub warnings: Vec<String>,
    /// The engine's explanation, when it ran.
    pub explanation: Option<Explanation>,
}

/// A parsed review: the typed envelope, the raw object, and whether the engine will look at it.
#[derive(Debug)]
pub struct Review {
    request: AdmissionRequest<DynamicObject>,
    object: Value,
    /// For an UPDATE of a workload, its pod template before the update (all that is kept of `oldObject`).
    old_template: Option<Value>,
    /// The kind to instrument, or why this request is left alone.
    target: Result<WorkloadKind, String>,
    namespace: Option<String>,
}

impl Review {
    /// Parses an AdmissionReview body and decides whether it is one the engine handles under `config`.
    pub fn parse(body: &[u8], config: &Config) -> Result<Self, Malformed> {
        let (request, object, old_object) = parse(body)?;
        let target = target_kind(&request, config);
        let old_template = match (&target, &request.operation) {
            (Ok(kind), Operation::Update) => {
                Some(old_object.as_ref().and_then(|o| inject::template_of(o, *kind)).cloned().unwrap_or(Value::Null))
            }
            _ => None,
        };
        let namespace = request
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned))
            .filter(|n| !n.is_empty());
        Ok(Self { request, object, old_template, target, namespace })
    }

    /// The namespace whose policy the engine needs, when it will run on this review.
    pub fn policy_namespace(&self) -> Option<&str> {
        match self.target {
            Ok(_) if self.object.is_object() => Some(self.namespace.as_deref().unwrap_or("default")),
            _ => None,
        }
    }

    /// Answers the review with the namespace's labels and annotations (empty when unknown), the API server's
    /// version when known, and warnings found on the way (e.g. a namespace that could not be looked up).
    pub fn answer(
        self,
        config: &Config,
        ns: &NamespaceMeta,
        server_version: Option<KubeVersion>,
        notes: Vec<String>,
    ) -> Answer {
        let Self { request, object, old_template, target, namespace } = self;
        let meta = |key: &str| {
            object.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty())
        };
        let name = [Some(request.name.as_str()).filter(|n| !n.is_empty()), meta("name"), meta("generateName")]
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut answer = Answer {
            body: Vec::new(),
            patch: None,
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            operation: operation_name(&request.operation),
            namespace: namespace.clone().unwrap_or_default(),
            name,
            dry_run: request.dry_run,
            decision: Decision::Ignored,
            reason: String::new(),
            patch_ops: 0,
            warnings: notes,
            explanation: None,
        };
        let mut response = AdmissionResponse::from(&request);

        match target {
            Err(reason) => answer.reason = reason,
            Ok(_) if !object.is_object() => {
                answer.decision = Decision::Skipped;
                answer.reason = "request.object is missing".to_owned();
                answer.warnings.push("otel-injector: request.object is missing; nothing to instrument".to_owned());
            }
            Ok(kind) => {
                let namespace = namespace.as_deref().unwrap_or("default");
                let old_template = old_template.as_ref();
                let target = Target { kind, namespace, ns, config, server_version, old_template };
                let mutation = inject::mutate(&object, &target);
                answer.patch_ops = mutation.patch.0.len();
                answer.warnings.extend(mutation.warnings.into_vec());
                answer.reason = mutation.explanation.decision.reason.clone();
                answer.decision = match (answer.patch_ops, mutation.explanation.decision.inject) {
                    (0, true) => Decision::Unchanged,
                    (0, false) => Decision::Skipped,
                    _ => Decision::Instrumented,
                };
                answer.explanation = Some(mutation.explanation);
                if answer.patch_ops > 0 {
                    response = match response.with_patch(mutation.patch) {
                        Ok(patched) => patched,
                        Err(e) => {
                            answer.decision = Decision::Skipped;
                            answer.warnings.push(format!("otel-injector: patch not sent: {e}"));
                            AdmissionResponse::from(&request)
                        }
                    };
                }
            }
        }
        if !answer.warnings.is_empty() {
            response.warnings = Some(answer.warnings.clone());
        }
        (answer.body, answer.patch) = encode(response);
        answer
    }
}

/// Answers one AdmissionReview body, with namespace policy from `namespaces`' cache (no lookups) and no server
/// version: what `preview` and the benches use; the server does the same in steps.
pub fn review(body: &[u8], config: &Config, namespaces: &dyn Namespaces) -> Result<Answer, Malformed> {
    let review = Review::parse(body, config)?;
    let ns = review.policy_namespace().and_then(|n| namespaces.get(n)).unwrap_or_default();
    Ok(review.answer(config, &ns, None, Vec::new()))
}

/// Splits the body into the typed request envelope, the raw object and the raw old object.
fn parse(body: &[u8]) -> Result<(AdmissionRequest<DynamicObject>, Value, Option<Value>), Malformed> {
    let mut root: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("invalid JSON: {e}")))?;
    let envelope = root.as_object_mut().ok_or_else(|| Malformed("the body is not a JSON object".to_owned()))?;
    let field = |key: &str| envelope.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if !matches!(api_version.as_str(), "admission.k8s.io/v1" | "admission.k8s.io/v1beta1") || kind != "AdmissionReview"
    {
        return Err(Malformed(format!(
            "expected kind AdmissionReview in admission.k8s.io/v1 or v1beta1, got kind {kind:?} apiVersion {api_version:?}"
        )));
    }
    let request = envelope
        .get_mut("request")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Malformed("request is missing".to_owned()))?;
    let object = request.remove("object").unwrap_or(Value::Null);
    let old_object = request.remove("oldObject").filter(|o| !o.is_null());
    let review: AdmissionReview<DynamicObject> =
        serde_path_to_error::deserialize(root).map_err(|e| Malformed(format!("{}: {}", e.path(), e.inner())))?;
    let request = review.try_into().map_err(|_| Malformed("request is missing".to_owned()))?;
    Ok((request, object, old_object))
}

/// The kind to instrument, or why this request is not ours to mutate.
fn target_kind(request: &AdmissionRequest<DynamicObject>, config: &Config) -> Result<WorkloadKind, String> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Err(format!("{} is never mutated", operation_name(&request.operation)));
    }
    if let Some(sub) = request.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return Err(format!("subresource {sub} is never mutated"));
    }
    let gvk = &request.kind;
    let kind = WorkloadKind::from_group_kind(&gvk.group, &gvk.kind)
        .ok_or_else(|| format!("kind {} is not a workload", gvk.kind))?;
    if !config.handles(kind) {
        return Err(format!("{kind} is not listed in the config's workloads"));
    }
    if request.operation == Operation::Update && !kind.mutable_on_update() {
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

/// The response review as JSON, with `patch` as standard base64 (kube-core would write a number array), and the
/// patch bytes themselves.
fn encode(mut response: AdmissionResponse) -> (Vec<u8>, Option<Vec<u8>>) {
    let patch = response.patch.take();
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(bytes), Some(body)) = (&patch, review.get_mut("response").and_then(Value::as_object_mut)) {
        body.insert("patch".to_owned(), base64::engine::general_purpose::STANDARD.encode(bytes).into());
    }
    (serde_json::to_vec(&review).unwrap_or_default(), patch)
}

#[cfg(test)]
mod tests;
