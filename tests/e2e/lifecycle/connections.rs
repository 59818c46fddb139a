//! Connections the way the API server uses them (keep-alive for 90 s, no retry of a failed POST), slow clients
//! that must not starve the others, and oversized bodies whose 413 every client gets to read.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::serve::Serve;
use super::{go_client, post, review_body, serve_with_pair};

/// A Go client like the API server's: requests on one keep-alive pool with the given idles in between.
fn keepalive(serve: &Serve, ca: &std::path::Path, body: &std::path::Path, idles: &str) -> Value {
    let out = Command::new(go_client())
        .args(["keepalive", &serve.url(), &ca.to_string_lossy(), &body.to_string_lossy(), idles])
        .output()
        .expect("the Go client runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn idle_keep_alive_connections_outlive_the_api_servers_own_idle_timeout() {
    let (serve, _pki, dir) = serve_with_pair(&[]);
    let body = dir.path().join("review.json");
    std::fs::write(&body, review_body()).expect("write");
    let ca = dir.path().join("ca.crt");
    // Each client its own pool, all at once: idles around the old 10 s cut-off, one the API server keeps (85 s), and
    // one past its 90 s, where the client itself drops the connection and must simply open a new one.
    let idles = ["9s", "9500ms", "10s", "10500ms", "11s", "12s", "61s", "85s", "93s"];
    let accepted = || serve.metric("otel_injector_connections_total{event=\"accepted\"}").unwrap_or(0.0);
    let before = accepted();
    let results: Vec<(&str, Value)> = std::thread::scope(|s| {
        let runs: Vec<_> = idles.iter().map(|idle| s.spawn(|| (*idle, keepalive(&serve, &ca, &body, idle)))).collect();
        runs.into_iter().map(|run| run.join().expect("joined")).collect()
    });
    for (idle, result) in results {
        let reused = u64::from(idle != "93s");
        assert_eq!(result, serde_json::json!({"requests": 2, "failures": 0, "reused": reused}), "after {idle} idle");
    }
    assert_eq!(accepted() - before, 10.0, "one connection per client, and one more after 93 s");
}

#[tokio::test]
async fn a_request_that_has_started_must_send_its_headers_within_the_read_timeout() {
    let (serve, _pki, _dir) = serve_with_pair(&["--read-timeout", "1s"]);
    // On the plain port, where no TLS hides the bytes: headers begun and never finished.
    let mut tcp = tokio::net::TcpStream::connect(serve.metrics).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "cut off: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // While an idle connection is left alone well beyond that.
    let mut idle = tokio::net::TcpStream::connect(serve.metrics).await.expect("connect");
    tokio::time::sleep(Duration::from_secs(3)).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let n = idle.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// A TLS connection that sends a review's headers and a few bytes of its body, then stalls.
async fn slow_body(serve: &Serve, ca: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    roots.add_parsable_certificates(rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()).flatten());
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(serve.webhook).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    tls.write_all(
        b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3000000\r\n\r\n{\"apiV",
    )
    .await
    .expect("write");
    tls
}

#[tokio::test]
async fn slow_clients_never_starve_the_others() {
    let (serve, pki, _dir) = serve_with_pair(&[]);
    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled.push(slow_body(&serve, &pki.ca_pem).await);
    }
    // 200 HTTP/2 streams whose bodies never finish, over 7 connections (32 streams each at most).
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA");
    let mut streams = Vec::new();
    for _ in 0..7 {
        let h2 = reqwest::Client::builder().tls_certs_only([ca.clone()]).http2_prior_knowledge().build().expect("h2");
        for _ in 0..29 {
            let body = futures::stream::once(async { Ok::<_, std::io::Error>(b"{\"apiVersion\"".to_vec()) })
                .chain(futures::stream::pending());
            let request =
                h2.post(serve.url()).header("content-type", "application/json").body(reqwest::Body::wrap_stream(body));
            streams.push(tokio::spawn(request.send()));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for _ in 0..20 {
        let (status, _) = post(&serve, &pki.ca_pem, &review_body()).await;
        assert_eq!(status, 200, "a real review gets through");
    }
    eprintln!("20 reviews beside 300 stalled bodies and 203 stalled HTTP/2 streams: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(serve.metric("otel_injector_admission_errors_total{reason=\"overloaded\"}"), None, "nothing shed");
    streams.iter().for_each(|s| s.abort());
    drop(stalled);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let (serve, pki, _dir) = serve_with_pair(&["--max-connections", "5"]);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(slow_body(&serve, &pki.ca_pem).await);
    }
    let over = tokio::net::TcpStream::connect(serve.webhook).await.expect("connect");
    let mut buf = [0u8; 8];
    over.readable().await.expect("readable");
    let n = over.try_read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed at once");
    assert_eq!(serve.metric("otel_injector_connections_total{event=\"over_limit\"}"), Some(1.0));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = post(&serve, &pki.ca_pem, &review_body()).await;
    assert_eq!(status, 200, "room again once they are gone");
}

/// Sends `GET path` on an open HTTP/1.1 connection and reads one answer: status and body.
async fn get_on(tcp: &mut tokio::net::TcpStream, path: &str) -> (u16, String) {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("answered").expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// The soft limit of open files of process `pid`.
fn open_files_limit(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).expect("a number")
}

/// Sets the soft limit of open files of a running process (util-linux `prlimit`).
fn open_files_limit_set(pid: u32, soft: usize) {
    let status = Command::new("prlimit").arg(format!("--pid={pid}")).arg(format!("--nofile={soft}:")).status();
    assert!(status.expect("prlimit runs").success(), "prlimit");
}

#[tokio::test]
async fn health_fails_while_the_webhook_cannot_accept_and_recovers() {
    let (serve, _pki, _dir) = serve_with_pair(&["--read-timeout", "30s"]);
    // The probe's connection is open before file descriptors run out, as a kubelet's would be on a retry.
    let mut probe = tokio::net::TcpStream::connect(serve.metrics).await.expect("connect");
    assert_eq!(get_on(&mut probe, "/healthz").await.0, 200);
    let open = std::fs::read_dir(format!("/proc/{}/fd", serve.pid())).expect("fds").count();
    let soft = open_files_limit(serve.pid());
    open_files_limit_set(serve.pid(), open + 4);
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(tokio::net::TcpStream::connect(serve.webhook).await.expect("connect (the backlog takes it)"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get_on(&mut probe, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the webhook listener cannot accept connections"), "{body}");
    assert_eq!(get_on(&mut probe, "/readyz").await.0, 503);
    assert!(serve.logs().contains("cannot accept connections"), "logged");
    drop(held);
    open_files_limit_set(serve.pid(), soft);
    // The next connection accepted is the recovery; the API server keeps connecting, so do we.
    let started = std::time::Instant::now();
    let mut health = get_on(&mut probe, "/healthz").await;
    while health.0 != 200 && started.elapsed() < Duration::from_secs(5) {
        drop(tokio::net::TcpStream::connect(serve.webhook).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        health = get_on(&mut probe, "/healthz").await;
    }
    assert_eq!(health, (200, "ok\n".to_owned()), "healthy again within {:?}", started.elapsed());
}

/// An 8 MiB body, over the default 7 MiB limit.
fn oversized_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("big.json");
    std::fs::write(&file, vec![b'x'; 8 * 1024 * 1024]).expect("write");
    file
}

#[test]
fn oversized_bodies_get_a_413_that_every_client_reads() {
    let (serve, _pki, dir) = serve_with_pair(&[]);
    let big = oversized_file(dir.path());
    let ca = dir.path().join("ca.crt");
    let curl = |version: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", version, "--cacert"])
            .arg(&ca)
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", big.display()))
            .arg(serve.url())
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("--http1.1"), "413", "curl over HTTP/1.1");
    assert_eq!(curl("--http2"), "413", "curl over HTTP/2");
    let python = Command::new("python3")
        .arg("-c")
        .arg(
            "import http.client, ssl, sys\n\
             ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
             c = http.client.HTTPSConnection('127.0.0.1', int(sys.argv[2]), context=ctx)\n\
             c.request('POST', '/mutate', body=b'x' * (8 << 20), headers={'content-type': 'application/json'})\n\
             print(c.getresponse().status)",
        )
        .arg(&ca)
        .arg(serve.webhook.port().to_string())
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&python.stdout).trim(), "413", "{}", String::from_utf8_lossy(&python.stderr));
    let go = Command::new(go_client())
        .args(["oversized", &serve.url(), &ca.to_string_lossy(), &(8 << 20).to_string()])
        .output()
        .expect("go client");
    let said = String::from_utf8_lossy(&go.stdout);
    assert!(said.starts_with("413 request body exceeds the 7340032-byte limit"), "Go's client: {said}");
}

#[tokio::test]
async fn an_idle_http2_connection_and_a_half_sent_metrics_request_are_closed() {
    let (serve, pki, _dir) = serve_with_pair(&["--idle-timeout", "1s", "--read-timeout", "1s"]);
    let mut half = tokio::net::TcpStream::connect(serve.metrics).await.expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\n").await.expect("write");
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), half.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a half-sent request on the metrics port is closed: {read:?}");

    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    roots.add_parsable_certificates(rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()).flatten());
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(serve.webhook).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut h2 = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let started = Instant::now();
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), h2.read_to_end(&mut frames)).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(900), "after the idle timeout: {:?}", started.elapsed());
}
