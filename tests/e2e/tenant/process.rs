//! Against the real `serve` process, whoever reaches its ports: memory under the worst legal reviews, clients that
//! never read their answers, slow uploads, idle connections at the cap on either port, a log pipe nobody reads,
//! and SIGTERM with a review in flight.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use otel_injector::testing::hostile;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use crate::common::serve::{BIN, Serve, pair_in};
use crate::lifecycle::{client, go_client, post, review_body, serve_with_pair};

/// A TLS connection to the webhook port, speaking `alpn`, with a receive buffer of `recv_buffer` bytes if given.
async fn tls(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
    recv_buffer: Option<u32>,
) -> TlsStream<tokio::net::TcpStream> {
    try_tls(addr, ca_pem, alpn, recv_buffer).await.expect("connected")
}

/// [`tls`], or why it could not connect.
async fn try_tls(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
    recv_buffer: Option<u32>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten());
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let tcp = socket.connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// An HTTP/1.1 POST of `body` to `/mutate`, as bytes.
fn request(body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// Reads one HTTP/1.1 answer (headers and a `content-length` body): status and body.
async fn answer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, _)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= head.len() + 4 + length {
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                return (status, buf[head.len() + 4..head.len() + 4 + length].to_vec());
            }
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before the answer was complete: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The Go client like the API server's: `n` reviews, `concurrency` at once, on one keep-alive pool.
fn load(url: &str, dir: &std::path::Path, n: usize, concurrency: usize) -> Value {
    let body = dir.join("review.json");
    std::fs::write(&body, review_body()).expect("write");
    let ca = dir.join("ca.crt");
    let out = Command::new(go_client())
        .args(["load", url, &ca.to_string_lossy(), &body.to_string_lossy()])
        .args([n.to_string(), concurrency.to_string()])
        .output()
        .expect("the Go client runs");
    let said = String::from_utf8_lossy(&out.stderr);
    let mut result: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("the Go client said: {said}"));
    // What went wrong, if anything did, travels with the figures into the assertion messages.
    result["said"] = said.lines().take(5).collect::<Vec<_>>().join("; ").into();
    result
}

