//! Namespace policy at the server's edge, over real TLS: a namespace the cache has not seen gets one bounded lookup
//! inside the caller's deadline, or the review is admitted without namespace policy and with a warning; `/readyz`
//! waits for the cache and the server version.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use futures::FutureExt;
use futures::future::BoxFuture;
use otel_injector::cluster::namespaces::{Fetched, Namespaces};
use otel_injector::cluster::version::ServerVersion;
use otel_injector::engine::config::Config;
use otel_injector::engine::policy::NamespaceMeta;
use otel_injector::engine::syntax::KubeVersion;
use otel_injector::testing::fixtures::{container, pod, review};
use serde_json::Value;

/// What a lookup of an unseen namespace does.
#[derive(Clone)]
enum Lookup {
    Answer(Fetched),
    Hang,
}

/// A namespace source with a scripted cache and lookup, recording the budget each lookup was given.
struct Scripted {
    cached: HashMap<String, Arc<NamespaceMeta>>,
    lookup: Lookup,
    synced: AtomicBool,
    budgets: Mutex<Vec<Duration>>,
}

impl Scripted {
    fn new(lookup: Lookup) -> Arc<Self> {
        Arc::new(Self { cached: HashMap::new(), lookup, synced: AtomicBool::new(true), budgets: Mutex::default() })
    }
}

impl Namespaces for Scripted {
    fn get(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.cached.get(name).cloned()
    }

    fn fetch(&self, _name: &str, timeout: Duration) -> BoxFuture<'static, Fetched> {
        self.budgets.lock().expect("budgets").push(timeout);
        let lookup = self.lookup.clone();
        async move {
            match lookup {
                Lookup::Answer(fetched) => fetched,
                Lookup::Hang => {
                    tokio::time::sleep(timeout).await;
                    Fetched::TimedOut
                }
            }
        }
        .boxed()
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.cached.len()
    }
}

fn opted_in() -> Arc<NamespaceMeta> {
    Arc::new(NamespaceMeta {
        annotations: [("otel-injector.io/inject".to_owned(), "true".to_owned())].into(),
        ..NamespaceMeta::default()
    })
}

fn web_review() -> Value {
    review(&pod("web").container(container("app")).build(), "CREATE", "fresh")
}

/// POSTs a review with `?timeout=` as the API server does.
async fn post_with_timeout(server: &TestServer, timeout: &str) -> Value {
    let url = format!("{}?timeout={timeout}", server.url());
    let response = server.client(false).post(url).json(&web_review()).send().await.expect("response");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

fn lookups(server: &TestServer, outcome: &str) -> bool {
    server.state.metrics.encode().contains(&format!("otel_injector_namespace_lookups_total{{outcome=\"{outcome}\"}} 1"))
}

#[tokio::test]
async fn an_unseen_namespace_is_looked_up_and_its_policy_applies() {
    let source = Scripted::new(Lookup::Answer(Fetched::Found(opted_in())));
    let server = TestServer::start_with(Config::default(), source.clone(), |_, _| {}).await;
    let (status, response) = server.post(&web_review()).await;
    assert_eq!(status, 200);
    assert!(response["response"]["patch"].is_string(), "the namespace's opt-in applies: {response}");
    assert!(response["response"].get("warnings").is_none(), "{response}");
    assert!(lookups(&server, "found"), "{}", server.state.metrics.encode());
    assert_eq!(*source.budgets.lock().expect("budgets"), [Duration::from_secs(1)], "about a second without a deadline");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_lookup_that_hangs_stays_inside_the_callers_deadline_and_the_review_is_admitted_with_a_warning() {
    let source = Scripted::new(Lookup::Hang);
    let server = TestServer::start_with(Config::default(), source.clone(), |_, _| {}).await;
    let started = Instant::now();
    let response = post_with_timeout(&server, "1s").await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "answered within the caller's 1 s deadline: {took:?}");
    let budget = source.budgets.lock().expect("budgets")[0];
    assert!(budget <= Duration::from_millis(500), "at most half of what is left: {budget:?}");
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"].get("patch").is_none(), "no namespace policy: the default (skip) applies");
    let warning = response["response"]["warnings"][0].as_str().expect("a warning");
    assert!(warning.starts_with("otel-injector: namespace fresh unknown (no answer within"), "{warning}");
    assert!(warning.ends_with("namespace policy not applied"), "{warning}");
    assert!(lookups(&server, "timeout"), "{}", server.state.metrics.encode());
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_namespace_the_api_server_does_not_know_is_admitted_with_a_warning() {
    let server =
        TestServer::start_with(Config::default(), Scripted::new(Lookup::Answer(Fetched::NotFound)), |_, _| {}).await;
    let (_, response) = server.post(&web_review()).await;
    let warning = response["response"]["warnings"][0].as_str().expect("a warning");
    assert_eq!(warning, "otel-injector: namespace fresh unknown (it does not exist); namespace policy not applied");
    assert!(lookups(&server, "not_found"));
    server.server.shutdown().await;
}

#[tokio::test]
async fn without_a_cluster_unknown_namespaces_are_silently_policy_free() {
    let source = Scripted::new(Lookup::Answer(Fetched::Unavailable));
    let server = TestServer::start_with(Config::default(), source, |_, _| {}).await;
    let (_, response) = server.post(&web_review()).await;
    assert!(response["response"].get("warnings").is_none(), "{response}");
    assert!(!server.state.metrics.encode().contains("namespace_lookups_total{"), "no lookup is counted");
    server.server.shutdown().await;
}

#[tokio::test]
async fn readiness_waits_for_the_namespace_cache_and_the_server_version() {
    let source = Scripted::new(Lookup::Answer(Fetched::NotFound));
    source.synced.store(false, Ordering::Release);
    // A cluster is configured: the server version must be known too (it decides sidecar.mode auto).
    let version = Arc::new(ServerVersion::default());
    let server =
        TestServer::start_with(Config::default(), source.clone(), |_, p| p.server_version = Some(version.clone()))
            .await;
    let readyz = || async {
        let r = reqwest::get(server.ops_url("/readyz")).await.expect("response");
        (r.status().as_u16(), r.text().await.expect("text"))
    };
    assert_eq!(readyz().await, (503, "not ready: namespace cache not synced\n".to_owned()));
    source.synced.store(true, Ordering::Release);
    assert_eq!(readyz().await, (503, "not ready: API server version not read yet\n".to_owned()));
    version.record(KubeVersion { major: 1, minor: 20 });
    assert_eq!(readyz().await.0, 200);
    let metrics = reqwest::get(server.ops_url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("otel_injector_namespace_cache_synced 1"), "{metrics}");
    assert!(metrics.contains("otel_injector_namespace_cache_seconds_since_event -1.0"), "{metrics}");
    server.server.shutdown().await;
}
