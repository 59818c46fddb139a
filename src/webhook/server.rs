//! The HTTP edge: `POST /mutate` over TLS, `/healthz`, `/readyz` and `/metrics` on the plain port.
//!
//! Every HTTP status is decided in [`RequestError::status`]; a problem with the object itself is never an HTTP
//! error, it is a warning on an allowed response (see [`crate::webhook::admission`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tracing::{Instrument, field::Empty};

use crate::cluster::namespaces::{Fetched, Namespaces};
use crate::cluster::version::ServerVersion;
use crate::engine::config::Config;
use crate::engine::policy::{NamespaceMeta, clip};
use crate::engine::values;
use crate::telemetry::metrics::CacheState;
use crate::telemetry::metrics::{AdmissionLabels, Metrics};
use crate::webhook::admission::{Answer, Decision, Malformed, Review};

/// Bodies above this size are parsed off the async workers.
const BLOCKING_THRESHOLD: usize = 512 * 1024;

/// The longest lookup of a namespace the cache has not seen.
const NAMESPACE_LOOKUP: Duration = Duration::from_secs(1);

/// How the server listens and protects itself.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The TLS webhook address.
    pub listen: SocketAddr,
    /// The plain health and metrics address.
    pub metrics_listen: SocketAddr,
    /// Certificate and key.
    pub tls: Arc<rustls::ServerConfig>,
    /// Longest time for a TLS handshake, the request headers, or a whole body.
    pub read_timeout: Duration,
    /// Reviews handled at once; more are answered 503 at once rather than queued past the caller's deadline.
    pub max_in_flight: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force (swappable for reloads).
    pub config: Arc<ArcSwap<Config>>,
    /// Namespace labels and annotations.
    pub namespaces: Arc<dyn Namespaces>,
    /// The API server's version, when a cluster is configured and it has been read.
    pub server_version: Arc<ServerVersion>,
    /// Whether a cluster is configured: then `/readyz` also waits for the server version.
    pub cluster: bool,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Set once certificates are loaded and listeners bound.
    pub ready: Arc<AtomicBool>,
}

impl AppState {
    /// State for `config` and `namespaces` without a cluster, not yet ready.
    pub fn new(config: Config, namespaces: Arc<dyn Namespaces>) -> Self {
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            namespaces,
            server_version: Arc::new(ServerVersion::default()),
            cluster: false,
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Why the webhook is not ready, if it is not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if !self.ready.load(Ordering::Acquire) {
            Some("listeners not started")
        } else if !self.namespaces.synced() {
            Some("namespace cache not synced")
        } else if self.cluster && self.server_version.get().is_none() {
            Some("API server version not read yet")
        } else {
            None
        }
    }
}

/// A request answered with an HTTP error: one line of text saying why.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
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
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Read(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooLarge(_) => "too_large",
            Self::Timeout(_) => "timeout",
            Self::Read(_) => "read",
            Self::Malformed(_) => "malformed",
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        (self.status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{self}\n")).into_response()
    }
}

/// `?timeout=10s`, the API server's deadline for this call.
#[derive(Debug, Default, Deserialize)]
struct MutateParams {
    timeout: Option<String>,
}

/// The webhook router: `POST /mutate`, guarded by a load-shedding concurrency limit.
pub fn webhook_router(state: AppState, read_timeout: Duration, max_in_flight: usize) -> Router {
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new({
            let metrics = state.metrics.clone();
            move |_: tower::BoxError| {
                let metrics = metrics.clone();
                async move {
                    metrics.rejected("overloaded");
                    (StatusCode::SERVICE_UNAVAILABLE, "webhook overloaded: too many reviews in flight, retry\n")
                }
            }
        }))
        .load_shed()
        .concurrency_limit(max_in_flight.max(1));
    Router::new().route("/mutate", post(mutate)).layer(overload).with_state((state, read_timeout))
}

/// The operations router: `/healthz`, `/readyz`, `/metrics`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.not_ready() {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
        None => "ok\n".into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let ns = &state.namespaces;
    let cache = CacheState { namespaces: ns.len(), synced: ns.synced(), since_last_event: ns.since_last_event() };
    state.metrics.observe_cache(cache);
    ([(header::CONTENT_TYPE, content_type)], state.metrics.encode()).into_response()
}

