//! `POST /mutate`: one review in, one answer out, with every HTTP status decided in [`RequestError::status`].
//!
//! Memory has a hard ceiling whatever arrives: a body is read against a byte budget (see [`super::body`]) and held
//! until the answer is written; the review is then read lean (see [`super::admission`]). Receiving a body does not
//! count against the admission concurrency limit, which only bounds reviews being worked on and sheds the excess at
//! once (503). A body over the limit is read and thrown away (up to a bound) before the 413, so every client sees
//! the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, field::Empty};

use super::admission::{Answer, Decision, Malformed, Review};
use super::body::{self, Outgoing, Refused};
use super::state::AppState;
use crate::cluster::config_maps::ConfigMapSource;
use crate::cluster::namespaces::Fetched;
use crate::engine::inject::Stop;
use crate::engine::inject::env_from::ConfigMaps;
use crate::engine::policy::{Cause, NamespaceMeta};
use crate::engine::syntax;
use crate::engine::warnings::clip;
use crate::telemetry::metrics::AdmissionLabels;
use crate::telemetry::traces;

/// Bodies above this size are parsed with the worker thread's other tasks moved away.
const LARGE: usize = 512 * 1024;

/// The longest lookup on an admission's way (a namespace the cache has not seen, a ConfigMap a pod draws from).
const LOOKUP: Duration = Duration::from_secs(1);

/// A request answered with an HTTP error: one line of text saying why.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// Not `application/json`.
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    /// Over `maxRequestBytes`.
    #[error("request body exceeds the {0}-byte limit (maxRequestBytes)")]
    TooLarge(usize),
    /// The body did not arrive in time.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    Read(String),
    /// The query string is not what the API server sends.
    #[error("bad query: {0}")]
    Query(String),
    /// The body arrived slower than the minimum rate.
    #[error("request body arriving slower than {} KiB/s", body::MIN_RATE / 1024)]
    TooSlow,
    /// Every body byte the webhook may hold is taken, until the caller's deadline.
    #[error("webhook busy: request bodies in memory at their limit, retry")]
    Busy,
    /// Too many reviews at work.
    #[error("webhook overloaded: too many reviews in flight, retry")]
    Overloaded,
    /// The caller's `?timeout=` passed before the answer was ready: nobody is waiting for it any more.
    #[error("the caller's deadline ({0:?}) passed before the review was answered")]
    Deadline(Duration),
    /// The review is not a valid AdmissionReview.
    #[error(transparent)]
    Malformed(#[from] Malformed),
}

impl RequestError {
    /// The one place an HTTP status is chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) | Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::Read(_) | Self::Query(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Busy | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `reason` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooLarge(_) => "too_large",
            Self::Timeout(_) => "timeout",
            Self::TooSlow => "too_slow",
            Self::Read(_) => "read",
            Self::Query(_) => "bad_query",
            Self::Busy => "busy",
            Self::Overloaded => "overloaded",
            Self::Deadline(_) => "deadline",
            Self::Malformed(_) => "malformed",
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let text = format!("{}\n", one_line(&self.to_string()));
        let mut response = (self.status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
        if matches!(self, Self::TooLarge(_) | Self::Busy | Self::TooSlow) {
            // The connection may still hold the rest of a body that was not read.
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        response
    }
}

/// A message as one line of at most 1000 characters, whatever the request made it quote: control characters
/// escaped, the rest clipped.
fn one_line(message: &str) -> String {
    const MAX: usize = 1000;
    let mut line = String::with_capacity(message.len().min(MAX + 4));
    let mut written = 0;
    for c in message.chars() {
        if written >= MAX {
            line.push('…');
            break;
        }
        if c.is_control() {
            let escaped = c.escape_default();
            written += escaped.len();
            line.extend(escaped);
        } else {
            written += 1;
            line.push(c);
        }
    }
    line
}

/// The API server's longest webhook `timeoutSeconds`: a longer `?timeout=` is read as this.
const LONGEST_DEADLINE: Duration = Duration::from_secs(30);

/// The caller's deadline from `?timeout=10s`: at most one, in Go duration syntax, at most [`LONGEST_DEADLINE`].
fn deadline_of(query: Option<&str>) -> Result<Option<Duration>, RequestError> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "timeout" {
            continue;
        }
        if found.is_some() {
            return Err(RequestError::Query("timeout given more than once".to_owned()));
        }
        let value = syntax::parse_duration(value).map_err(|e| RequestError::Query(format!("timeout {e}")))?;
        found = Some(value.min(LONGEST_DEADLINE));
    }
    Ok(found)
}

