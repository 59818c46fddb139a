//! What every handler shares: [`AppState`], made once from its [`Parts`] by [`AppState::new`] and not changed after
//! (the configuration inside is swapped whole on reload; the readiness flags are the server's to set).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::body::Budget;
use super::defaults;
use super::tls::CertStore;
use crate::cluster::config_maps::ConfigMapSource;
use crate::cluster::namespaces::{Fixed, Namespaces};
use crate::cluster::version::ServerVersion;
use crate::engine::config::Config;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::TraceIds;

/// How much of the webhook a review may take: time to arrive, memory, and a place among those worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewLimits {
    /// Longest time for a TLS handshake, a request's headers once it has started, or a whole body (shortened by the
    /// caller's `?timeout=`).
    pub read_timeout: Duration,
    /// Bytes of request bodies held in memory at once, across all requests.
    pub body_budget: usize,
    /// Reviews worked on at once; more are answered 503 at once rather than queued past the caller's deadline.
    pub max_in_flight: usize,
}

impl Default for ReviewLimits {
    fn default() -> Self {
        Self {
            read_timeout: defaults::seconds(defaults::READ_TIMEOUT),
            body_budget: defaults::BODY_BUDGET,
            max_in_flight: defaults::MAX_IN_FLIGHT,
        }
    }
}

/// The [`ReviewLimits`] at work, shared by every review.
#[derive(Debug)]
pub struct Limits {
    /// Longest time for a request's body (shortened by the caller's `?timeout=`).
    pub read_timeout: Duration,
    /// Bytes of request bodies held at once.
    pub budget: Budget,
    /// Reviews being worked on at once.
    pub in_flight: Arc<Semaphore>,
}

impl Limits {
    fn new(limits: ReviewLimits) -> Self {
        Self {
            read_timeout: limits.read_timeout,
            budget: Budget::new(limits.body_budget),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
        }
    }
}

/// What an [`AppState`] is made of. [`Parts::new`] gives a webhook without a cluster: no namespace policy beyond
/// `namespaces`, no certificate to watch, its own metrics, no traces, the default limits.
pub struct Parts {
    /// The configuration in force.
    pub config: Config,
    /// Namespace labels and annotations.
    pub namespaces: Arc<dyn Namespaces>,
    /// The API server's version, polled, when a cluster is configured: `/readyz` then also waits for it.
    pub server_version: Option<Arc<ServerVersion>>,
    /// The serving certificate, when the server can tell it has expired (`/readyz`, the `notAfter` gauge).
    pub certs: Option<Arc<CertStore>>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Where each admission's trace ids come from.
    pub trace_ids: TraceIds,
    /// Time and memory limits of reviews.
    pub limits: ReviewLimits,
    /// The ConfigMaps pods draw variables from, when a cluster is configured.
    pub config_maps: Option<Arc<dyn ConfigMapSource>>,
}

impl Parts {
    /// `config` and `namespaces`, the rest as for a webhook without a cluster.
    pub fn new(config: Config, namespaces: Arc<dyn Namespaces>) -> Self {
        Self {
            config,
            namespaces,
            server_version: None,
            certs: None,
            metrics: Arc::default(),
            trace_ids: TraceIds::default(),
            limits: ReviewLimits::default(),
            config_maps: None,
        }
    }
}

impl Default for Parts {
    /// The default configuration, no namespaces.
    fn default() -> Self {
        Self::new(Config::default(), Arc::new(Fixed::default()))
    }
}

/// What every handler shares (cheap to clone: every part is shared).
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force (swapped whole on reload).
    pub config: Arc<ArcSwap<Config>>,
    /// Namespace labels and annotations.
    pub namespaces: Arc<dyn Namespaces>,
    /// The API server's version, when a cluster is configured.
    pub server_version: Option<Arc<ServerVersion>>,
    /// The serving certificate, when the server can tell it has expired.
    pub certs: Option<Arc<CertStore>>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Where each admission's trace ids come from.
    pub trace_ids: TraceIds,
    /// Time and memory limits of reviews.
    pub limits: Arc<Limits>,
    /// The ConfigMaps pods draw variables from, when a cluster is configured.
    pub config_maps: Option<Arc<dyn ConfigMapSource>>,
    /// Set once listeners are bound.
    ready: Arc<AtomicBool>,
    /// Set on shutdown: `/readyz` fails and HTTP/1.1 answers carry `Connection: close`.
    draining: Arc<AtomicBool>,
    /// The last error accepting webhook connections, while accepting fails (e.g. file descriptors exhausted).
    accept_error: Arc<Mutex<Option<String>>>,
}

impl AppState {
    /// The state made of `parts`, not ready until the server says so.
    pub fn new(parts: Parts) -> Self {
        let Parts { config, namespaces, server_version, certs, metrics, trace_ids, limits, config_maps } = parts;
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            namespaces,
            server_version,
            certs,
            metrics,
            trace_ids,
            limits: Arc::new(Limits::new(limits)),
            config_maps,
            ready: Arc::default(),
            draining: Arc::default(),
            accept_error: Arc::default(),
        }
    }

    /// Why the webhook listener cannot accept connections, while it cannot.
    pub(crate) fn accept_error(&self) -> Option<String> {
        self.accept_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes that accepting fails (`Some`) or works again (`None`).
    pub(crate) fn set_accept_error(&self, error: Option<String>) {
        *self.accept_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Notes that the listeners are bound.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Notes that the server is shutting down.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the server is shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The API server's version, once read.
    pub fn server_version(&self) -> Option<crate::engine::syntax::KubeVersion> {
        self.server_version.as_ref().and_then(|v| v.get())
    }

    /// Why the webhook is not ready, if it is not.
    pub(crate) fn not_ready(&self) -> Option<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if !self.ready.load(Ordering::Acquire) {
            Some("listeners not started".to_owned())
        } else if self.draining() {
            Some("shutting down".to_owned())
        } else if let Some(e) = self.accept_error() {
            Some(format!("the webhook listener cannot accept connections: {e}"))
        } else if let Some(problem) = self.certs.as_ref().and_then(|c| c.problem(now)) {
            Some(problem.to_owned())
        } else if !self.namespaces.synced() {
            Some("namespace cache not synced".to_owned())
        } else if self.server_version.is_some() && self.server_version().is_none() {
            Some("API server version not read yet".to_owned())
        } else {
            None
        }
    }
}
