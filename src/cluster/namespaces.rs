//! Where namespace labels and annotations come from: a source the admission path reads without blocking.
//!
//! In a cluster it is a kube-rs reflector over namespace metadata ([`Watched`]): synced once before `/readyz`
//! turns true, kept current by a watch that backs off and retries on errors while the last known state keeps
//! serving. A namespace the cache has not seen yet (created just before its first pod) can be fetched with one
//! bounded GET. Without a cluster the source is [`Fixed`] (empty: namespace policy is empty).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

use crate::engine::policy::NamespaceMeta;
use crate::telemetry::metrics::Metrics;

/// What looking up a namespace the source has not seen found.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// The namespace, from the API server.
    Found(Arc<NamespaceMeta>),
    /// The API server does not know it either.
    NotFound,
    /// The lookup failed.
    Failed(String),
    /// No answer within the time allowed.
    TimedOut,
    /// There is no cluster to ask (namespace policy is empty by design).
    Unavailable,
}

impl Fetched {
    /// The `outcome` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Found(_) => "found",
            Self::NotFound => "not_found",
            Self::Failed(_) => "error",
            Self::TimedOut => "timeout",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A non-blocking view of the cluster's namespaces (a watched cache in a cluster, a fixed map elsewhere).
pub trait Namespaces: Send + Sync {
    /// The namespace's metadata, if the source holds it.
    fn get(&self, name: &str) -> Option<Arc<NamespaceMeta>>;
    /// Asks the cluster for a namespace the source does not hold, within `timeout`.
    fn fetch(&self, _name: &str, _timeout: Duration) -> BoxFuture<'static, Fetched> {
        futures::future::ready(Fetched::Unavailable).boxed()
    }
    /// Whether the source has caught up with the cluster (gates `/readyz`).
    fn synced(&self) -> bool;
    /// How many namespaces it holds.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Time since the watch last delivered an event, for a watched source.
    fn since_last_event(&self) -> Option<Duration> {
        None
    }
}

/// A fixed set of namespaces: empty without a cluster (namespace policy is then empty), or given by tests.
#[derive(Debug, Clone, Default)]
pub struct Fixed(HashMap<String, Arc<NamespaceMeta>>);

impl Fixed {
    /// A source holding exactly these namespaces.
    pub fn new(namespaces: impl IntoIterator<Item = (String, NamespaceMeta)>) -> Self {
        Self(namespaces.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }
}

impl Namespaces for Fixed {
    fn get(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.0.get(name).cloned()
    }

    fn synced(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Namespaces per page of the watch's lists.
const NAMESPACE_PAGE: u32 = 10;

/// Strips a namespace object to what the policy reads (its name, and the labels and annotations it reads).
fn keep_policy_keys(ns: &mut PartialObjectMeta<Namespace>) {
    let m = &mut ns.metadata;
    m.managed_fields = None;
    m.owner_references = None;
    m.finalizers = None;
    m.labels.iter_mut().for_each(|labels| labels.retain(|k, _| NamespaceMeta::reads(k)));
    m.annotations.iter_mut().for_each(|annotations| annotations.retain(|k, _| NamespaceMeta::reads(k)));
}

/// The policy's view of a namespace object.
pub(crate) fn meta_of(ns: &PartialObjectMeta<Namespace>) -> NamespaceMeta {
    let m = &ns.metadata;
    NamespaceMeta::relevant(m.labels.iter().flatten(), m.annotations.iter().flatten())
}

/// Namespaces from a kube-rs reflector over namespace metadata (`get`, `list`, `watch` on namespaces).
pub(crate) struct Watched {
    store: Store<PartialObjectMeta<Namespace>>,
    api: Api<PartialObjectMeta<Namespace>>,
    synced: Arc<AtomicBool>,
    last_event: Arc<Mutex<Option<Instant>>>,
}

impl Watched {
    /// Starts watching namespaces with `client`; the watch runs until the returned task is aborted.
    pub fn start(client: kube::Client, metrics: Arc<Metrics>) -> (Arc<Self>, JoinHandle<()>) {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let last_event = Arc::new(Mutex::new(None));
        // Only what the policy reads is stored: a namespace's other annotations (a large last-applied
        // configuration, say) never reach the cache. Pages are small, so a list of many large namespaces is never
        // held at once.
        let config = watcher::Config::default().page_size(NAMESPACE_PAGE);
        let watched = watcher(api.clone(), config).modify(keep_policy_keys).default_backoff();
        let stream = reflector::reflector(writer, watched);
        let task = tokio::spawn({
            let (synced, last_event, store) = (synced.clone(), last_event.clone(), store.clone());
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(event) => {
                            *last_event.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                            if matches!(event, watcher::Event::InitDone) && !synced.swap(true, Ordering::AcqRel) {
                                tracing::info!(namespaces = store.len(), "namespace cache synced");
                            }
                        }
                        Err(e) => {
                            metrics.namespace_watch_error();
                            tracing::warn!(error = %e, "namespace watch failed; retrying with backoff, serving the last known namespaces");
                        }
                    }
                }
            }
        });
        (Arc::new(Self { store, api, synced, last_event }), task)
    }
}

