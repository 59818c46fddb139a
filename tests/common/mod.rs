//! Shared helpers for the integration tests: a real server on port 0 with real certificates, clients, reviews.
#![allow(dead_code, missing_docs)]

pub mod corpus;
pub mod serve;

#[allow(unused_imports)]
pub use otel_injector::testing::preserve::preserved;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use otel_injector::cluster::namespaces::{Fixed, Namespaces};
use otel_injector::engine::config::Config;
use otel_injector::webhook::certs;
use otel_injector::webhook::server::{ServeOptions, Server};
use otel_injector::webhook::state::{AppState, Parts};
use otel_injector::webhook::tls;
use serde_json::Value;

/// A webhook listening on 127.0.0.1 with a certificate for `localhost` signed by a fresh CA.
pub struct TestServer {
    pub server: Server,
    pub ca_pem: String,
    pub state: AppState,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::start_with(config, Arc::new(Fixed::default()), |_, _| {}).await
    }

    pub async fn start_with(
        config: Config,
        namespaces: Arc<dyn Namespaces>,
        tweak: impl FnOnce(&mut ServeOptions, &mut Parts),
    ) -> Self {
        tls::install_crypto_provider();
        let issued = certs::issue(&["localhost".to_owned(), "127.0.0.1".to_owned()], 1).expect("certificates");
        let tls = tls::server_config(issued.cert_pem.as_bytes(), "cert", issued.key_pem.as_bytes(), "key")
            .expect("tls config");
        let mut options =
            ServeOptions::new("127.0.0.1:0".parse().expect("addr"), "127.0.0.1:0".parse().expect("addr"), tls);
        options.drain_delay = Duration::ZERO;
        options.shutdown_grace = Duration::from_secs(5);
        let mut parts = Parts::new(config, namespaces);
        parts.limits.max_in_flight = 64;
        tweak(&mut options, &mut parts);
        let state = AppState::new(parts);
        let server = Server::start(options, state.clone()).await.expect("server starts");
        Self { server, ca_pem: issued.ca_pem, state }
    }

    /// `https://localhost:<port>/mutate`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/mutate", self.server.webhook_addr().port())
    }

    /// `http://127.0.0.1:<port>` of the plain port.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.metrics_addr())
    }

    /// A client trusting only this server's CA, speaking HTTP/1.1 (as the API server does) or HTTP/2.
    pub fn client(&self, http2: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA");
        let builder = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(30));
        let builder = if http2 { builder.http2_prior_knowledge() } else { builder.http1_only() };
        builder.build().expect("client")
    }

    /// POSTs a JSON body to `/mutate` over HTTP/1.1 or HTTP/2.
    pub async fn send(&self, http2: bool, body: Vec<u8>) -> reqwest::Response {
        self.client(http2)
            .post(self.url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("a response, not a reset")
    }

    /// POSTs a review over HTTP/1.1 and returns the status and body.
    pub async fn post(&self, body: &Value) -> (u16, Value) {
        let response = self.send(false, serde_json::to_vec(body).expect("json")).await;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }
}

/// A tool the tests need: `env` if set, else `default`; a clear failure saying how to `install` it otherwise.
pub fn tool(env: &str, default: &std::path::Path, install: &str) -> std::path::PathBuf {
    let path = std::env::var_os(env).map(std::path::PathBuf::from).unwrap_or_else(|| default.to_owned());
    let runs = || std::process::Command::new(&path).arg("--help").output().is_ok();
    assert!(path.exists() || runs(), "{} not found: {install} (or set {env})", path.display());
    path
}

/// The Python of `.venv` (kubernetes-validate, prometheus-client), installed by `make test`.
pub fn python() -> std::path::PathBuf {
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    tool("OTEL_INJECTOR_TEST_PYTHON", &default, "run `make test`, which installs it into .venv")
}

/// GET `url` with curl: status and body (status 0 when there was no answer).
pub fn curl_get(url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The value of the line starting with `series` (name and labels) in a Prometheus exposition.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().split(' ').next()?.parse().ok())
}

/// The decoded JSON Patch of a response, and its raw bytes (empty when there is none).
pub fn patch_of(response: &Value) -> (json_patch::Patch, Vec<u8>) {
    match response.pointer("/response/patch").and_then(Value::as_str) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("patch is standard base64");
            (serde_json::from_slice(&bytes).expect("patch is a JSON Patch"), bytes)
        }
        None => {
            assert!(response.pointer("/response/patchType").is_none(), "patchType without patch: {response}");
            (json_patch::Patch(Vec::new()), Vec::new())
        }
    }
}

/// Applies a patch with the json-patch crate.
pub fn apply(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, patch).unwrap_or_else(|e| panic!("patch does not apply: {e}\npatch: {patch:?}"));
    out
}
