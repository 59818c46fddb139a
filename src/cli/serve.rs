//! The `serve` command: configuration, certificates, listeners, and a graceful stop on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinHandle;

use crate::cli::ServeArgs;
use crate::cluster::client;
use crate::cluster::namespaces::{Fixed, Watched};
use crate::webhook::server::{AppState, ServeOptions, Server};
use crate::webhook::{certs, tls};

/// How often the API server's version is read again (it decides `sidecar.mode: auto`).
const VERSION_INTERVAL: Duration = Duration::from_secs(60);

/// Where Kubernetes mounts the pod's namespace.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Runs the webhook until SIGTERM or Ctrl-C, then drains in-flight reviews.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.config.load()?;
    if let Some(own) = own_namespace(args.webhook_namespace.as_deref()) {
        config.exclude(&own);
    }
    let tls = match (&args.tls_cert, &args.tls_key, args.dev_certs) {
        (_, _, true) => {
            let issued = certs::dev().context("generating dev certificates")?;
            tracing::warn!("serving a self-signed development certificate (--dev-certs); not for production");
            tls::server_config(issued.cert_pem.as_bytes(), "dev cert", issued.key_pem.as_bytes(), "dev key")?
        }
        (Some(cert), Some(key), false) => tls::from_files(cert, key)?,
        _ => bail!("--tls-cert and --tls-key must be set (or --dev-certs for a self-signed development pair)"),
    };
    let mut state = AppState::new(config, Arc::new(Fixed::default()));
    let mut watchers = Vec::new();
    match client::connect(&args.cluster.source()).await? {
        // Without a cluster connection namespace policy is empty and the webhook still serves.
        None => tracing::info!(
            "no cluster configured (no --kubeconfig, KUBECONFIG, in-cluster service account or ~/.kube/config): \
             namespace policy is empty, sidecar.mode auto uses native sidecars"
        ),
        Some(client) => {
            let (namespaces, watch) = Watched::start(client.clone(), state.metrics.clone());
            state.namespaces = namespaces;
            state.cluster = true;
            watchers.push(watch);
            watchers.push(state.server_version.clone().poll(client, VERSION_INTERVAL));
        }
    }
    let options = ServeOptions {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls,
        read_timeout: args.read_timeout,
        max_in_flight: args.max_in_flight,
        shutdown_grace: args.shutdown_grace,
    };
    let server = Server::start(options, state).await?;
    shutdown_signal().await;
    server.shutdown().await;
    watchers.iter().for_each(JoinHandle::abort);
    tracing::info!("stopped");
    Ok(())
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