async fn mutate(
    State((state, read_timeout)): State<(AppState, Duration)>,
    Query(params): Query<MutateParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "admission",
        uid = Empty,
        kind = Empty,
        namespace = Empty,
        name = Empty,
        operation = Empty,
        dry_run = Empty,
        decision = Empty,
        containers = Empty,
        patch_ops = Empty
    );
    let deadline = params.timeout.as_deref().and_then(|t| values::parse_duration(t).ok());
    // Leave a margin of the caller's deadline for the answer itself.
    let read_timeout = deadline.map_or(read_timeout, |d| read_timeout.min(d.mul_f32(0.8)));
    let deadline = deadline.map(|d| started + d);
    match answer(&state, &headers, body, read_timeout, deadline).instrument(span.clone()).await {
        Ok(answer) => {
            record(&span, &answer);
            let labels = AdmissionLabels {
                kind: metric_kind(&answer.kind),
                operation: answer.operation.to_owned(),
                decision: answer.decision.as_str().to_owned(),
            };
            state.metrics.admitted(labels, answer.warnings.len(), started.elapsed());
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(e) => {
            state.metrics.rejected(e.label());
            span.in_scope(|| tracing::warn!(status = e.status().as_u16(), error = %e, "review rejected"));
            e.into_response()
        }
    }
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    read_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Answer, RequestError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(RequestError::UnsupportedMediaType(content_type.to_owned()));
    }
    let config = state.config.load_full();
    let limit = config.max_request_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(RequestError::TooLarge(limit));
    }
    let bytes = match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => return Err(RequestError::Timeout(read_timeout)),
        Ok(Err(e)) if is_length_limit(&e) => return Err(RequestError::TooLarge(limit)),
        Ok(Err(e)) => return Err(RequestError::Read(e.to_string())),
        Ok(Ok(bytes)) => bytes,
    };
    let large = bytes.len() > BLOCKING_THRESHOLD;
    let review = heavy(large, || Review::parse(&bytes, &config))?;
    let (ns, notes) = match review.policy_namespace() {
        Some(name) => namespace_policy(state, name, deadline).await,
        None => (Arc::default(), Vec::new()),
    };
    let version = state.server_version.get();
    Ok(heavy(large, || review.answer(&config, &ns, version, notes)))
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
    let budget =
        deadline.map_or(NAMESPACE_LOOKUP, |d| NAMESPACE_LOOKUP.min(d.saturating_duration_since(Instant::now()) / 2));
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

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn record(span: &tracing::Span, a: &Answer) {
    span.record("uid", a.uid.as_str());
    span.record("kind", a.kind.as_str());
    span.record("namespace", a.namespace.as_str());
    span.record("name", a.name.as_str());
    span.record("operation", a.operation);
    span.record("dry_run", a.dry_run);
    span.record("decision", a.decision.as_str());
    span.record("patch_ops", a.patch_ops);
    if let Some(explanation) = &a.explanation {
        span.record("containers", explanation.instrumented().collect::<Vec<_>>().join(",").as_str());
    }
    span.in_scope(|| {
        if a.decision == Decision::Ignored {
            tracing::debug!(reason = %a.reason, "admitted");
        } else {
            tracing::info!(reason = %a.reason, warnings = ?a.warnings, "admitted");
        }
    });
}

/// Bounded `kind` label values.
fn metric_kind(kind: &str) -> String {
    let known = crate::engine::workload::WorkloadKind::ALL.iter().any(|k| k.as_str() == kind);
    if known { kind.to_owned() } else { "other".to_owned() }
}

/// Binding or serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running webhook: both listeners bound, serving until [`Server::shutdown`].
pub struct Server {
    webhook_addr: SocketAddr,
    metrics_addr: SocketAddr,
    handle: Handle<SocketAddr>,
    shutdown_grace: Duration,
    ops_stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds both listeners and starts serving.
    pub async fn start(options: ServeOptions, state: AppState) -> Result<Self, ServeError> {
        let bind = |addr: SocketAddr| {
            let listener = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
            listener.set_nonblocking(true).map_err(|source| ServeError::Bind { addr, source })?;
            Ok::<_, ServeError>(listener)
        };
        let webhook_listener = bind(options.listen)?;
        let metrics_listener = bind(options.metrics_listen)?;
        let local =
            |l: &std::net::TcpListener, addr| l.local_addr().map_err(|source| ServeError::Bind { addr, source });
        let webhook_addr = local(&webhook_listener, options.listen)?;
        let metrics_addr = local(&metrics_listener, options.metrics_listen)?;

        let handle = Handle::new();
        let acceptor =
            RustlsAcceptor::new(RustlsConfig::from_config(options.tls)).handshake_timeout(options.read_timeout);
        let mut server = axum_server::from_tcp(webhook_listener)
            .map_err(|source| ServeError::Bind { addr: webhook_addr, source })?
            .acceptor(acceptor)
            .handle(handle.clone());
        server.http_builder().http1().timer(TokioTimer::new()).header_read_timeout(options.read_timeout);
        server.http_builder().http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
        let app = webhook_router(state.clone(), options.read_timeout, options.max_in_flight);
        let webhook = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "webhook listener failed");
            }
        });

        let (ops_stop, mut stopped) = tokio::sync::watch::channel(false);
        let ops_listener = tokio::net::TcpListener::from_std(metrics_listener)
            .map_err(|source| ServeError::Bind { addr: metrics_addr, source })?;
        let ops = ops_router(state.clone());
        let ops = tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(ops_listener, ops).with_graceful_shutdown(stop).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });

        state.ready.store(true, Ordering::Release);
        tracing::info!(%webhook_addr, %metrics_addr, "serving");
        Ok(Self {
            webhook_addr,
            metrics_addr,
            handle,
            shutdown_grace: options.shutdown_grace,
            ops_stop,
            tasks: vec![webhook, ops],
        })
    }

    /// Where the TLS webhook listens.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
    }

    /// Where health and metrics are served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Stops accepting, lets in-flight reviews finish (up to the grace period), then returns.
    pub async fn shutdown(self) {
        tracing::info!(grace = ?self.shutdown_grace, "draining");
        self.handle.graceful_shutdown(Some(self.shutdown_grace));
        let _ = self.ops_stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_decided_in_one_place() {
        assert_eq!(
            RequestError::UnsupportedMediaType("text/plain".into()).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(RequestError::TooLarge(1).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(RequestError::Timeout(Duration::from_secs(1)).status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(RequestError::Malformed(Malformed("x".into())).status(), StatusCode::BAD_REQUEST);
        assert_eq!(metric_kind("Pod"), "Pod");
        assert_eq!(metric_kind("Ingress"), "other");
    }
}