impl Namespaces for Watched {
    fn get(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.store.get(&ObjectRef::new(name)).map(|ns| Arc::new(meta_of(&ns)))
    }

    fn fetch(&self, name: &str, timeout: Duration) -> BoxFuture<'static, Fetched> {
        let (api, name) = (self.api.clone(), name.to_owned());
        async move {
            match tokio::time::timeout(timeout, api.get_opt(&name)).await {
                Err(_) => Fetched::TimedOut,
                Ok(Ok(Some(ns))) => Fetched::Found(Arc::new(meta_of(&ns))),
                Ok(Ok(None)) => Fetched::NotFound,
                Ok(Err(e)) => Fetched::Failed(e.to_string()),
            }
        }
        .boxed()
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.store.len()
    }

    fn since_last_event(&self) -> Option<Duration> {
        self.last_event.lock().unwrap_or_else(|e| e.into_inner()).map(|at| at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_namespaces_answer_and_are_synced() {
        let meta = NamespaceMeta { annotations: [("a".into(), "b".into())].into(), ..NamespaceMeta::default() };
        let fixed = Fixed::new([("shop".to_owned(), meta.clone())]);
        assert_eq!(fixed.get("shop").as_deref(), Some(&meta));
        assert_eq!(fixed.get("other"), None);
        assert!(fixed.synced());
        assert_eq!(fixed.len(), 1);
        assert!(Fixed::default().is_empty());
        assert_eq!(fixed.since_last_event(), None);
        assert_eq!(fixed.fetch("other", Duration::from_secs(1)).now_or_never(), Some(Fetched::Unavailable));
    }

    #[test]
    fn a_namespace_object_keeps_only_policy_keys() {
        let ns: PartialObjectMeta<Namespace> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "shop", "labels": {"otel-injector.io/inject": "true", "x": "y"},
                         "annotations": {"otel-injector.io/sampling-ratio": "0.5", "big": "…"}}
        }))
        .expect("metadata");
        let meta = meta_of(&ns);
        assert_eq!(meta.labels.len(), 1);
        assert_eq!(meta.annotations["otel-injector.io/sampling-ratio"], "0.5");
        assert!(!meta.annotations.contains_key("big"));
    }

    #[test]
    fn the_cache_stores_a_namespace_stripped_to_the_policys_keys() {
        let mut ns: PartialObjectMeta<Namespace> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "shop", "uid": "1", "labels": {"otel-injector.io/inject": "true", "x": "y"},
                         "annotations": {"resource.opentelemetry.io/team": "a",
                                         "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(200_000)},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
        }))
        .expect("metadata");
        keep_policy_keys(&mut ns);
        let stored = serde_json::to_string(&ns).expect("json");
        assert!(stored.len() < 500, "{stored}");
        assert_eq!(ns.metadata.name.as_deref(), Some("shop"));
        assert_eq!(meta_of(&ns).annotations["resource.opentelemetry.io/team"], "a");
        assert_eq!(meta_of(&ns).labels["otel-injector.io/inject"], "true");
    }
}
