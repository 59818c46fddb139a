//! The HTTP edge: `POST /mutate` over TLS, `/healthz`, `/readyz` and `/metrics` on the plain port, each served by
//! an accept loop of our own so that every connection is bounded the way a webhook in the path of every pod
//! creation must be: a cap on open connections, `TCP_NODELAY`, a TLS handshake timeout, idle and header timeouts
//! that fit the API server's keep-alive ([`super::conn`]), a low HTTP/2 stream limit, and a drain on shutdown that
//! loses no admission.
//!
//! Shutting down ([`Server::shutdown`]): `/readyz` turns false at once and HTTP/1.1 answers ask their clients to
//! reconnect (`Connection: close`) while the server keeps accepting for the drain delay (endpoint removal takes
//! seconds to reach every API server); then it stops accepting, lets in-flight reviews finish within the grace
//! period, and closes idle keep-alive connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::{HeaderValue, Version, header};
use axum::routing::post;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::conn::{Protocol, Registry, Timed, Timeouts, Tracked, Tracker};
use super::mutate::{self, Limits};
use super::ops;
use super::tls::CertStore;
use crate::cluster::namespaces::Namespaces;
use crate::cluster::version::ServerVersion;
use crate::engine::config::Config;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::TraceIds;

/// Bytes one connection may buffer ahead of the handler: the HTTP/1.1 read buffer, the HTTP/2 connection window.
const CONN_BUFFER: usize = 128 * 1024;

/// The HTTP/2 window of one stream.
const STREAM_WINDOW: u32 = 64 * 1024;

/// The kernel's send buffer of each connection (it doubles it for its own use). Left to autotune, it would take a
/// whole answer for a client that never reads (over a megabyte, charged to the pod's memory), and the write
/// timeout would never see the client stall.
const SEND_BUFFER: usize = 64 * 1024;

/// How the server listens and protects itself.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The TLS webhook address.
    pub listen: SocketAddr,
    /// The plain health and metrics address.
    pub metrics_listen: SocketAddr,
    /// Certificate and key (see [`super::tls::reloadable_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Longest time for a TLS handshake, a request's headers once it has started, or a whole body.
    pub read_timeout: Duration,
    /// How long an idle keep-alive connection stays open (longer than the API server's 90 s).
    pub idle_timeout: Duration,
    /// How long a new connection has to send its first request, its TLS handshake included.
    pub first_request_timeout: Duration,
    /// How long an answer being written may make no progress before the connection is cut off.
    pub write_timeout: Duration,
    /// Reviews worked on at once; more are answered 503 at once rather than queued past the caller's deadline.
    pub max_in_flight: usize,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Bytes of request bodies held in memory at once, across all requests.
    pub body_budget: usize,
    /// Streams at once on one HTTP/2 connection.
    pub http2_max_streams: u32,
    /// How long after SIGTERM the server keeps accepting while it reports not ready.
    pub drain_delay: Duration,
    /// How long in-flight requests may take to finish once the server stops accepting.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    /// The defaults of `serve`, for `tls`, on two addresses.
    pub fn new(listen: SocketAddr, metrics_listen: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            listen,
            metrics_listen,
            tls,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            first_request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            max_connections: 1024,
            body_budget: 16 * 1024 * 1024,
            http2_max_streams: 32,
            drain_delay: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force (swapped whole on reload).
    pub config: Arc<ArcSwap<Config>>,
    /// Namespace labels and annotations.
    pub namespaces: Arc<dyn Namespaces>,
    /// The API server's version, when a cluster is configured and it has been read.
    pub server_version: Arc<ServerVersion>,
    /// Whether a cluster is configured: then `/readyz` also waits for the server version.
    pub cluster: bool,
    /// The serving certificate, when the server can tell it has expired (`/readyz`, the `notAfter` gauge).
    pub certs: Option<Arc<CertStore>>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Set once listeners are bound.
    pub ready: Arc<AtomicBool>,
    /// Set on shutdown: `/readyz` fails and HTTP/1.1 answers carry `Connection: close`.
    pub draining: Arc<AtomicBool>,
    /// The last error accepting webhook connections, while accepting fails (e.g. file descriptors exhausted).
    accept_error: Arc<Mutex<Option<String>>>,
    /// Time and memory limits of reviews.
    pub limits: Arc<Limits>,
    /// Where each admission's trace ids come from.
    pub trace_ids: TraceIds,
}

