//! Months in a cluster (issue 8), against the real `serve` process: reloads, connections the way the API server
//! uses them, bounded memory, and a drain that loses no admission.

mod connections;
mod drain;
mod memory;
mod reload;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use super::common;
use common::serve::{Serve, pair_in};
use otel_injector::webhook::certs::Issued;

/// Flags that serve with the pair in `dir` and `default: inject`, then `extra`.
pub fn serve_args(dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut args = vec!["--default".to_owned(), "inject".to_owned(), "--tls-cert".to_owned(), path("tls.crt")];
    args.extend(["--tls-key".to_owned(), path("tls.key")]);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// A `serve` with [`serve_args`] on a fresh CA and serving pair in a temporary directory.
pub fn serve_with_pair(extra: &[&str]) -> (Serve, Issued, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pair_in(dir.path());
    let args = serve_args(dir.path(), extra);
    (Serve::start(&args.iter().map(String::as_str).collect::<Vec<_>>()), pki, dir)
}

/// A Pod CREATE review that `default: inject` instruments.
pub fn review_body() -> Vec<u8> {
    let pod = otel_injector::testing::fixtures::pod("web")
        .container(otel_injector::testing::fixtures::container("app"))
        .build();
    serde_json::to_vec(&otel_injector::testing::fixtures::review(&pod, "CREATE", "shop")).expect("json")
}

/// A client trusting `ca_pem`, speaking HTTP/1.1 like the API server.
pub fn client(ca_pem: &str) -> reqwest::Client {
    otel_injector::webhook::tls::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POSTs `body` to `serve`'s `/mutate`: status and JSON answer (`Null` when it is not JSON).
pub async fn post(serve: &Serve, ca_pem: &str, body: &[u8]) -> (u16, Value) {
    let response = client(ca_pem)
        .post(serve.url())
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The JSON Patch text of an answer ("" when there is none).
pub fn patch_text(response: &Value) -> String {
    let b64 = response.pointer("/response/patch").and_then(Value::as_str).unwrap_or_default();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default()).unwrap_or_default()
}

/// The Go client of `tests/clients` (built once per run), set up like the API server's webhook transport.
pub fn go_client() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let out = dir.join("webhook-client");
            let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/webhook_client.go");
            let built = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&out)
                .arg(&source)
                .env("GOCACHE", dir.join("gocache"))
                .env("GOPATH", dir.join("gopath"))
                .env("GOPROXY", "off")
                .env("GOFLAGS", "")
                .output()
                .expect("go is installed (make test installs golang-go)");
            assert!(built.status.success(), "go build: {}", String::from_utf8_lossy(&built.stderr));
            out
        })
        .clone()
}
