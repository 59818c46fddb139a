//! The plain port (`--metrics-listen`): `/healthz` (alive, and able to accept connections), `/readyz` (fit to take
//! reviews) and `/metrics` (OpenMetrics).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::state::AppState;
use crate::telemetry::metrics::CacheState;

/// The operations router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.accept_error() {
        Some(e) => unavailable(&format!("not healthy: the webhook listener cannot accept connections: {e}")),
        None => "ok\n".into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.not_ready() {
        Some(why) => unavailable(&format!("not ready: {why}")),
        None => "ok\n".into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let ns = &state.namespaces;
    let cache = CacheState { namespaces: ns.len(), synced: ns.synced(), since_last_event: ns.since_last_event() };
    state.metrics.observe_cache(cache);
    if let Some(certs) = &state.certs {
        state.metrics.observe_certificate(certs.not_after());
    }
    ([(header::CONTENT_TYPE, content_type)], state.metrics.encode()).into_response()
}
