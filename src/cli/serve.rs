//! The `serve` command: configuration, certificates, listeners, and a graceful stop on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinHandle;

use crate::cli::ServeArgs;
use crate::cluster::namespaces::{Fixed, Watched};
use crate::cluster::version::ServerVersion;
use crate::cluster::{client, config_maps};
use crate::engine::config::{Config, ConfigError};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Setup;
use crate::webhook::certs;
use crate::webhook::reload;
use crate::webhook::server::{ServeOptions, Server};
use crate::webhook::state::{AppState, Parts, ReviewLimits};
use crate::webhook::tls::{CertStore, ClientCa, Pair, TlsError, reloadable_config};

/// How often the API server's version is read again (it decides `sidecar.mode: auto` and `agents.delivery: auto`).
const VERSION_INTERVAL: Duration = Duration::from_secs(60);

/// Where Kubernetes mounts the pod's namespace.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Runs the webhook until SIGTERM or Ctrl-C, then drains in-flight reviews.
pub async fn run(args: ServeArgs, mut telemetry: Telemetry) -> anyhow::Result<()> {
    let own = own_namespace(args.webhook_namespace.as_deref());
    let load_config = {
        let (config_args, own, budget) = (args.config.clone(), own.clone(), args.body_budget);
        move || -> Result<Config, ConfigError> {
            let mut config = config_args.load()?;
            if config.max_request_bytes > budget {
                // A body this large could never be admitted to memory.
                return Err(ConfigError::Invalid {
                    field: "maxRequestBytes".to_owned(),
                    message: format!("{} is more than --body-budget ({budget})", config.max_request_bytes),
                });
            }
            if let Some(own) = &own {
                config.exclude(own);
            }
            Ok(config)
        }
    };
    let config = load_config()?;
    warn_about_credentials(&config);
    let pair = match (&args.tls_cert, &args.tls_key, args.dev_certs) {
        (_, _, true) => {
            let issued = certs::dev().context("generating dev certificates")?;
            tracing::warn!("serving a self-signed development certificate (--dev-certs); not for production");
            Pair::from_pem(issued.cert_pem.as_bytes(), "dev cert", issued.key_pem.as_bytes(), "dev key")?
        }
        (Some(cert), Some(key), false) => Pair::from_files(cert, key)?,
        _ => bail!("--tls-cert and --tls-key must be set (or --dev-certs for a self-signed development pair)"),
    };
    let certs = Arc::new(CertStore::new(pair));
    let client_ca = args.client_ca.as_deref().map(ClientCa::from_file).transpose()?.map(Arc::new);
    let metrics =
        Arc::new(Metrics::new(telemetry.spans_dropped.clone()).counting_log_drops(telemetry.log_drops.clone()));
    match &telemetry.setup {
        Some(Setup::Export { endpoint, transport }) => {
            tracing::info!(endpoint = %endpoint, protocol = %transport, "exporting a trace per admission over OTLP");
        }
        Some(Setup::Local) => tracing::info!(
            "traces not exported (no OTEL_EXPORTER_OTLP_ENDPOINT); logs still carry trace ids, continuing a caller's"
        ),
        Some(Setup::Disabled) | None => tracing::info!("tracing disabled (OTEL_SDK_DISABLED)"),
    }
    let mut parts = Parts {
        certs: Some(certs.clone()),
        metrics: metrics.clone(),
        trace_ids: telemetry.trace_ids(),
        limits: ReviewLimits {
            read_timeout: args.read_timeout,
            body_budget: args.body_budget,
            max_in_flight: args.max_in_flight,
        },
        ..Parts::new(config, Arc::new(Fixed::default()))
    };
    let mut watchers = Vec::new();
    match client::connect(&args.cluster.source()).await? {
        // Without a cluster connection namespace policy is empty and the webhook still serves.
        None => tracing::info!(
            "no cluster configured (no --kubeconfig, KUBECONFIG, in-cluster service account or ~/.kube/config): \
             namespace policy is empty, sidecar.mode auto uses native sidecars"
        ),
        Some(client) => {
            let (namespaces, watch) = Watched::start(client.clone(), metrics);
            let server_version = Arc::new(ServerVersion::default());
            watchers.push(watch);
            watchers.push(server_version.clone().poll(client.clone(), VERSION_INTERVAL));
            parts.namespaces = namespaces;
            parts.server_version = Some(server_version);
            parts.config_maps = Some(Arc::new(config_maps::Cached::new(client)));
        }
    }
    let state = AppState::new(parts);
    let options = ServeOptions {
        idle_timeout: args.idle_timeout,
        first_request_timeout: args.first_request_timeout,
        write_timeout: args.write_timeout,
        max_connections: args.max_connections,
        drain_delay: args.drain_delay,
        shutdown_grace: args.shutdown_grace,
        ..ServeOptions::new(args.listen, args.metrics_listen, reloadable_config(certs.clone(), client_ca.clone()))
    };
    // Watched before serving: a file that changes once the webhook says it serves is always seen as a change.
    let _reloads = reloaders(&args, &state, &certs, client_ca, load_config);
    let server = Server::start(options, state.clone()).await?;
    shutdown_signal().await;
    server.shutdown().await;
    watchers.iter().for_each(JoinHandle::abort);
    telemetry.shutdown(Duration::from_secs(2)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Watches the certificate and key, the client CA and the config file, and swaps each in whole when it changes
/// and is valid; an invalid one is logged and counted, and the last good one keeps serving.
fn reloaders(
    args: &ServeArgs,
    state: &AppState,
    certs: &Arc<CertStore>,
    client_ca: Option<Arc<ClientCa>>,
    load_config: impl Fn() -> Result<Config, ConfigError> + Send + 'static,
) -> Vec<reload::Watch> {
    let mut watches = Vec::new();
    let every = args.reload_interval;
    if let (Some(cert), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) {
        let (certs, metrics) = (certs.clone(), state.metrics.clone());
        watches.push(reload::watch(vec![cert.clone(), key.clone()], every, move || {
            // A pair is checked before it is served: one that would take every replica down (expired, not valid
            // yet, a chain Go clients refuse) never replaces the one that works.
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match Pair::from_files(&cert, &key).and_then(|pair| pair.servable(now).map(|()| pair)) {
                Ok(pair) => {
                    let not_after = pair.not_after;
                    certs.swap(pair);
                    metrics.reloaded("certificate", true);
                    tracing::info!(not_after, "serving certificate reloaded");
                    true
                }
                Err(e) => {
                    metrics.reloaded("certificate", false);
                    tracing::error!(error = %e, "certificate not reloaded; the one in use keeps serving");
                    // One not valid yet will be, without the files changing again.
                    !matches!(e, TlsError::NotYetValid { .. })
                }
            }
        }));
    }
    if let (Some(ca), Some(path)) = (client_ca, args.client_ca.clone()) {
        let metrics = state.metrics.clone();
        watches.push(reload::watch(vec![path.clone()], every, move || {
            match ca.reload(&path) {
                Ok(()) => {
                    metrics.reloaded("client_ca", true);
                    tracing::info!("client CA reloaded");
                }
                Err(e) => {
                    metrics.reloaded("client_ca", false);
                    tracing::error!(error = %e, "client CA not reloaded; the one in use keeps serving");
                }
            }
            true
        }));
    }
    if let Some(path) = args.config.config.clone() {
        let (config, metrics) = (state.config.clone(), state.metrics.clone());
        watches.push(reload::watch(vec![path], every, move || {
            match load_config() {
                Ok(new) => {
                    warn_about_credentials(&new);
                    config.store(Arc::new(new));
                    metrics.reloaded("config", true);
                    tracing::info!("config reloaded");
                }
                Err(e) => {
                    metrics.reloaded("config", false);
                    tracing::error!(error = %e, "config not reloaded; the last good one stays in force");
                }
            }
            true
        }));
    }
    watches
}

/// Warns about each `headers` entry that looks like a credential: it is written into every instrumented pod, where
/// whoever may read pods can read it (docs/operations.md, "Credentials stay at the gateway").
fn warn_about_credentials(config: &Config) {
    for name in config.headers.keys().filter(|name| looks_like_credential(name)) {
        tracing::warn!(
            header = %name,
            "config headers.{name} looks like a credential: it is written into every instrumented pod, readable by \
             anyone who may read pods; keep credentials at the gateway collector instead"
        );
    }
}

/// Whether an HTTP header of this name usually carries a secret.
fn looks_like_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "proxy-authorization"
        || name == "cookie"
        || ["token", "secret", "password", "api-key", "apikey", "api_key", "credential", "auth"]
            .iter()
            .any(|word| name.contains(word))
}

/// The webhook's own namespace: the flag, else `POD_NAMESPACE`, else the service account's.
fn own_namespace(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok())
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::looks_like_credential;

    #[test]
    fn headers_that_carry_secrets_are_recognised() {
        for name in ["Authorization", "x-api-key", "X-Honeycomb-Team-Token", "DD-API-KEY", "Cookie", "x-auth-secret"] {
            assert!(looks_like_credential(name), "{name}");
        }
        for name in ["X-Scope-OrgID", "x-tenant", "X-Environment"] {
            assert!(!looks_like_credential(name), "{name}");
        }
    }
}