impl AppState {
    /// State for `config` and `namespaces` without a cluster, not yet ready.
    pub fn new(config: Config, namespaces: Arc<dyn Namespaces>) -> Self {
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            namespaces,
            server_version: Arc::new(ServerVersion::default()),
            cluster: false,
            certs: None,
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            accept_error: Arc::default(),
            limits: Arc::new(Limits::new(Duration::from_secs(10), 16 * 1024 * 1024, 256)),
            trace_ids: TraceIds::default(),
        }
    }

    /// Why the webhook listener cannot accept connections, while it cannot.
    pub fn accept_error(&self) -> Option<String> {
        self.accept_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_accept_error(&self, error: Option<String>) {
        *self.accept_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Why the webhook is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if !self.ready.load(Ordering::Acquire) {
            Some("listeners not started".to_owned())
        } else if self.draining.load(Ordering::Acquire) {
            Some("shutting down".to_owned())
        } else if let Some(e) = self.accept_error() {
            Some(format!("the webhook listener cannot accept connections: {e}"))
        } else if let Some(problem) = self.certs.as_ref().and_then(|c| c.problem(now)) {
            Some(problem.to_owned())
        } else if !self.namespaces.synced() {
            Some("namespace cache not synced".to_owned())
        } else if self.cluster && self.server_version.get().is_none() {
            Some("API server version not read yet".to_owned())
        } else {
            None
        }
    }
}

/// The webhook router: `POST /mutate`.
pub fn webhook_router(state: AppState) -> Router {
    Router::new().route("/mutate", post(mutate::mutate)).with_state(state)
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
        #[source]
        source: std::io::Error,
    },
}

/// How one listener's connections are served.
#[derive(Clone)]
struct Edge {
    router: Router,
    tls: Option<TlsAcceptor>,
    state: AppState,
    builder: Arc<auto::Builder<TokioExecutor>>,
    timeouts: Timeouts,
    max_connections: usize,
    /// This listener's open connections, for choosing which gives way at the cap.
    registry: Arc<Registry>,
    shutdown_grace: Duration,
    /// Whether this is the webhook listener: its accept errors count against health, its connections are counted.
    webhook: bool,
}

impl Edge {
    /// The longest a TLS handshake may take: within the first-request, idle and read timeouts.
    fn handshake_timeout(&self) -> Duration {
        self.timeouts.first_request.min(self.timeouts.idle).min(self.timeouts.header)
    }
}

/// A running webhook: both listeners bound, serving until [`Server::shutdown`].
pub struct Server {
    webhook_addr: SocketAddr,
    metrics_addr: SocketAddr,
    state: AppState,
    drain_delay: Duration,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds both listeners and starts serving.
    pub async fn start(options: ServeOptions, state: AppState) -> Result<Self, ServeError> {
        Self::start_serving(options, state, webhook_router).await
    }

    /// Like [`Server::start`], with the webhook listener serving the router `webhook` makes instead of
    /// [`webhook_router`]; every connection, TLS and timeout setting stays the same (the benchmark's baseline, a
    /// webhook that does nothing, runs on this).
    pub async fn start_serving(
        options: ServeOptions,
        mut state: AppState,
        webhook: impl FnOnce(AppState) -> Router,
    ) -> Result<Self, ServeError> {
        let bind = |addr: SocketAddr| {
            let listener = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
            listener.set_nonblocking(true).map_err(|source| ServeError::Bind { addr, source })?;
            let local = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
            let listener = TcpListener::from_std(listener).map_err(|source| ServeError::Bind { addr, source })?;
            Ok::<_, ServeError>((listener, local))
        };
        let (webhook_listener, webhook_addr) = bind(options.listen)?;
        let (metrics_listener, metrics_addr) = bind(options.metrics_listen)?;
        state.limits = Arc::new(Limits::new(options.read_timeout, options.body_budget, options.max_in_flight));

        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's header timeout also runs on idle keep-alive connections; `Timed` does both jobs instead.
        // Bytes a connection buffers beyond the body budget are bounded per connection: hyper's HTTP/1.1 read
        // buffer, and HTTP/2 flow-control windows (hyper's 1 MiB each would let 25 connections hold 25 MiB).
        builder.http1().timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true).max_buf_size(CONN_BUFFER);
        builder
            .http2()
            .timer(TokioTimer::new())
            .initial_connection_window_size(CONN_BUFFER as u32)
            .initial_stream_window_size(STREAM_WINDOW)
            .max_concurrent_streams(options.http2_max_streams)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let timeouts = Timeouts {
            idle: options.idle_timeout,
            header: options.read_timeout,
            first_request: options.first_request_timeout,
            write: options.write_timeout,
        };
        let edge = Edge {
            router: webhook(state.clone()),
            tls: Some(TlsAcceptor::from(options.tls.clone())),
            state: state.clone(),
            builder: Arc::new(builder),
            timeouts,
            max_connections: options.max_connections,
            registry: Arc::default(),
            shutdown_grace: options.shutdown_grace,
            webhook: true,
        };
        // Its own connections and cap: nothing on the webhook port can lock the kubelet's probes out, nor the other
        // way round.
        let ops_edge = Edge {
            router: ops::router(state.clone()),
            tls: None,
            webhook: false,
            registry: Arc::default(),
            ..edge.clone()
        };
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(accept_loop(webhook_listener, edge, stopped.clone())),
            tokio::spawn(accept_loop(metrics_listener, ops_edge, stopped)),
        ];
        state.ready.store(true, Ordering::Release);
        tracing::info!(%webhook_addr, %metrics_addr, "serving");
        Ok(Self { webhook_addr, metrics_addr, state, drain_delay: options.drain_delay, stop, tasks })
    }

    /// Where the TLS webhook listens.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
    }

    /// Where health and metrics are served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Drains (not ready, still serving, for the drain delay), stops accepting, lets in-flight requests finish
    /// within the grace period, closes idle connections, and returns.
    pub async fn shutdown(self) {
        self.state.draining.store(true, Ordering::Release);
        tracing::info!(drain = ?self.drain_delay, "draining: not ready, still serving");
        tokio::time::sleep(self.drain_delay).await;
        tracing::info!("no longer accepting; finishing in-flight requests");
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Whether an accept error is about one connection (which simply failed) rather than the listener.
fn about_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted)
}