fn mib(serve: &Serve, field: &str) -> u64 {
    serve.memory_kb(field) / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worst_legal_reviews_25_at_once_stay_within_64_mib_and_give_it_back() {
    let _turn = crate::harness::HEAVY.lock().await;
    let (serve, pki, _dir) = serve_with_pair(&["--workloads", "Pod,Deployment"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = mib(&serve, "VmRSS");
    let reviews = hostile::all(hostile::MAX_OBJECT);
    let client = client(&pki.ca_pem);
    let sends = (0..25).map(|i| {
        let (client, url, body) = (client.clone(), serve.url(), reviews[i % reviews.len()].1.clone());
        async move {
            let response = client.post(url).header("content-type", "application/json").body(body).send().await;
            response.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
        }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == Ok(200)), "{statuses:?}");
    let peak = mib(&serve, "VmHWM");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = mib(&serve, "VmRSS");
    eprintln!("25 worst legal reviews at once: idle {idle} MiB, peak {peak} MiB, 10 s later {held} MiB");
    // A release build idles at about 10 MiB: under 64 MiB at the peak, under 40 MiB 10 s later (a debug build
    // idles higher; the growth is what is bounded). Before: 114 MiB at the peak, 91 MiB held.
    assert!(peak - idle < 54, "peak {peak} MiB from {idle} MiB");
    assert!(held - idle < 30, "{held} MiB held from {idle} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_answers_are_cut_off_and_hold_little() {
    let _turn = crate::harness::HEAVY.lock().await;
    let (serve, pki, _dir) = serve_with_pair(&["--write-timeout", "2s"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = mib(&serve, "VmRSS");
    let large = hostile::pod_review(&hostile::large_answer()).into_bytes();
    // Six HTTP/1.1 clients with 4 KiB receive buffers that never read their 1.2 MiB answers.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut stream = tls(serve.webhook, &pki.ca_pem, b"http/1.1", Some(4096)).await;
        stream.write_all(&request(&large)).await.expect("sent");
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = post(&serve, &pki.ca_pem, &review_body()).await;
    assert_eq!(status, 200, "everyone else is answered meanwhile");
    let held_h1 = mib(&serve, "VmRSS");
    // Past the write timeout, each is cut off, having been sent only the part that fits in the socket buffers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for mut stream in stalled {
        let mut got = Vec::new();
        // Bounded generously: on two cores shared with the rest of the suite (a debug build, six 1.2 MiB answers being
        // made at once) an answer can start late, and its cut-off comes the write timeout after it stalls.
        let ended = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut got)).await;
        assert!(ended.is_ok(), "the connection was closed");
        assert!(got.len() < 300_000, "cut off after {} bytes", got.len());
    }
    // Thirty-two HTTP/2 streams whose window never opens: their answers hold the budget until the connection is
    // cut off (the rest wait for room).
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA");
    let h2 = reqwest::Client::builder()
        .tls_certs_only([ca])
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(0)
        .build()
        .expect("h2 client");
    let mut shut = Vec::new();
    for _ in 0..32 {
        let response = h2.post(serve.url()).header("content-type", "application/json").body(large.clone()).send();
        shut.push(tokio::spawn(response));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = post(&serve, &pki.ca_pem, &review_body()).await;
    assert_eq!(status, 200, "everyone else is answered meanwhile");
    let held_h2 = mib(&serve, "VmRSS");
    eprintln!(
        "1.2 MiB answers never read: 6 HTTP/1.1 clients {idle} -> {held_h1} MiB, 32 HTTP/2 streams -> {held_h2} MiB"
    );
    // Before: 625 MiB for the six, 1.6 GiB for the streams.
    assert!(held_h1 - idle < 40, "{held_h1} MiB from {idle} MiB");
    assert!(held_h2 - idle < 40, "{held_h2} MiB from {idle} MiB");
    for response in shut {
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            match response.await.expect("task") {
                Ok(response) => response.bytes().await.map(|b| b.len()),
                Err(e) => Err(e),
            }
        })
        .await
        .expect("ended in time");
        assert!(ended.is_err(), "the stream was cut off, not completed: {ended:?}");
    }
    let (status, _) = post(&serve, &pki.ca_pem, &review_body()).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_cannot_hold_the_body_budget_hostage() {
    let _turn = crate::harness::HEAVY.lock().await;
    let (serve, pki, dir) = serve_with_pair(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    // 67 senders that each declare 3 MB, send 64 KiB, then a byte a second; cut off, they come back.
    let mut senders = Vec::new();
    for _ in 0..67 {
        let (stop, addr, ca) = (stop.clone(), serve.webhook, pki.ca_pem.clone());
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let Ok(mut stream) = try_tls(addr, &ca, b"http/1.1", None).await else { return };
                let head = "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3000000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&vec![b' '; 64 * 1024]).await;
                while !stop.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if stream.write_all(b" ").await.is_err() || stream.flush().await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = tokio::task::spawn_blocking({
        let (url, dir) = (serve.url(), dir.path().to_owned());
        move || load(&url, &dir, 300, 10)
    })
    .await
    .expect("load");
    eprintln!("300 reviews beside 67 slow uploads: {result}");
    // Before: 198 of 300 got 503, the rest waited 2.4 s.
    assert_eq!(result["failures"], 0.0, "{result}");
    assert!(result["max_ms"].as_f64().unwrap_or(f64::MAX) < 2000.0, "{result}");
    // Each slow sender is cut off: for arriving too slowly once it has room, or, waiting in line (where its first
    // part no longer counts against the small reviews), at the read timeout at the latest.
    let cut_off = || {
        let metric = |reason: &str| {
            serve.metric(&format!("otel_injector_admission_errors_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
        };
        ["too_slow", "busy", "timeout"].map(metric)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while cut_off().iter().sum::<f64>() < 67.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let [slow, busy, timeout] = cut_off();
    eprintln!("slow senders cut off: {slow} too slow, {busy} found no room, {timeout} at the read timeout");
    assert!(slow + busy + timeout >= 67.0, "every slow sender was cut off at least once");
    stop.store(true, Ordering::Release);
    senders.iter().for_each(|s| s.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_give_way_to_the_api_server_at_the_cap() {
    let _turn = crate::harness::HEAVY.lock().await;
    let (serve, pki, dir) = serve_with_pair(&["--max-connections", "64"]);
    // 64 connections that sent one review each and now idle (keep-alive): the cap is full.
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut stream = tls(serve.webhook, &pki.ca_pem, b"http/1.1", None).await;
        stream.write_all(&request(&review_body())).await.expect("sent");
        assert_eq!(answer(&mut stream).await.0, 200);
        idle.push(stream);
    }
    let result = tokio::task::spawn_blocking({
        let (url, dir) = (serve.url(), dir.path().to_owned());
        move || load(&url, &dir, 200, 25)
    })
    .await
    .expect("load");
    eprintln!("200 reviews from an API-server-like client with the cap full of idle connections: {result}");
    // Before: 500 of 500 failed.
    assert_eq!(result["failures"], 0.0, "{result}");
    assert!(serve.metric("otel_injector_connections_total{event=\"evicted\"}").unwrap_or(0.0) >= 25.0);
    drop(idle);
}

#[tokio::test]
async fn idle_connections_on_the_metrics_port_cannot_lock_out_the_probes() {
    let _turn = crate::harness::HEAVY.lock().await;
    let (serve, _pki, _dir) = serve_with_pair(&["--max-connections", "64"]);
    let mut idle = Vec::new();
    for _ in 0..80 {
        let mut tcp = tokio::net::TcpStream::connect(serve.metrics).await.expect("connect");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        // Some of the later ones make earlier ones give way; each is answered or closed.
        let _ = tokio::time::timeout(Duration::from_secs(2), answer(&mut tcp)).await;
        idle.push(tcp);
    }
    let (status, body) = serve.get("/readyz");
    // Before: 1,030 idle connections reset the kubelet's probe.
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_pipe_nobody_reads_never_stops_admission() {
    let _turn = crate::harness::HEAVY.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pair_in(dir.path());
    let port = |()| std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (webhook, metrics) = (port(()), port(()));
    let mut child = Command::new(BIN)
        .args(["serve", "--default", "inject", "--log-format", "json", "--log-level", "debug"])
        .args(["--listen", &format!("127.0.0.1:{webhook}"), "--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    // Its stdout and stderr are pipes nobody reads: they fill after a few dozen lines.
    let ops = format!("http://127.0.0.1:{metrics}");
    let started = Instant::now();
    while crate::common::curl_get(&format!("{ops}/readyz")).0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let client = client(&pki.ca_pem);
    let url = format!("https://127.0.0.1:{webhook}/mutate");
    for round in 0..150 {
        let sends =
            (0..8).map(|_| client.post(&url).header("content-type", "application/json").body(review_body()).send());
        for response in futures::future::join_all(sends).await {
            let response = tokio::time::timeout(Duration::from_secs(5), async { response }).await.expect("in time");
            assert_eq!(response.expect("answered").status(), 200, "round {round}");
        }
    }
    assert_eq!(crate::common::curl_get(&format!("{ops}/readyz")).0, 200);
    let text = crate::common::curl_get(&format!("{ops}/metrics")).1;
    let dropped = crate::common::metric_in(&text, "otel_injector_log_lines_dropped_total").unwrap_or(0.0);
    eprintln!("1200 admissions with a log pipe nobody reads: {dropped} lines dropped and counted");
    // Before: the webhook stopped answering after 79 admissions.
    assert!(dropped > 0.0, "{text}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_heavy_review_in_flight_answers_it_and_exits_within_the_grace_period() {
    let _turn = crate::harness::HEAVY.lock().await;
    let (mut serve, pki, _dir) = serve_with_pair(&[]);
    let heavy = hostile::pod_review(&hostile::references_at_limits(hostile::MAX_OBJECT)).into_bytes();
    let whole = request(&heavy);
    let mut stream = tls(serve.webhook, &pki.ca_pem, b"http/1.1", None).await;
    let half = whole.len() / 2;
    stream.write_all(&whole[..half]).await.expect("first half");
    serve.terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stream.write_all(&whole[half..]).await.expect("second half");
    let (status, body) = answer(&mut stream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let review: Value = serde_json::from_slice(&body).expect("an AdmissionReview");
    assert!(review["response"]["patch"].is_string(), "answered in full, patch and all");
    let exited = tokio::task::spawn_blocking(move || serve.wait(Duration::from_secs(30)).map(|s| (s, serve)))
        .await
        .expect("joined");
    let took = signalled.elapsed();
    eprintln!("SIGTERM with a 3 MiB review in flight: answered, exited after {took:?}");
    // Before: exited 38.5 s later (the pod's grace period is 30 s), the review's connection dropped unanswered.
    assert!(exited.is_some_and(|(s, _)| s.success()), "exited cleanly within 30 s");
    assert!(took < Duration::from_secs(30));
}
