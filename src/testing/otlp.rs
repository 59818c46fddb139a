//! An in-process OTLP trace receiver (gRPC with tonic, HTTP/protobuf with axum), and collectors that are down: a
//! port that refuses and one that accepts and never answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::Value;

/// One span as received, with its resource.
#[derive(Debug, Clone)]
pub struct Received {
    /// The span's name.
    pub name: String,
    /// `SPAN_KIND_SERVER` is 2.
    pub kind: i32,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// Empty for a root.
    pub parent_span_id: String,
    /// `STATUS_CODE_ERROR` is 2.
    pub status: i32,
    /// The span's attributes, as JSON values.
    pub attributes: BTreeMap<String, Value>,
    /// Its resource's attributes, as JSON values.
    pub resource: BTreeMap<String, Value>,
    /// The `x-tenant` header (HTTP) or metadata (gRPC) of the export request that brought it.
    pub tenant: Option<String>,
}

impl Received {
    /// An attribute as a string (numbers and booleans rendered), if present.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attributes.get(key).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    }
}

/// How the receiver listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// A receiver on its own thread and runtime, recording every span it is sent.
pub struct Receiver {
    /// What to put in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
    counted: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Sink {
    spans: Arc<Mutex<Vec<Received>>>,
    counted: Arc<AtomicUsize>,
    /// Whether the spans are kept (the tests read them) or only counted (the benchmark's live collector).
    keep: bool,
}

impl Sink {
    fn take(&self, request: ExportTraceServiceRequest, tenant: Option<String>) {
        let n: usize = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        if !self.keep {
            self.counted.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for s in scope.spans {
                    spans.push(Received {
                        name: s.name,
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        status: s.status.map_or(0, |st| st.code),
                        attributes: attributes(&s.attributes),
                        resource: resource.clone(),
                        tenant: tenant.clone(),
                    });
                }
            }
        }
        // Counted once kept, so a reader that saw the count finds the spans.
        self.counted.fetch_add(n, Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let tenant = request.metadata().get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.take(request.into_inner(), tenant);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => Value::from(s.clone()),
                Some(Any::BoolValue(b)) => Value::from(*b),
                Some(Any::IntValue(i)) => Value::from(*i),
                Some(Any::DoubleValue(d)) => Value::from(*d),
                other => Value::from(format!("{other:?}")),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

impl Receiver {
    /// Starts a receiver speaking `transport` on 127.0.0.1.
    pub fn start(transport: Transport) -> Self {
        Self::start_at(transport, "127.0.0.1:0")
    }

    /// Starts a receiver speaking `transport` on `addr` (e.g. where a collector was down).
    pub fn start_at(transport: Transport, addr: &str) -> Self {
        Self::listen(transport, addr, true)
    }

    /// Starts a receiver on 127.0.0.1 that decodes every export and counts its spans, keeping none: a live collector
    /// for the benchmark that costs the machine what receiving costs, not what storing and indexing would.
    pub fn start_counting(transport: Transport) -> Self {
        Self::listen(transport, "127.0.0.1:0", false)
    }

    fn listen(transport: Transport, addr: &str, keep: bool) -> Self {
        let at = addr.to_owned();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let counted = Arc::new(AtomicUsize::new(0));
        let sink = Sink { spans: spans.clone(), counted: counted.clone(), keep };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&at).await.expect("bind");
                bound.send(listener.local_addr().expect("addr")).expect("send");
                let stopped = async {
                    let _ = stopped.await;
                };
                match transport {
                    Transport::Grpc => {
                        let incoming = tonic::transport::server::TcpIncoming::from(listener);
                        let _ = tonic::transport::Server::builder()
                            // Gzip, as collectors' OTLP exporters send by default.
                            .add_service(
                                TraceServiceServer::new(sink)
                                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                            )
                            .serve_with_incoming_shutdown(incoming, stopped)
                            .await;
                    }
                    Transport::Http => {
                        let app = axum::Router::new().route(
                            "/v1/traces",
                            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                                let sink = sink.clone();
                                let tenant = headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
                                async move {
                                    match ExportTraceServiceRequest::decode(body) {
                                        Ok(request) => {
                                            sink.take(request, tenant);
                                            let ok = ExportTraceServiceResponse { partial_success: None };
                                            (
                                                axum::http::StatusCode::OK,
                                                [("content-type", "application/x-protobuf")],
                                                ok.encode_to_vec(),
                                            )
                                        }
                                        Err(_) => (
                                            axum::http::StatusCode::BAD_REQUEST,
                                            [("content-type", "text/plain")],
                                            b"not an ExportTraceServiceRequest".to_vec(),
                                        ),
                                    }
                                }
                            }),
                        );
                        let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
                    }
                }
            });
        });
        let addr = addr.recv_timeout(Duration::from_secs(10)).expect("receiver bound");
        Self { endpoint: format!("http://{addr}"), spans, counted, stop: Some(stop) }
    }

    /// How many spans have been received.
    pub fn count(&self) -> usize {
        self.counted.load(Ordering::Relaxed)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }

    /// The spans once at least `n` whose names start with `name_prefix` have arrived (panics after `within`).
    pub fn wait_for(&self, name_prefix: &str, n: usize, within: Duration) -> Vec<Received> {
        self.wait_until(within, |spans| spans.iter().filter(|s| s.name.starts_with(name_prefix)).count() >= n)
    }

    /// The spans once `done` says they are all there (panics after `within`).
    pub fn wait_until(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(started.elapsed() < within, "spans awaited not received in {within:?}: {spans:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An endpoint on a port nothing listens on: connections are refused.
pub fn refusing() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// An endpoint that accepts connections and never answers (held until the guard drops).
pub fn black_hole() -> (String, std::net::TcpListener, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let accepting = listener.try_clone().expect("clone");
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in accepting.incoming().map_while(Result::ok) {
            keep.lock().expect("held").push(stream);
        }
    });
    (format!("http://{addr}"), listener, held)
}