async fn accept_loop(listener: TcpListener, edge: Edge, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(edge.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let (tcp, _peer) = match accepted {
            Ok(accepted) => {
                // An accept error leaves its connection waiting, so the next success is the recovery.
                if edge.webhook && edge.state.accept_error().is_some() {
                    edge.state.set_accept_error(None);
                    tracing::info!("accepting connections again");
                }
                accepted
            }
            Err(e) if about_one_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors, or similar: report it (health fails) and retry shortly.
                if edge.webhook {
                    if edge.state.accept_error().is_none() {
                        tracing::error!(error = %e, "cannot accept connections");
                    }
                    edge.state.set_accept_error(Some(e.to_string()));
                    edge.state.metrics.connection("accept_error");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // At the cap: the connection that has waited longest without a request gives way to this one.
            Err(_) => match make_room(&edge, &connections).await {
                Some(permit) => {
                    if edge.webhook {
                        edge.state.metrics.connection("evicted");
                    }
                    permit
                }
                None => {
                    if edge.webhook {
                        edge.state.metrics.connection("over_limit");
                    }
                    drop(tcp);
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER);
        let edge = edge.clone();
        let watcher = graceful.watcher();
        let tracker = Arc::new(Tracker::default());
        let registered = edge.registry.enter(tracker.clone());
        tokio::spawn(async move {
            if edge.webhook {
                edge.state.metrics.connection("accepted");
            }
            serve_connection(tcp, &edge, watcher, tracker).await;
            drop(registered);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(edge.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?edge.shutdown_grace, "connections still open after the grace period; closing them");
    }
}

/// How long a new connection at the cap waits for the one asked to give way to close, before asking another.
const EVICTION_WAIT: Duration = Duration::from_millis(250);

/// How many connections are asked in turn to give way to one new connection (one that was asked may have just
/// received a request, or be slow to be scheduled on a busy machine).
const EVICTION_ATTEMPTS: usize = 8;

/// Asks the connection that has waited longest without a request to give way, and waits (briefly) for its slot.
async fn make_room(edge: &Edge, connections: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    for _ in 0..EVICTION_ATTEMPTS {
        if !edge.registry.evict_one() {
            return None;
        }
        if let Ok(Ok(permit)) = tokio::time::timeout(EVICTION_WAIT, connections.clone().acquire_owned()).await {
            return Some(permit);
        }
    }
    None
}

async fn serve_connection(
    tcp: TcpStream,
    edge: &Edge,
    watcher: hyper_util::server::graceful::Watcher,
    tracker: Arc<Tracker>,
) {
    match &edge.tls {
        None => serve_io(tcp, Protocol::Http1, edge, watcher, tracker).await,
        Some(acceptor) => {
            // The handshake counts against the first-request timeout, and gives way at the cap like a connection
            // that has sent nothing.
            let handshake = tokio::time::timeout(edge.handshake_timeout(), acceptor.accept(tcp));
            let handshaken = tokio::select! {
                handshaken = handshake => handshaken,
                () = tracker.evicted() => return,
            };
            match handshaken {
                Ok(Ok(tls)) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                    serve_io(tls, protocol, edge, watcher, tracker).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(timeout = ?edge.handshake_timeout(), "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<T>(
    io: T,
    protocol: Protocol,
    edge: &Edge,
    watcher: hyper_util::server::graceful::Watcher,
    tracker: Arc<Tracker>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Timed::new(io, tracker.clone(), protocol, edge.timeouts));
    let (router, draining) = (edge.router.clone(), edge.state.draining.clone());
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (router, draining, tracker) = (router.clone(), draining.clone(), tracker.clone());
        async move {
            tracker.request_started();
            let http1 = request.version() == Version::HTTP_11;
            let response = router.oneshot(request.map(axum::body::Body::new)).await;
            tracker.request_finished();
            response.map(|response| {
                let mut response = response.map(|body| axum::body::Body::new(Tracked::new(body, tracker)));
                if http1 && draining.load(Ordering::Acquire) {
                    // Draining: the client should open its next connection to a replica that stays.
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            })
        }
    });
    let connection = edge.builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
