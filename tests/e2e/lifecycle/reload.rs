//! Reload without restart (SPEC §7, §8): certificates and config change on disk the way Secret and ConfigMap volumes
//! change them, and the running webhook follows; a broken one never replaces a good one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::serve::{Serve, pair_in, volume};
use super::{post, review_body};

/// Accepts any server certificate: these tests look at which one is served.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to `serve`, optionally presenting a client certificate.
async fn connect(
    serve: &Serve,
    client: Option<(&str, &str)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    otel_injector::webhook::tls::install_crypto_provider();
    let builder = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).filter_map(Result::ok).collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("client certificate")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(serve.webhook).await?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// The certificate a new handshake gets.
async fn served(serve: &Serve) -> Vec<u8> {
    let tls = connect(serve, None).await.expect("handshake");
    tls.get_ref().1.peer_certificates().and_then(|c| c.first()).expect("a certificate").to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("pem").expect("der").to_vec()
}

/// One review over `tls` (HTTP/1.1 keep-alive): the status line.
async fn exchange(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let body = review_body();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // A refused client certificate shows up here, as an alert, under TLS 1.3: it reads as no answer.
    if tls.write_all(head.as_bytes()).await.is_err() || tls.write_all(&body).await.is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 64 * 1024];
    let n = tls.read(&mut buf).await.unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn certificates_reload_when_their_secret_volume_swaps_and_a_broken_pair_never_replaces_a_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let first = pair_in(scratch.path());
    let files =
        volume(dir.path(), "v1", &[("tls.crt", first.cert_pem.as_bytes()), ("tls.key", first.key_pem.as_bytes())]);
    let (cert, key) = (files[0].to_string_lossy().into_owned(), files[1].to_string_lossy().into_owned());
    // A poll far beyond the test: the directory watch alone must see the swap.
    let serve = Serve::start(&["--tls-cert", &cert, "--tls-key", &key, "--reload-interval", "1h"]);
    assert_eq!(served(&serve).await, der(&first.cert_pem));
    let mut open = connect(&serve, None).await.expect("handshake");
    assert!(exchange(&mut open).await.starts_with("HTTP/1.1 200"));

    let second = pair_in(scratch.path());
    let swapped = Instant::now();
    volume(dir.path(), "v2", &[("tls.crt", second.cert_pem.as_bytes()), ("tls.key", second.key_pem.as_bytes())]);
    let mut latency = None;
    while swapped.elapsed() < Duration::from_secs(10) {
        if served(&serve).await == der(&second.cert_pem) {
            latency = Some(swapped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latency = latency.unwrap_or_else(|| panic!("the new certificate was never served: {}", serve.logs()));
    eprintln!("certificate reload latency after a symlink swap: {latency:?}");
    assert!(exchange(&mut open).await.starts_with("HTTP/1.1 200"), "a connection opened before keeps working");
    assert_eq!(serve.metric("otel_injector_reloads_total{what=\"certificate\",result=\"success\"}"), Some(1.0));

    // A certificate with another pair's key: refused, the good one keeps serving, and it is counted.
    let third = pair_in(scratch.path());
    volume(dir.path(), "v3", &[("tls.crt", third.cert_pem.as_bytes()), ("tls.key", second.key_pem.as_bytes())]);
    let failed = |s: &Serve| s.metric("otel_injector_reloads_total{what=\"certificate\",result=\"failure\"}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed(&serve).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed(&serve), Some(1.0), "{}", serve.logs());
    assert_eq!(served(&serve).await, der(&second.cert_pem), "the last good pair keeps serving");
    let not_after =
        otel_injector::webhook::tls::Pair::from_pem(second.cert_pem.as_bytes(), "c", second.key_pem.as_bytes(), "k")
            .expect("pair")
            .not_after;
    let gauge = serve.metric("otel_injector_tls_certificate_not_after_seconds").expect("gauge");
    assert_eq!(gauge as i64, not_after);
    assert!(serve.logs().contains("certificate not reloaded; the one in use keeps serving"));
}

/// A serving certificate for 127.0.0.1 that expired an hour ago.
fn expired_pair() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.not_before = now - time::Duration::days(2);
    params.not_after = now - time::Duration::hours(1);
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn readyz_is_false_while_the_served_certificate_has_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_pem, key_pem) = expired_pair();
    let files = volume(dir.path(), "v1", &[("tls.crt", cert_pem.as_bytes()), ("tls.key", key_pem.as_bytes())]);
    let (cert, key) = (files[0].to_string_lossy().into_owned(), files[1].to_string_lossy().into_owned());
    let serve = Serve::start(&["--tls-cert", &cert, "--tls-key", &key, "--reload-interval", "200ms"]);
    assert_eq!(serve.get("/readyz"), (503, "not ready: the serving certificate has expired\n".to_owned()));
    let scratch = tempfile::tempdir().expect("tempdir");
    let fresh = pair_in(scratch.path());
    volume(dir.path(), "v2", &[("tls.crt", fresh.cert_pem.as_bytes()), ("tls.key", fresh.key_pem.as_bytes())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while serve.get("/readyz").0 != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(serve.get("/readyz").0, 200, "ready again once a valid certificate is served");
}

/// A CA and a client certificate it signed.
fn client_pki() -> (String, (String, String)) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(vec!["kube-apiserver".to_owned()]).expect("params");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("client certificate");
    (ca_cert.pem(), (cert.pem(), key.serialize_pem()))
}

#[tokio::test]
async fn a_client_ca_is_required_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = pair_in(dir.path());
    let _ = certs;
    let (ca1, client1) = client_pki();
    let (ca2, client2) = client_pki();
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca_file = volume(ca_dir.path(), "v1", &[("ca.crt", ca1.as_bytes())]).remove(0);
    let serve = Serve::start(&[
        "--tls-cert",
        &dir.path().join("tls.crt").to_string_lossy(),
        "--tls-key",
        &dir.path().join("tls.key").to_string_lossy(),
        "--client-ca",
        &ca_file.to_string_lossy(),
        "--reload-interval",
        "200ms",
    ]);
    let works = |client: Option<(String, String)>| {
        let serve = &serve;
        async move {
            let Ok(mut tls) = connect(serve, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str()))).await else {
                return false;
            };
            exchange(&mut tls).await.starts_with("HTTP/1.1 200")
        }
    };
    assert!(!works(None).await, "no client certificate, no admission");
    assert!(works(Some(client1.clone())).await);
    assert!(!works(Some(client2.clone())).await, "a certificate from another CA");
    volume(ca_dir.path(), "v2", &[("ca.crt", ca2.as_bytes())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !works(Some(client2.clone())).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(works(Some(client2)).await, "the new CA is in force");
    assert!(!works(Some(client1)).await, "the old one is not");
    assert_eq!(serve.metric("otel_injector_reloads_total{what=\"client_ca\",result=\"success\"}"), Some(1.0));
}

/// The sampling ratio of the review's answer.
async fn ratio(serve: &Serve, ca: &str) -> Option<String> {
    let (status, response) = post(serve, ca, &review_body()).await;
    assert_eq!(status, 200);
    let patch = super::patch_text(&response);
    let v: Value = serde_json::from_str(&patch).ok()?;
    let env = v.pointer("/0/value")?.as_array()?;
    env.iter().find(|e| e["name"] == "OTEL_TRACES_SAMPLER_ARG").and_then(|e| e["value"].as_str()).map(str::to_owned)
}

#[tokio::test]
async fn config_reloads_when_its_configmap_volume_swaps_and_an_invalid_one_keeps_the_last_good() {
    let pki = tempfile::tempdir().expect("tempdir");
    let certs = pair_in(pki.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = volume(dir.path(), "v1", &[("config.yaml", b"default: inject\nsamplingRatio: 0.5\n")]).remove(0);
    let serve = Serve::start(&[
        "--tls-cert",
        &pki.path().join("tls.crt").to_string_lossy(),
        "--tls-key",
        &pki.path().join("tls.key").to_string_lossy(),
        "--config",
        &config.to_string_lossy(),
        "--reload-interval",
        "1h",
    ]);
    assert_eq!(ratio(&serve, &certs.ca_pem).await.as_deref(), Some("0.5"));
    let swapped = Instant::now();
    volume(dir.path(), "v2", &[("config.yaml", b"default: inject\nsamplingRatio: 0.25\n")]);
    while ratio(&serve, &certs.ca_pem).await.as_deref() != Some("0.25") {
        assert!(swapped.elapsed() < Duration::from_secs(10), "never reloaded: {}", serve.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("config reload latency after a symlink swap: {:?}", swapped.elapsed());
    volume(dir.path(), "v3", &[("config.yaml", b"default: inject\nsamplingRatio: 3\n")]);
    let failed = |s: &Serve| s.metric("otel_injector_reloads_total{what=\"config\",result=\"failure\"}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed(&serve).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed(&serve), Some(1.0));
    assert_eq!(ratio(&serve, &certs.ca_pem).await.as_deref(), Some("0.25"), "the last good config stays in force");
    assert!(serve.logs().contains("config samplingRatio: must be a number from 0.0 to 1.0"), "the log names the field");
}

/// A serving certificate for 127.0.0.1 and localhost whose validity starts `starts_in` from now.
fn pair_valid_from(starts_in: time::Duration) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    params.not_before = now + starts_in;
    params.not_after = now + time::Duration::days(1);
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_certificate_that_would_take_the_webhook_down_never_replaces_the_one_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let good = pair_in(scratch.path());
    let files =
        volume(dir.path(), "v1", &[("tls.crt", good.cert_pem.as_bytes()), ("tls.key", good.key_pem.as_bytes())]);
    let (cert, key) = (files[0].to_string_lossy().into_owned(), files[1].to_string_lossy().into_owned());
    let serve = Serve::start(&["--tls-cert", &cert, "--tls-key", &key, "--reload-interval", "200ms"]);
    let failed = |s: &Serve| s.metric("otel_injector_reloads_total{what=\"certificate\",result=\"failure\"}");
    let wait_failures = |n: f64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while failed(&serve).unwrap_or(0.0) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(failed(&serve), Some(n), "{}", serve.logs());
    };

    // Expired: refused, the good one keeps serving, the webhook stays ready.
    let (expired_cert, expired_key) = expired_pair();
    volume(dir.path(), "v2", &[("tls.crt", expired_cert.as_bytes()), ("tls.key", expired_key.as_bytes())]);
    wait_failures(1.0);
    assert_eq!(served(&serve).await, der(&good.cert_pem));
    assert_eq!(serve.get("/readyz").0, 200);
    assert!(serve.logs().contains("expired at"), "the reason is logged");

    // A 200 KB chain: Go clients (the API server) would fail every handshake. Refused; Go still connects.
    let padded = good.cert_pem.repeat(200_000 / good.cert_pem.len() + 1);
    volume(dir.path(), "v3", &[("tls.crt", padded.as_bytes()), ("tls.key", good.key_pem.as_bytes())]);
    wait_failures(2.0);
    assert!(serve.logs().contains("Go clients (the API server) accept 65536"), "{}", serve.logs());
    let body = scratch.path().join("review.json");
    std::fs::write(&body, review_body()).expect("write");
    let ca = scratch.path().join("ca.crt");
    let out = std::process::Command::new(super::go_client())
        .args(["load", &serve.url(), &ca.to_string_lossy(), &body.to_string_lossy(), "3", "1"])
        .output()
        .expect("the Go client runs");
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(result["failures"], 0, "Go handshakes: {}", String::from_utf8_lossy(&out.stderr));

    // Not valid for two more seconds: refused now, and served once it is, with no further change to the files.
    let (soon_cert, soon_key) = pair_valid_from(time::Duration::seconds(2));
    volume(dir.path(), "v4", &[("tls.crt", soon_cert.as_bytes()), ("tls.key", soon_key.as_bytes())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&serve).await != der(&soon_cert) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served(&serve).await, der(&soon_cert), "served once valid: {}", serve.logs());
    assert!(serve.logs().contains("not valid until"), "refused while not valid yet");
    assert_eq!(serve.get("/readyz").0, 200);
}
