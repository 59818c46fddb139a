//! The benchmark's baseline (`make bench`): a webhook that does nothing. It parses each review into a
//! `serde_json::Value` and answers "allowed" for its uid, on the webhook's own server (the same axum + rustls
//! stack, accept loop, connection and TLS settings, and `--dev-certs` pair). Usage: `minimal_webhook ADDR`.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use otel_injector::cluster::namespaces::Fixed;
use otel_injector::engine::config::Config;
use otel_injector::webhook::certs;
use otel_injector::webhook::server::{ServeOptions, Server};
use otel_injector::webhook::state::{AppState, Parts};
use otel_injector::webhook::tls;

async fn allow(body: Bytes) -> Response {
    let Ok(review) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed AdmissionReview\n").into_response();
    };
    let answer = serde_json::json!({
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": true},
    });
    ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&answer).unwrap_or_default()).into_response()
}

#[tokio::main]
async fn main() {
    tls::install_crypto_provider();
    let listen: SocketAddr =
        std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(([127, 0, 0, 1], 18443).into());
    let issued = certs::dev().expect("dev certificates");
    let config = tls::server_config(issued.cert_pem.as_bytes(), "dev cert", issued.key_pem.as_bytes(), "dev key")
        .expect("TLS config");
    let options = ServeOptions::new(listen, ([127, 0, 0, 1], 0).into(), config);
    let state = AppState::new(Parts::new(Config::default(), Arc::new(Fixed::default())));
    let server = Server::start_serving(options, state, |_| Router::new().route("/mutate", post(allow)))
        .await
        .expect("listening");
    eprintln!("minimal webhook on https://{}/mutate", server.webhook_addr());
    tokio::signal::ctrl_c().await.expect("signal");
}
