//! An OTLP receiver for the SDK tests: traces, metrics and logs over gRPC and HTTP/protobuf, on as many addresses as
//! a test needs (the gateway on `:4317` and `:4318`, a vendor's endpoint), recording for every export where it
//! arrived, how, with which headers, and the resource it carried. What arrived where it must not is as visible as
//! what arrived where it should.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub use super::otlp::Transport;

/// Which signal an export carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
    /// Log records.
    Logs,
}

/// One export request as received.
#[derive(Debug, Clone)]
pub struct Export {
    /// The address it arrived at (`ip:port`, as the test asked for it).
    pub at: String,
    /// gRPC or HTTP.
    pub transport: Transport,
    /// Its signal.
    pub signal: Signal,
    /// Its headers (gRPC metadata), lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The string attributes of its (first) resource.
    pub resource: BTreeMap<String, String>,
    /// Of a trace export, each span's name and kind (OTLP's number: 2 is `SERVER`).
    pub spans: Vec<(String, i32)>,
}

/// Each span's name and kind in a trace export.
fn spans_of(body: &ExportTraceServiceRequest) -> Vec<(String, i32)> {
    let all = body.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
    all.map(|s| (s.name.clone(), s.kind)).collect()
}

/// Receivers on their own thread, recording every export.
pub struct SdkSink {
    exports: Arc<Mutex<Vec<Export>>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

#[derive(Clone)]
struct Recorder {
    at: String,
    transport: Transport,
    exports: Arc<Mutex<Vec<Export>>>,
}

impl Recorder {
    fn record(
        &self,
        signal: Signal,
        headers: BTreeMap<String, String>,
        resource: Option<&Resource>,
        spans: Vec<(String, i32)>,
    ) {
        let resource = resource.map(|r| strings(&r.attributes)).unwrap_or_default();
        let export = Export { at: self.at.clone(), transport: self.transport, signal, headers, resource, spans };
        self.exports.lock().expect("exports").push(export);
    }
}

fn strings(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn metadata(map: &tonic::metadata::MetadataMap) -> BTreeMap<String, String> {
    map.clone()
        .into_headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = metadata(request.metadata());
        let body = request.into_inner();
        let spans = spans_of(&body);
        self.record(Signal::Traces, headers, body.resource_spans.first().and_then(|r| r.resource.as_ref()), spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = metadata(request.metadata());
        let body = request.into_inner();
        let resource = body.resource_metrics.first().and_then(|r| r.resource.as_ref());
        self.record(Signal::Metrics, headers, resource, Vec::new());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl LogsService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = metadata(request.metadata());
        let body = request.into_inner();
        self.record(Signal::Logs, headers, body.resource_logs.first().and_then(|r| r.resource.as_ref()), Vec::new());
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

/// Decodes an OTLP/HTTP protobuf body and records it; the empty success answer of the signal, or a 400.
fn http_export(
    recorder: &Recorder,
    signal: Signal,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let headers: BTreeMap<String, String> =
        headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(|r| {
            let resource = r.resource_spans.first().and_then(|r| r.resource.clone());
            (resource, spans_of(&r), ExportTraceServiceResponse { partial_success: None }.encode_to_vec())
        }),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(|r| {
            let resource = r.resource_metrics.first().and_then(|r| r.resource.clone());
            (resource, Vec::new(), ExportMetricsServiceResponse { partial_success: None }.encode_to_vec())
        }),
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(|r| {
            let resource = r.resource_logs.first().and_then(|r| r.resource.clone());
            (resource, Vec::new(), ExportLogsServiceResponse { partial_success: None }.encode_to_vec())
        }),
    };
    match decoded {
        Ok((resource, spans, answer)) => {
            recorder.record(signal, headers, resource.as_ref(), spans);
            (axum::http::StatusCode::OK, [("content-type", "application/x-protobuf")], answer).into_response()
        }
        Err(_) => (axum::http::StatusCode::BAD_REQUEST, "not an OTLP protobuf export").into_response(),
    }
}

impl SdkSink {
    /// Listens on each `(ip:port, transport)` (port 0: any free one; see [`SdkSink::start`]'s answer).
    pub fn start(listen: &[(&str, Transport)]) -> (Self, Vec<String>) {
        let exports = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (bound, addrs) = std::sync::mpsc::channel::<Vec<SocketAddr>>();
        let listen: Vec<(String, Transport)> = listen.iter().map(|(a, t)| ((*a).to_owned(), *t)).collect();
        let recorded = exports.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let mut addrs = Vec::new();
                let mut servers = Vec::new();
                for (addr, transport) in listen {
                    let listener =
                        tokio::net::TcpListener::bind(&addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
                    let local = listener.local_addr().expect("addr");
                    addrs.push(local);
                    let recorder = Recorder { at: local.to_string(), transport, exports: recorded.clone() };
                    let mut stopped = stopped.clone();
                    let until = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    servers.push(tokio::spawn(serve(listener, recorder, until)));
                }
                bound.send(addrs).expect("send");
                for server in servers {
                    let _ = server.await;
                }
            });
        });
        let addrs = addrs.recv_timeout(Duration::from_secs(10)).expect("sink bound");
        (Self { exports, stop: Some(stop) }, addrs.iter().map(ToString::to_string).collect())
    }

    /// Every export received so far.
    pub fn exports(&self) -> Vec<Export> {
        self.exports.lock().expect("exports").clone()
    }

    /// The exports once `done` says they are all there, or whatever arrived by `within`.
    pub fn wait_until(&self, within: Duration, done: impl Fn(&[Export]) -> bool) -> Vec<Export> {
        let started = Instant::now();
        loop {
            let exports = self.exports();
            if done(&exports) || started.elapsed() >= within {
                return exports;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        self.exports.lock().expect("exports").clear();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    recorder: Recorder,
    until: impl std::future::Future<Output = ()> + Send + 'static,
) {
    match recorder.transport {
        Transport::Grpc => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let gzip = tonic::codec::CompressionEncoding::Gzip;
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(recorder.clone()).accept_compressed(gzip))
                .add_service(MetricsServiceServer::new(recorder.clone()).accept_compressed(gzip))
                .add_service(LogsServiceServer::new(recorder).accept_compressed(gzip))
                .serve_with_incoming_shutdown(incoming, until)
                .await;
        }
        Transport::Http => {
            let route = |signal: Signal| {
                let recorder = recorder.clone();
                axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let recorder = recorder.clone();
                    async move { http_export(&recorder, signal, &headers, &gunzip(&headers, body)) }
                })
            };
            let app = axum::Router::new()
                .route("/v1/traces", route(Signal::Traces))
                .route("/v1/metrics", route(Signal::Metrics))
                .route("/v1/logs", route(Signal::Logs));
            let _ = axum::serve(listener, app).with_graceful_shutdown(until).await;
        }
    }
}

/// The body, gunzipped when the request says it is gzip (SDKs may compress).
fn gunzip(headers: &axum::http::HeaderMap, body: axum::body::Bytes) -> Vec<u8> {
    let gzip =
        headers.get("content-encoding").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return body.to_vec();
    }
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(&body[..]);
    match std::io::Read::read_to_end(&mut decoder, &mut out) {
        Ok(_) => out,
        Err(_) => body.to_vec(),
    }
}

impl Drop for SdkSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}