/// The `tracing` span of an admission, whose fields every log line inside it carries (empty until known); the
/// exported span is the [`traces::ServerSpan`].
fn admission_span() -> tracing::Span {
    tracing::info_span!(
        "admission",
        trace_id = Empty,
        span_id = Empty,
        "k8s.namespace.name" = Empty,
        "k8s.object.kind" = Empty,
        "k8s.object.name" = Empty,
        "admission.uid" = Empty,
        "admission.operation" = Empty,
        "admission.dry_run" = Empty,
        "admission.decision" = Empty,
        "admission.reason" = Empty,
        "admission.containers" = Empty,
        "admission.sidecar" = Empty,
        "admission.patch_operations" = Empty,
        "admission.warnings" = Empty,
        "http.response.status_code" = Empty,
        "error.type" = Empty,
    )
}

/// Spans of an admission that is traced: the server span alone (SPEC §9). The engine's steps had spans of their own
/// until issue 21: two more to build, encode and send for every admission, for timings of a few µs nobody read.
const SPANS_PER_ADMISSION: u64 = 1;

/// The `/mutate` handler: one server span per review (continuing the caller's `traceparent`), named and given its
/// attributes once the answer is known, and a `tracing` span with the same ids around the review's log lines. An
/// admission the tracer's gate does not let through (the collector away) gets no server span, so it costs what it
/// would without a tracer.
pub async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let traced = state.trace_ids.traced(SPANS_PER_ADMISSION);
    let span = admission_span();
    let (parts, body) = request.into_parts();
    let (server_span, ids) = traces::ServerSpan::start(&parts.headers, &state.trace_ids, traced);
    if let Some((trace_id, span_id)) = ids {
        tracing::record_all!(span, trace_id = %trace_id, span_id = %span_id);
    }
    let mut described = None;
    let recording = server_span.is_recording();
    let answered =
        answer(&state, parts.uri.query(), &parts.headers, body, started, recording.then_some(&mut described))
            .instrument(span.clone())
            .await;
    match answered {
        Ok((answer, held)) => {
            record(&span, &answer);
            if recording {
                let (name, attributes) = attributes_of(&answer);
                server_span.end(name, attributes, false);
            }
            let labels = AdmissionLabels {
                kind: metric_kind(&answer.kind),
                operation: answer.operation,
                decision: answer.decision.as_str(),
                reason: answer.cause,
            };
            let patch_bytes = answer.patch.as_ref().map(Vec::len);
            state.metrics.admitted(labels, answer.warnings.len(), patch_bytes, started.elapsed());
            state.metrics.secret_fed(answer.explanation.as_ref().map_or(0, |e| e.secret_fed));
            state.metrics.agents_added(answer.explanation.as_ref().map_or(&[], |e| &e.agents_added));
            let body = Body::new(Outgoing::new(answer.body, held));
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => {
            state.metrics.rejected(e.label());
            let status = i64::from(e.status().as_u16());
            tracing::record_all!(span, "error.type" = e.label(), "http.response.status_code" = status);
            if recording {
                let name = described.as_ref().map_or_else(|| "POST /mutate".to_owned(), Described::span_name);
                let mut attributes = described.map(Described::attributes).unwrap_or_default();
                attributes.push(KeyValue::new("error.type", e.label()));
                attributes.push(KeyValue::new("http.response.status_code", status));
                server_span.end(name, attributes, true);
            }
            span.in_scope(|| tracing::warn!(status = e.status().as_u16(), error = %e, "review rejected"));
            e.into_response()
        }
    }
}

