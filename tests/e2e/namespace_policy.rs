//! Namespace policy from the live cluster: the webhook's watched cache follows `kubectl annotate namespace`.

use std::time::Duration;

use serde_json::Value;

use super::harness::{Cluster, Webhook, container, env_of, pod, status_of};

/// Waits until a new pod in `ns` satisfies `check` (the cache follows the watch within a moment), and returns how
/// long that took.
fn until_a_new_pod(cluster: &Cluster, ns: &str, check: impl Fn(&Value) -> bool) -> Duration {
    let took = cluster.dry_run_until(ns, &pod("probe", &[], &["app"]), check);
    took.expect("the namespace change never reached the webhook")
}

fn sampler_arg(pod: &Value) -> Option<String> {
    env_of(container(&pod["spec"], "app")?).get("OTEL_TRACES_SAMPLER_ARG").cloned()
}

#[test]
fn annotating_a_namespace_instruments_its_next_pod() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: skip\n");
    let ns = hook.namespace(&[]);
    let before = cluster.create(&ns, &pod("before", &[], &["app"]));
    assert!(status_of(&before).is_none(), "not opted in yet");

    cluster.kubectl(&["annotate", "namespace", &ns, "otel-injector.io/inject=true"]);
    let took = until_a_new_pod(cluster, &ns, |p| status_of(p).is_some());
    eprintln!("the annotation reached the webhook within {took:?}");
    let after = cluster.create(&ns, &pod("after", &[], &["app"]));
    assert_eq!(status_of(&after).expect("instrumented")["reason"], "namespace annotation otel-injector.io/inject=true");
}

#[test]
fn changing_the_namespace_sampling_ratio_reaches_the_next_pod() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: skip\n");
    let ns = hook.namespace(&[("otel-injector.io/inject", "true"), ("otel-injector.io/sampling-ratio", "0.25")]);
    let first = cluster.create(&ns, &pod("first", &[], &["app"]));
    assert_eq!(sampler_arg(&first).as_deref(), Some("0.25"));

    cluster.kubectl(&["annotate", "namespace", &ns, "--overwrite", "otel-injector.io/sampling-ratio=0.5"]);
    until_a_new_pod(cluster, &ns, |p| sampler_arg(p).as_deref() == Some("0.5"));
    let second = cluster.create(&ns, &pod("second", &[], &["app"]));
    assert_eq!(sampler_arg(&second).as_deref(), Some("0.5"));
}

#[test]
fn opting_a_namespace_out_under_default_inject_leaves_its_next_pods_alone() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let ns = hook.namespace(&[]);
    let before = cluster.create(&ns, &pod("before", &[], &["app"]));
    assert_eq!(status_of(&before).expect("instrumented")["reason"], "cluster default (inject)");

    cluster.kubectl(&["annotate", "namespace", &ns, "otel-injector.io/inject=false"]);
    until_a_new_pod(cluster, &ns, |p| status_of(p).is_none());
    let after = cluster.create(&ns, &pod("after", &[], &["app"]));
    assert!(status_of(&after).is_none(), "{after}");
    assert!(after["spec"]["containers"][0].get("env").is_none());
}

#[test]
fn namespace_resource_attributes_reach_its_pods() {
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, "default: inject\n");
    let ns = hook.namespace(&[("resource.opentelemetry.io/team", "payments")]);
    let stored = cluster.create(&ns, &pod("web", &[("resource.opentelemetry.io/tier", "web")], &["app"]));
    let attributes = &env_of(container(&stored["spec"], "app").expect("app"))["OTEL_RESOURCE_ATTRIBUTES"];
    assert!(attributes.contains("team=payments"), "{attributes}");
    assert!(attributes.contains("tier=web"), "{attributes}");
}

#[test]
fn the_webhook_resyncs_after_an_api_server_restart_and_keeps_serving() {
    let cluster = Cluster::dedicated();
    let hook = Webhook::start(&cluster, "default: skip\n");
    let ns = hook.namespace(&[]);
    until_a_new_pod(&cluster, &ns, |p| status_of(p).is_none());
    let lookups = |hook: &Webhook| hook.metric("otel_injector_namespace_lookups_total{outcome=\"found\"}");
    let lookups_before = lookups(&hook);

    cluster.restart_apiserver();
    assert_eq!(hook.http_get("/readyz").0, 200, "the last known namespaces keep serving: {}", hook.logs());
    // A change made after the restart reaches the webhook only through its resumed watch: the namespace is in the
    // cache, so no lookup is made for it.
    cluster.kubectl(&["annotate", "namespace", &ns, "otel-injector.io/inject=true"]);
    let took = until_a_new_pod(&cluster, &ns, |p| status_of(p).is_some());
    eprintln!("after the restart, the annotation reached the webhook within {took:?}");
    let stored = cluster.create(&ns, &pod("after-restart", &[], &["app"]));
    assert!(status_of(&stored).is_some());
    assert_eq!(lookups(&hook), lookups_before, "served from the cache, not by lookups");
    let errors = hook.metric("otel_injector_namespace_watch_errors_total").unwrap_or(0.0);
    eprintln!("watch errors during the restart: {errors}");
    assert!(hook.logs().contains("namespace watch failed"), "the outage was seen and retried: {}", hook.logs());
}
