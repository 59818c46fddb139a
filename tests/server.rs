//! The real server over real TLS on port 0: protocol versions, keep-alive, bad bodies, limits, drain.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, apply, patch_of};
use futures::future::BoxFuture;
use otel_injector::cli::preview::{self, Input, Options};
use otel_injector::cluster::namespaces::{Fetched, Fixed, Namespaces};
use otel_injector::engine::config::{Config, DefaultMode};
use otel_injector::engine::policy::NamespaceMeta;
use otel_injector::engine::workload::WorkloadKind;
use otel_injector::testing::fixtures::{container, pod, review};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn inject_all() -> Config {
    Config { default: DefaultMode::Inject, workloads: WorkloadKind::ALL.to_vec(), ..Config::default() }
}

fn web_pod() -> Value {
    pod("web").label("app.kubernetes.io/name", "web").container(container("app").image("web:3")).build()
}

#[tokio::test]
async fn v1_review_over_tls_returns_a_patch_that_applies() {
    let server = TestServer::start(inject_all()).await;
    let request = review(&web_pod(), "CREATE", "shop");
    let (status, body) = server.post(&request).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["response"]["uid"], request["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    let patched = apply(&web_pod(), &patch_of(&body).0);
    let env = patched["spec"]["containers"][0]["env"].as_array().expect("env added");
    assert!(env.iter().any(|e| e["name"] == "OTEL_SERVICE_NAME" && e["value"] == "web"));
    server.server.shutdown().await;
}

#[tokio::test]
async fn v1beta1_review_is_answered_in_v1beta1() {
    let server = TestServer::start(inject_all()).await;
    let mut request = review(&web_pod(), "CREATE", "shop");
    request["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let (status, body) = server.post(&request).await;
    assert_eq!((status, body["apiVersion"].as_str()), (200, Some("admission.k8s.io/v1beta1")));
    assert!(!patch_of(&body).0.0.is_empty());
    server.server.shutdown().await;
}

#[tokio::test]
async fn http2_is_accepted() {
    let server = TestServer::start(inject_all()).await;
    let body = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    let response = server.send(true, body).await;
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(!patch_of(&body).0.0.is_empty());
    server.server.shutdown().await;
}

/// A raw TLS connection speaking HTTP/1.1, trusting only the server's CA.
async fn connect(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        rustls_pki_types::CertificateDer::pem_slice_iter(server.ca_pem.as_bytes()).flatten(),
    );
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.server.webhook_addr()).await.expect("connect");
    connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("handshake")
}

/// Sends raw HTTP/1.1 requests over one TLS connection and reads each response in turn.
async fn raw_exchange(server: &TestServer, requests: &[Vec<u8>]) -> Vec<String> {
    let mut tls = connect(server).await;
    let mut answers = Vec::new();
    for request in requests {
        tls.write_all(request).await.expect("write");
        answers.push(read_response(&mut tls).await);
    }
    answers
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body).
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read");
        assert!(n > 0, "connection closed mid-response: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    head + &String::from_utf8_lossy(&body)
}