/// What the review was about, kept for the server span of an admission that ends in an error.
struct Described {
    uid: String,
    operation: &'static str,
    dry_run: bool,
    kind: String,
    namespace: String,
}

impl Described {
    /// `CREATE Pod`: the operation and the kind, of the kinds the webhook knows (`CREATE other` for the rest: a
    /// caller must not mint span names).
    fn span_name(&self) -> String {
        span_name(self.operation, &self.kind)
    }

    fn attributes(self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("admission.uid", self.uid));
        attributes.push(KeyValue::new("admission.operation", self.operation));
        attributes.push(KeyValue::new("admission.dry_run", self.dry_run));
        attributes.push(KeyValue::new("k8s.object.kind", self.kind));
        if !self.namespace.is_empty() {
            attributes.push(KeyValue::new("k8s.namespace.name", self.namespace));
        }
        attributes
    }
}

/// The server span's name for an `operation` on a `kind`.
fn span_name(operation: &str, kind: &str) -> String {
    let kind = metric_kind(kind);
    let mut name = String::with_capacity(operation.len() + 1 + kind.len());
    name.push_str(operation);
    name.push(' ');
    name.push_str(kind);
    name
}

/// The server span's name and attributes for an answered review (never an env value, a secret or the object).
fn attributes_of(a: &Answer) -> (String, Vec<KeyValue>) {
    // Counts as i64, as the tracer had them.
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let described = Described {
        uid: a.uid.clone(),
        operation: a.operation,
        dry_run: a.dry_run,
        kind: a.kind.clone(),
        namespace: a.namespace.clone(),
    };
    let name = described.span_name();
    let mut attributes = described.attributes();
    if !a.name.is_empty() {
        attributes.push(KeyValue::new("k8s.object.name", a.name.clone()));
    }
    attributes.push(KeyValue::new("admission.decision", a.decision.as_str()));
    attributes.push(KeyValue::new("admission.reason", a.cause));
    attributes.push(KeyValue::new("admission.patch_operations", count(a.patch_ops)));
    attributes.push(KeyValue::new("admission.warnings", count(a.warnings.len())));
    attributes.push(KeyValue::new("http.response.status_code", 200_i64));
    if let Some(e) = &a.explanation {
        attributes.push(KeyValue::new("admission.containers", e.instrumented().collect::<Vec<_>>().join(",")));
        attributes.push(KeyValue::new("admission.sidecar", e.sidecar.clone()));
    }
    (name, attributes)
}

async fn answer(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    mut body: Body,
    started: Instant,
    described: Option<&mut Option<Described>>,
) -> Result<(Answer, OwnedSemaphorePermit), RequestError> {
    let limits = &state.limits;
    let given = deadline_of(query)?;
    // Leave a margin of the caller's deadline for the answer itself.
    let read_timeout = given.map_or(limits.read_timeout, |d| limits.read_timeout.min(d.mul_f32(0.8)));
    let read_until = started + read_timeout;
    let deadline = given.map(|d| started + d);
    // Once the caller has stopped waiting, no more work is done for it: checked between the steps, and by the
    // engine between containers.
    let passed = move || deadline.is_some_and(|d| Instant::now() >= d);
    let gone = || RequestError::Deadline(given.unwrap_or_default());
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(RequestError::UnsupportedMediaType(content_type.to_owned()));
    }
    let config = state.config.load_full();
    let limit = config.max_request_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        body::discard(&mut body, read_until).await;
        return Err(RequestError::TooLarge(limit));
    }
    let refused = |e| match e {
        Refused::TooLarge => RequestError::TooLarge(limit),
        Refused::Timeout => RequestError::Timeout(read_timeout),
        Refused::TooSlow => RequestError::TooSlow,
        Refused::Read(e) => RequestError::Read(e),
        Refused::Busy => RequestError::Busy,
    };
    let bytes = body::read(&mut body, declared, limit, &limits.budget, read_until).await.map_err(refused)?;
    let _working = limits.in_flight.clone().try_acquire_owned().map_err(|_| RequestError::Overloaded)?;
    if passed() {
        return Err(gone());
    }
    let large = bytes.len() > LARGE;
    let review = heavy(large, || Review::parse(&bytes, &config))?;
    describe(&review, described);
    let (ns, notes) = match review.policy_namespace() {
        Some(name) => namespace_policy(state, name, deadline).await,
        None => (Arc::default(), Vec::new()),
    };
    let config_maps = match (&state.config_maps, review.policy_namespace()) {
        (Some(source), Some(namespace)) => Some(drawn_config_maps(source.as_ref(), &review, namespace, deadline).await),
        _ => None,
    };
    if passed() {
        return Err(gone());
    }
    let version = state.server_version();
    let answer =
        heavy(large, || review.answer(&config, &ns, version, notes, Stop::when(&passed), config_maps.as_ref()));
    if answer.cause == Cause::Deadline.as_str() {
        return Err(gone());
    }
    // The review's bytes are given back; the answer's are held until it is written.
    drop(bytes);
    let held = body::hold(&limits.budget, answer.body.len(), deadline.unwrap_or(read_until)).await.map_err(refused)?;
    Ok((answer, held))
}

