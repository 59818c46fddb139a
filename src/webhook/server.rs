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
use std::sync::Arc;
use std::time::Duration;

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
use super::state::AppState;
#[cfg(doc)]
use super::state::ReviewLimits;
use super::{defaults, metrics_port, mutate};

/// Bytes one connection may buffer ahead of the handler: the HTTP/1.1 read buffer, the HTTP/2 connection window.
const CONN_BUFFER: usize = 128 * 1024;

/// The HTTP/2 window of one stream.
const STREAM_WINDOW: u32 = 64 * 1024;

/// The kernel's send buffer of each connection (it doubles it for its own use). Left to autotune, it would take a
/// whole answer for a client that never reads (over a megabyte, charged to the pod's memory), and the write
/// timeout would never see the client stall.
const SEND_BUFFER: usize = 64 * 1024;

/// How the server listens and protects itself (the limits of each review are the state's, [`ReviewLimits`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The TLS webhook address.
    pub listen: SocketAddr,
    /// The plain health and metrics address.
    pub metrics_listen: SocketAddr,
    /// Certificate and key (see [`super::tls::reloadable_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// How long an idle keep-alive connection stays open (longer than the API server's 90 s).
    pub idle_timeout: Duration,
    /// How long a new connection has to send its first request, its TLS handshake included.
    pub first_request_timeout: Duration,
    /// How long an answer being written may make no progress before the connection is cut off.
    pub write_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Streams at once on one HTTP/2 connection.
    pub http2_max_streams: u32,
    /// How long after SIGTERM the server keeps accepting while it reports not ready.
    pub drain_delay: Duration,
    /// How long in-flight requests may take to finish once the server stops accepting.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    /// The defaults of `serve` ([`super::defaults`]), for `tls`, on two addresses.
    pub fn new(listen: SocketAddr, metrics_listen: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            listen,
            metrics_listen,
            tls,
            idle_timeout: defaults::seconds(defaults::IDLE_TIMEOUT),
            first_request_timeout: defaults::seconds(defaults::FIRST_REQUEST_TIMEOUT),
            write_timeout: defaults::seconds(defaults::WRITE_TIMEOUT),
            max_connections: defaults::MAX_CONNECTIONS,
            http2_max_streams: 32,
            drain_delay: defaults::seconds(defaults::DRAIN_DELAY),
            shutdown_grace: defaults::seconds(defaults::SHUTDOWN_GRACE),
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
        state: AppState,
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
            header: state.limits.read_timeout,
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
        let metrics_edge = Edge {
            router: metrics_port::router(state.clone()),
            tls: None,
            webhook: false,
            registry: Arc::default(),
            ..edge.clone()
        };
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(accept_loop(webhook_listener, edge, stopped.clone())),
            tokio::spawn(accept_loop(metrics_listener, metrics_edge, stopped)),
        ];
        state.set_ready();
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
        self.state.set_draining();
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
    let (router, state) = (edge.router.clone(), edge.state.clone());
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (router, state, tracker) = (router.clone(), state.clone(), tracker.clone());
        async move {
            tracker.request_started();
            let http1 = request.version() == Version::HTTP_11;
            let response = router.oneshot(request.map(axum::body::Body::new)).await;
            tracker.request_finished();
            response.map(|response| {
                let mut response = response.map(|body| axum::body::Body::new(Tracked::new(body, tracker)));
                if http1 && state.draining() {
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