fn http_request(body: &[u8], content_type: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test]
async fn http1_keep_alive_serves_many_reviews_on_one_connection() {
    let server = TestServer::start(inject_all()).await;
    let body = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    let requests: Vec<Vec<u8>> = (0..5).map(|_| http_request(&body, "application/json")).collect();
    let answers = raw_exchange(&server, &requests).await;
    assert_eq!(answers.len(), 5);
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"patchType\":\"JSONPatch\""));
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_get_clear_4xx_answers() {
    let server = TestServer::start(inject_all()).await;
    let cases: [(&[u8], &str, &str, &str); 5] = [
        (b"{not json", "application/json", "HTTP/1.1 400", "malformed AdmissionReview: invalid JSON"),
        (b"", "application/json", "HTTP/1.1 400", "malformed AdmissionReview: invalid JSON: EOF"),
        (br#"{"apiVersion":"v1","kind":"Pod"}"#, "application/json", "HTTP/1.1 400", "expected kind AdmissionReview"),
        (b"{}", "text/plain", "HTTP/1.1 415", "unsupported content type \"text/plain\""),
        (b"{}", "application/json; charset=utf-8", "HTTP/1.1 400", "malformed AdmissionReview"),
    ];
    let requests: Vec<Vec<u8>> = cases.iter().map(|(body, ct, _, _)| http_request(body, ct)).collect();
    let answers = raw_exchange(&server, &requests).await;
    for ((_, _, status, message), answer) in cases.iter().zip(&answers) {
        assert!(answer.starts_with(status), "{answer}");
        assert!(answer.contains(message), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(body.trim_end().lines().count(), 1, "one-line reason: {body:?}");
    }
    let metrics = reqwest::get(server.ops_url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"otel_injector_admission_errors_total{reason="malformed"} 4"#), "{metrics}");
    assert!(metrics.contains(r#"otel_injector_admission_errors_total{reason="unsupported_media_type"} 1"#));
    server.server.shutdown().await;
}

#[tokio::test]
async fn an_8_mib_body_is_refused_with_413() {
    let server = TestServer::start(inject_all()).await;
    let mut big = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    big.resize(8 * 1024 * 1024, b' ');
    for http2 in [false, true] {
        let response = server.send(http2, big.clone()).await;
        assert_eq!(response.status(), 413, "http2={http2}");
        let text = response.text().await.expect("text");
        assert_eq!(text, "request body exceeds the 7340032-byte limit (maxRequestBytes)\n");
    }
    // Just under the limit is still read and answered.
    let mut under = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    under.resize(7 * 1024 * 1024 - 1024, b' ');
    assert_eq!(server.send(false, under).await.status(), 200);
    server.server.shutdown().await;
}

#[tokio::test]
async fn delete_with_a_null_object_is_allowed_without_a_patch() {
    let server = TestServer::start(inject_all()).await;
    let mut request = review(&web_pod(), "DELETE", "shop");
    request["request"]["oldObject"] = request["request"]["object"].take();
    let (status, body) = server.post(&request).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"], json!({"uid": request["request"]["uid"], "allowed": true, "status": {}}));
    server.server.shutdown().await;
}

#[tokio::test]
async fn dry_run_gets_the_same_patch() {
    let server = TestServer::start(inject_all()).await;
    let request = review(&web_pod(), "CREATE", "shop");
    let mut dry = request.clone();
    dry["request"]["dryRun"] = true.into();
    let (_, normal) = server.post(&request).await;
    let (_, dry) = server.post(&dry).await;
    assert_eq!(normal["response"]["patch"], dry["response"]["patch"]);
    assert!(normal["response"]["patch"].is_string());
    server.server.shutdown().await;
}

#[tokio::test]
async fn webhook_and_preview_agree_byte_for_byte() {
    let config = inject_all();
    let server = TestServer::start(config.clone()).await;
    let objects = [
        web_pod(),
        pod("")
            .container(container("a").env("JAVA_TOOL_OPTIONS", "-Dx=$(OTEL_SERVICE_NAME)"))
            .template_of("Deployment", "d"),
        pod("").annotation("otel-injector.io/signals", "traces").container(container("c")).template_of("CronJob", "c"),
        pod("p")
            .annotation("otel-injector.io/sampling-ratio", "7")
            .container(container("c").env("OTEL_RESOURCE_ATTRIBUTES", "a=b"))
            .build(),
    ];
    for object in objects {
        let (_, response) = server.post(&review(&object, "CREATE", "default")).await;
        let (_, webhook_bytes) = patch_of(&response);
        let input = Input { name: "x.json".into(), text: object.to_string() };
        let options = Options::new(otel_injector::cli::OutputFormat::Patch, config.clone());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        preview::run(&[input], &options, &mut out, &mut err).expect("preview");
        assert_eq!(out.strip_suffix(b"\n").expect("one line"), webhook_bytes.as_slice());
        let warnings = response["response"]["warnings"].as_array().map_or(0, Vec::len);
        assert_eq!(String::from_utf8_lossy(&err).lines().count(), warnings, "same warnings");
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn namespace_policy_reaches_the_engine() {
    let annotations = [("otel-injector.io/inject".to_owned(), "true".to_owned())].into();
    let ns = otel_injector::engine::policy::NamespaceMeta { annotations, ..Default::default() };
    let server =
        TestServer::start_with(Config::default(), Arc::new(Fixed::new([("shop".into(), ns)])), |_, _| {}).await;
    let (_, in_shop) = server.post(&review(&web_pod(), "CREATE", "shop")).await;
    let (_, elsewhere) = server.post(&review(&web_pod(), "CREATE", "other")).await;
    assert!(in_shop["response"]["patch"].is_string());
    assert!(elsewhere["response"].get("patch").is_none());
    server.server.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_on_the_plain_port() {
    let server = TestServer::start(inject_all()).await;
    let get = |path: &str| {
        let url = server.ops_url(path);
        async move {
            let r = reqwest::get(url).await.expect("response");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get("/readyz").await, (200, "ok\n".to_owned()));
    server.post(&review(&web_pod(), "CREATE", "shop")).await;
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"otel_injector_admission_requests_total{kind="Pod",operation="CREATE",decision="instrumented",reason="default"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("otel_injector_admission_duration_seconds_count 1"));
    server.server.shutdown().await;
}

/// Issue 20: a container drawing from a Secret, which the webhook never reads, is visible in the warning, the status
/// annotation and a metric.
#[tokio::test]
async fn a_container_fed_by_a_secret_is_counted_and_recorded() {
    let server = TestServer::start(inject_all()).await;
    let object = pod("web")
        .container(container("app").env_from(json!({"secretRef": {"name": "creds"}})))
        .container(container("sidekick"))
        .build();
    let (_, answer) = server.post(&review(&object, "CREATE", "shop")).await;
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("Secret creds (envFrom) is never read"), "{warnings}");
    let (patch, _) = patch_of(&answer);
    let out = apply(&object, &patch);
    let status = out["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("a status annotation");
    let status: Value = serde_json::from_str(status).expect("JSON");
    assert_eq!(status["secretFed"], json!(["app"]), "{status}");
    let metrics = reqwest::get(server.ops_url("/metrics")).await.expect("response").text().await.expect("text");
    assert!(metrics.contains("otel_injector_admission_secret_fed_containers_total 1"), "{metrics}");
    server.server.shutdown().await;
}

/// Issue 22: an agent added is a warning-free patch, a line of the status and a metric by language and delivery.
#[tokio::test]
async fn an_agent_added_is_counted_by_language_and_delivery() {
    let server = TestServer::start(inject_all()).await;
    let object = pod("web").annotation("otel-injector.io/inject-nodejs", "true").container(container("app")).build();
    let (_, answer) = server.post(&review(&object, "CREATE", "shop")).await;
    assert!(answer["response"].get("warnings").is_none(), "{answer}");
    let (patch, _) = patch_of(&answer);
    let out = apply(&object, &patch);
    let status = out["metadata"]["annotations"]["otel-injector.io/status"].as_str().expect("a status annotation");
    let status: Value = serde_json::from_str(status).expect("JSON");
    assert_eq!(status["agents"], json!({"app": ["nodejs"]}), "{status}");
    let metrics = reqwest::get(server.ops_url("/metrics")).await.expect("response").text().await.expect("text");
    // No cluster here, so the server's version is unknown and `auto` copies with an init container.
    assert!(
        metrics.contains(r#"otel_injector_admission_agents_total{language="nodejs",delivery="init-container"} 1"#),
        "{metrics}"
    );
    server.server.shutdown().await;
}

/// Opens a TLS connection and sends the headers and half the body of a review, leaving it in flight.
async fn half_sent(server: &TestServer) -> (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Vec<u8>) {
    let mut tls = connect(server).await;
    let body = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    let request = http_request(&body, "application/json");
    let split = request.len() - body.len() / 2;
    tls.write_all(&request[..split]).await.expect("write");
    tls.flush().await.expect("flush");
    (tls, request[split..].to_vec())
}

#[tokio::test]
async fn a_slow_body_is_cut_off_by_the_read_timeout() {
    let server = TestServer::start_with(inject_all(), Arc::new(Fixed::default()), |_, p| {
        p.limits.read_timeout = Duration::from_millis(300)
    })
    .await;
    let (mut stalled, _rest) = half_sent(&server).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stalled)).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body not received within 300ms"));
    server.server.shutdown().await;
}

/// A namespace source whose lookups take their whole time budget: reviews stay at work for about a second.
struct SlowLookups;

impl Namespaces for SlowLookups {
    fn get(&self, _name: &str) -> Option<Arc<NamespaceMeta>> {
        None
    }

    fn fetch(&self, _name: &str, timeout: Duration) -> BoxFuture<'static, Fetched> {
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            Fetched::TimedOut
        })
    }

    fn synced(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        0
    }
}

#[tokio::test]
async fn overload_is_shed_with_503_instead_of_queued_and_slow_bodies_do_not_count() {
    let server = TestServer::start_with(inject_all(), Arc::new(SlowLookups), |_, p| p.limits.max_in_flight = 1).await;
    let (mut slow, rest) = half_sent(&server).await;
    let body = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    // At work for half a second (its namespace lookup takes half the caller's second), so the slow body can finish
    // within the minimum-rate grace.
    let at_work = tokio::spawn({
        let (client, url, body) = (server.client(false), format!("{}?timeout=1s", server.url()), body.clone());
        async move { client.post(url).header("content-type", "application/json").body(body).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.send(false, body).await.status(), 503, "the one slot is taken by a review at work");
    assert_eq!(at_work.await.expect("joined").expect("answered").status(), 200);
    slow.write_all(&rest).await.expect("finish the slow body");
    assert!(read_response(&mut slow).await.starts_with("HTTP/1.1 200"), "the slow body never took the slot");
    let metrics = reqwest::get(server.ops_url("/metrics")).await.expect("m").text().await.expect("t");
    assert!(metrics.contains(r#"otel_injector_admission_errors_total{reason="overloaded"} 1"#), "{metrics}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_reviews() {
    let server = TestServer::start(inject_all()).await;
    let (mut in_flight, rest) = half_sent(&server).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = server.server.webhook_addr();
    let shutdown = tokio::spawn(server.server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections while draining");
    in_flight.write_all(&rest).await.expect("finish the body");
    let answer = read_response(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("drained").expect("joined");
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_disconnected() {
    let server = TestServer::start_with(inject_all(), Arc::new(Fixed::default()), |_, p| {
        p.limits.read_timeout = Duration::from_millis(300)
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.server.webhook_addr()).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server closes the connection: {read:?}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_or_malformed_timeout_gets_our_one_line_400_and_is_counted() {
    let server = TestServer::start(inject_all()).await;
    let body = serde_json::to_vec(&review(&web_pod(), "CREATE", "shop")).expect("json");
    for (query, want) in [
        ("timeout=10s&timeout=5s", "bad query: timeout given more than once\n"),
        ("timeout=soon", "bad query: timeout \"soon\" is not a duration\n"),
    ] {
        let url = format!("{}?{query}", server.url());
        let response = server.client(false).post(url).header("content-type", "application/json").body(body.clone());
        let response = response.send().await.expect("answered");
        assert_eq!(response.status(), 400);
        assert_eq!(response.text().await.expect("text"), want);
    }
    let metrics = reqwest::get(server.ops_url("/metrics")).await.expect("m").text().await.expect("t");
    assert!(metrics.contains(r#"otel_injector_admission_errors_total{reason="bad_query"} 2"#), "{metrics}");
    server.server.shutdown().await;
}