/// Runs `work` (which borrows the request body) in place; when it is large, the worker thread hands its other tasks
/// over first (on a multi-threaded runtime), so big reviews never stall the rest.
fn heavy<T>(large: bool, work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if large && multi_thread { tokio::task::block_in_place(work) } else { work() }
}

/// The namespace's policy metadata from the cache; a namespace it has not seen yet gets one bounded GET (about a
/// second, and at most half of what is left of the caller's deadline). When that fails the review is answered
/// without namespace policy, with a warning saying so.
async fn namespace_policy(
    state: &AppState,
    name: &str,
    deadline: Option<Instant>,
) -> (Arc<NamespaceMeta>, Vec<String>) {
    if let Some(meta) = state.namespaces.get(name) {
        return (meta, Vec::new());
    }
    let budget = lookup_budget(deadline);
    let fetched = state.namespaces.fetch(name, budget).await;
    if fetched != Fetched::Unavailable {
        state.metrics.namespace_lookup(fetched.label());
    }
    let why = match fetched {
        Fetched::Found(meta) => return (meta, Vec::new()),
        Fetched::Unavailable => return (Arc::default(), Vec::new()),
        Fetched::NotFound => "it does not exist".to_owned(),
        Fetched::TimedOut => format!("no answer within {budget:?}"),
        Fetched::Failed(e) => e,
    };
    tracing::warn!(namespace = name, reason = %why, "namespace not in the cache and not looked up; no namespace policy");
    let warning =
        format!("otel-injector: namespace {} unknown ({}); namespace policy not applied", clip(name), clip(&why));
    (Arc::default(), vec![warning])
}

/// How long a lookup on an admission's way may take: about a second, and at most half of what is left of the
/// caller's deadline.
fn lookup_budget(deadline: Option<Instant>) -> Duration {
    deadline.map_or(LOOKUP, |d| LOOKUP.min(d.saturating_duration_since(Instant::now()) / 2))
}

/// The ConfigMaps the object's containers draw variables from (`envFrom`), looked up at once, each within about a
/// second and at most half of what is left of the caller's deadline; one not found in time is `Unknown` (the engine
/// warns that its variables may be overridden).
async fn drawn_config_maps(
    source: &dyn ConfigMapSource,
    review: &Review<'_>,
    namespace: &str,
    deadline: Option<Instant>,
) -> ConfigMaps {
    let refs = review.config_map_refs();
    let budget = lookup_budget(deadline);
    let lookups = refs.iter().map(|(name, prefixes)| source.get(namespace, name, prefixes, budget));
    let found = futures::future::join_all(lookups).await;
    let mut maps = ConfigMaps::default();
    for ((name, _), found) in refs.into_iter().zip(found) {
        maps.insert(name, found);
    }
    maps
}

/// What the review was about, as soon as the envelope is read (one call into the subscriber for all of it); kept in
/// `described` too when the server span is recorded.
fn describe(review: &Review<'_>, described: Option<&mut Option<Described>>) {
    let span = tracing::Span::current();
    tracing::record_all!(
        span,
        "admission.uid" = review.uid(),
        "admission.operation" = review.operation(),
        "admission.dry_run" = review.dry_run(),
        "k8s.object.kind" = review.kind(),
        "k8s.namespace.name" = review.namespace(),
    );
    if let Some(described) = described {
        *described = Some(Described {
            uid: review.uid().to_owned(),
            operation: review.operation(),
            dry_run: review.dry_run(),
            kind: review.kind().to_owned(),
            namespace: review.namespace().unwrap_or_default().to_owned(),
        });
    }
}

fn record(span: &tracing::Span, a: &Answer) {
    // Counts as i64: the tracer turns unsigned values into strings.
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let containers = a.explanation.as_ref().map(|e| e.instrumented().collect::<Vec<_>>().join(","));
    tracing::record_all!(
        span,
        "k8s.object.name" = Some(a.name.as_str()).filter(|n| !n.is_empty()),
        "admission.decision" = a.decision.as_str(),
        "admission.reason" = a.cause,
        "admission.patch_operations" = count(a.patch_ops),
        "admission.warnings" = count(a.warnings.len()),
        "http.response.status_code" = 200_i64,
        "admission.containers" = containers.as_deref(),
        "admission.sidecar" = a.explanation.as_ref().map(|e| e.sidecar.as_str()),
    );
    span.in_scope(|| {
        if a.decision == Decision::Ignored {
            tracing::debug!(reason = %a.reason, "admitted");
        } else {
            tracing::info!(reason = %a.reason, warnings = ?a.warnings, "admitted");
        }
    });
}

/// Bounded `kind` label values.
fn metric_kind(kind: &str) -> &'static str {
    crate::engine::workload::WorkloadKind::ALL.iter().find(|k| k.as_str() == kind).map_or("other", |k| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn statuses_are_decided_in_one_place() {
        assert_eq!(
            RequestError::UnsupportedMediaType("text/plain".into()).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(RequestError::TooLarge(1).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(RequestError::Timeout(Duration::from_secs(1)).status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(RequestError::Malformed(Malformed("x".into())).status(), StatusCode::BAD_REQUEST);
        assert_eq!(RequestError::Query("x".into()).status(), StatusCode::BAD_REQUEST);
        assert_eq!(RequestError::Busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(RequestError::Overloaded.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(RequestError::Deadline(Duration::from_secs(3)).status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(metric_kind("Pod"), "Pod");
        assert_eq!(metric_kind("Ingress"), "other");
    }

    #[test]
    fn an_error_is_one_bounded_line_whatever_the_request_quotes() {
        let quoted = RequestError::Malformed(Malformed(format!("unknown variant `C\n\r\u{1}{}`", "x".repeat(5000))));
        let line = one_line(&quoted.to_string());
        assert!(!line.chars().any(char::is_control), "{line}");
        assert!(line.starts_with("malformed AdmissionReview: unknown variant `C\\n\\r\\u{1}xx"), "{line}");
        assert!((1001..=1010).contains(&line.chars().count()), "{}", line.chars().count());
        assert_eq!(one_line("plain"), "plain");
    }

    #[rstest]
    #[case(None, Ok(None))]
    #[case(Some("timeout=10s"), Ok(Some(Duration::from_secs(10))))]
    #[case(Some("foo=1&timeout=500ms"), Ok(Some(Duration::from_millis(500))))]
    #[case(Some("timeout=10s&timeout=5s"), Err("bad query: timeout given more than once"))]
    #[case(Some("timeout=soon"), Err("bad query: timeout \"soon\" is not a duration"))]
    #[case(Some("timeout="), Err("bad query: timeout \"\" needs a unit: ms, s, m or h"))]
    #[case(Some("timeout=18446744073709551615s"), Ok(Some(LONGEST_DEADLINE)))]
    #[case(Some("timeout=99999999999999h"), Ok(Some(LONGEST_DEADLINE)))]
    fn the_callers_deadline_is_read_by_us(#[case] query: Option<&str>, #[case] want: Result<Option<Duration>, &str>) {
        assert_eq!(deadline_of(query).map_err(|e| e.to_string()), want.map_err(str::to_owned));
    }
}
