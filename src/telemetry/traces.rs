//! The webhook's own traces: one server span per admission (continuing the caller's W3C `traceparent` and
//! `baggage`), exported over OTLP when the standard variables configure an endpoint.
//!
//! The span is made with the SDK directly ([`ServerSpan`]), not through a `tracing` layer: the logs' span and the
//! exported one share their ids, and the exported one is named and given its attributes once, when the answer is
//! known (a layer would convert each field as it is recorded, and keep a second copy of every span).
//!
//! Exporting never slows admission down: ended spans go into a bounded queue that a background thread sends in
//! batches (the SDK's `BatchSpanProcessor`); when the queue is full, because the collector is slow or gone, spans
//! are dropped and counted (`otel_injector_spans_dropped_total`), as are spans whose export failed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanId, SpanKind, Status, TraceId, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};

use super::metrics::SpanDrops;
use crate::engine::syntax::{self, Protocol as Transport};

/// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048).
const DEFAULT_QUEUE: usize = 2048;

/// What the standard variables ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    /// `OTEL_SDK_DISABLED=true`: no spans at all (and no trace ids in logs).
    Disabled,
    /// No tracer; the logs still carry trace ids: the caller's trace, else a new one (no endpoint, or
    /// `OTEL_TRACES_EXPORTER=none`).
    Local,
    /// Spans exported to `endpoint` over `transport`.
    Export {
        /// Where spans are sent: the endpoint as configured, with `/v1/traces` added for HTTP when it came from
        /// the variable for all signals.
        endpoint: String,
        /// gRPC or HTTP/protobuf.
        transport: Transport,
    },
}

impl Setup {
    /// Reads `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` through `var`. Without a protocol, the endpoint's port decides (4317
    /// gRPC, 4318 HTTP), else HTTP/protobuf, the specification's default.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self::Disabled);
        }
        match set("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(Self::Local),
            Some(other) => return Err(format!("OTEL_TRACES_EXPORTER={other:?} is not supported: use otlp or none")),
        }
        let (endpoint_var, endpoint) = match ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .into_iter()
            .find_map(|name| set(name).map(|v| (name, v)))
        {
            Some(found) => found,
            None => return Ok(Self::Local),
        };
        let url = url::Url::parse(&endpoint).map_err(|e| format!("{endpoint_var}={endpoint:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{endpoint_var}={endpoint:?}: use http://host:port or https://host:port"));
        }
        let protocol = ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
            .into_iter()
            .find_map(|name| set(name).map(|v| (name, v)));
        let transport = match protocol {
            Some((_, p)) if p == "grpc" => Transport::Grpc,
            Some((_, p)) if p == "http/protobuf" => Transport::HttpProtobuf,
            Some((name, p)) => return Err(format!("{name}={p:?} is not supported: use grpc or http/protobuf")),
            None => syntax::transport_of(&endpoint).unwrap_or(Transport::HttpProtobuf),
        };
        let endpoint = match (transport, endpoint_var) {
            (Transport::HttpProtobuf, "OTEL_EXPORTER_OTLP_ENDPOINT") => {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            }
            _ => endpoint,
        };
        Ok(Self::Export { endpoint, transport })
    }
}

/// The tracer provider for `setup` (`None` without an exporter), counting dropped spans in `drops`, and the
/// [`Gate`] that says whether new spans can be delivered. Must be called inside the Tokio runtime (the gRPC client
/// lives there).
pub fn provider(setup: &Setup, drops: &SpanDrops) -> Result<Option<(SdkTracerProvider, Gate)>, String> {
    let builder = SdkTracerProvider::builder().with_resource(resource());
    let (endpoint, transport) = match setup {
        Setup::Disabled | Setup::Local => return Ok(None),
        Setup::Export { endpoint, transport } => (endpoint, *transport),
    };
    // The exporters read headers and timeout from the standard variables themselves.
    let exporter = match transport {
        Transport::Grpc => {
            let mut grpc = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint);
            if endpoint.starts_with("https://") {
                grpc = grpc.with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
            }
            grpc.build()
        }
        Transport::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build(),
    }
    .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let capacity = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_QUEUE);
    let pressure = Arc::new(Pressure::new(capacity, drops.clone()));
    let exporter = Dequeued { inner: exporter, pressure: pressure.clone() };
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(capacity).build())
        .build();
    let bounded = Bounded { inner: batch, pressure: pressure.clone() };
    Ok(Some((builder.with_span_processor(bounded).build(), Gate(pressure))))
}

/// `service.name` from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`, else `otel-injector`; the other
/// attributes of `OTEL_RESOURCE_ATTRIBUTES`; `service.version`.
fn resource() -> Resource {
    let version = KeyValue::new("service.version", env!("CARGO_PKG_VERSION"));
    let detected = Resource::builder().with_attribute(version.clone()).build();
    let named =
        detected.get(&Key::from_static_str("service.name")).is_some_and(|n| !n.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name("otel-injector").with_attribute(version).build()
    }
}

/// The tracer of a webhook that exports spans, and the [`Gate`] that says whether they can be delivered.
#[derive(Debug, Clone)]
pub struct Tracer {
    gate: Gate,
    tracer: SdkTracer,
}

impl Tracer {
    /// The tracer `provider` makes, behind `gate`.
    pub fn new(provider: &SdkTracerProvider, gate: Gate) -> Self {
        Self { gate, tracer: provider.tracer("otel-injector") }
    }
}

/// Where an admission's trace ids come from.
#[derive(Debug, Clone, Default)]
pub enum TraceIds {
    /// Nowhere: no tracer, no ids in the logs (`OTEL_SDK_DISABLED=true`).
    #[default]
    None,
    /// The tracer: the exported span's ids (while its gate is open).
    Tracer(Tracer),
    /// Made for the logs alone: the caller's trace id (else a new one) and a new span id.
    LogsOnly,
}

impl TraceIds {
    /// Whether a new admission is traced: there is a tracer and its gate is open. An admission that is not is
    /// counted as `spans` dropped.
    pub fn traced(&self, spans: u64) -> bool {
        match self {
            Self::Tracer(tracer) => tracer.gate.admit(spans),
            Self::None | Self::LogsOnly => false,
        }
    }
}

/// An admission's server span in the tracer: started when the request arrives, parented on the caller's trace
/// context; named, given its attributes and ended in one call when the answer is known ([`ServerSpan::end`]). One
/// dropped before that ends as it is. Empty when the admission is not traced or the sampler left it out.
#[derive(Debug, Default)]
pub(crate) struct ServerSpan(Option<Span>);

impl ServerSpan {
    /// Starts the server span of a request with `headers` when `traced`; returns it with its trace and span ids
    /// for the logs. An admission not traced gets ids made for the logs alone (none with `TraceIds::None`).
    pub(crate) fn start(headers: &HeaderMap, ids: &TraceIds, traced: bool) -> (Self, Option<(TraceId, SpanId)>) {
        use opentelemetry::trace::TraceContextExt;
        use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
        if matches!(ids, TraceIds::None) {
            return (Self(None), None);
        }
        let parent = parent_from(headers);
        if let (TraceIds::Tracer(tracer), true) = (ids, traced) {
            let span = tracer
                .tracer
                .span_builder("admission")
                .with_kind(SpanKind::Server)
                .start_with_context(&tracer.tracer, &parent);
            let context = span.span_context().clone();
            if context.is_valid() {
                let recorded = span.is_recording().then_some(span);
                return (Self(recorded), Some((context.trace_id(), context.span_id())));
            }
        }
        let caller = parent.span().span_context().trace_id();
        let generator = RandomIdGenerator::default();
        let trace = if caller == TraceId::INVALID { generator.new_trace_id() } else { caller };
        (Self(None), Some((trace, generator.new_span_id())))
    }

    /// Whether the span is recorded (so its attributes are worth making).
    pub(crate) fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Names the span, gives it `attributes` (and an error status when `failed`), and ends it.
    pub(crate) fn end(self, name: String, attributes: Vec<KeyValue>, failed: bool) {
        let Some(mut span) = self.0 else { return };
        span.update_name(name);
        span.set_attributes(attributes);
        if failed {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// The caller's trace context from `traceparent`/`tracestate` and `baggage` (an empty context, so a new root,
/// when absent or malformed).
pub(crate) fn parent_from(headers: &HeaderMap) -> Context {
    if !headers.contains_key("traceparent") && !headers.contains_key("baggage") {
        // Nothing to continue (the API server sends neither unless its own tracing is on).
        return Context::new();
    }
    struct Headers<'a>(&'a HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    });
    PROPAGATOR.extract(&Headers(headers))
}

/// Whether spans can reach the collector now: how full the export queue is, and whether the exporter is backing
/// off after a failed export. Shared by the [`Gate`], the queue and the exporter; every span not delivered is
/// counted.
#[derive(Debug)]
struct Pressure {
    /// Spans handed to the batch processor and not yet to the exporter.
    queued: AtomicUsize,
    capacity: usize,
    /// Until when the exporter backs off, in nanoseconds after `epoch` (0: not backing off).
    backoff_until: AtomicU64,
    /// The current backoff, doubling from 1 s to 30 s while exports keep failing.
    backoff: std::sync::Mutex<Duration>,
    epoch: Instant,
    drops: SpanDrops,
}

impl Pressure {
    fn new(capacity: usize, drops: SpanDrops) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            capacity,
            backoff_until: AtomicU64::new(0),
            backoff: std::sync::Mutex::new(Duration::ZERO),
            epoch: Instant::now(),
            drops,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Why a span would be dropped if it were recorded now, if it would.
    fn blocked(&self) -> Option<&'static str> {
        let until = self.backoff_until.load(Ordering::Relaxed);
        if until != 0 && self.now() < until {
            Some("export_failed")
        } else if self.queued.load(Ordering::Relaxed) >= self.capacity {
            Some("queue_full")
        } else {
            None
        }
    }

    fn exported(&self, ok: bool) {
        let mut backoff = self.backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ok {
            *backoff = Duration::ZERO;
            self.backoff_until.store(0, Ordering::Relaxed);
        } else {
            *backoff = (*backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
            let until = self.now().saturating_add(u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX));
            self.backoff_until.store(until, Ordering::Relaxed);
        }
    }
}

/// Whether a new span can be delivered: not while the exporter backs off after a failed export, nor while the
/// queue is full. An admission the gate refuses is not traced at all (no [`ServerSpan`] is started; it is counted
/// as dropped), so a collector that is slow or gone costs an admission next to nothing; the logs still carry trace
/// ids.
#[derive(Debug, Clone)]
pub struct Gate(Arc<Pressure>);

impl Gate {
    /// Whether spans started now would be delivered; when not, the `spans` that will not be recorded are counted
    /// as dropped.
    pub fn admit(&self, spans: u64) -> bool {
        match self.0.blocked() {
            None => true,
            Some(reason) => {
                self.0.drops.dropped(reason, spans);
                false
            }
        }
    }
}

/// Admits ended spans to the batch queue while it has room, counting the rest as dropped.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    pressure: Arc<Pressure>,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pressure.queued.fetch_add(1, Ordering::AcqRel) >= self.pressure.capacity {
            self.pressure.queued.fetch_sub(1, Ordering::AcqRel);
            self.pressure.drops.dropped("queue_full", 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, taking spans off the queue count as they are sent, and counting those whose export failed. After
/// a failed export it backs off (1 s, doubling to 30 s): batches in between are dropped and counted without being
/// encoded or sent, and the [`Gate`] lets no new span be recorded, so a collector that is down costs no CPU.
#[derive(Debug)]
struct Dequeued<E> {
    inner: E,
    pressure: Arc<Pressure>,
}

impl<E: SpanExporter> SpanExporter for Dequeued<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.pressure.queued.fetch_sub(n, Ordering::AcqRel);
        if self.pressure.blocked() == Some("export_failed") {
            self.pressure.drops.dropped("export_failed", n as u64);
            return Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure("collector backoff".to_owned()));
        }
        let result = self.inner.export(batch).await;
        self.pressure.exported(result.is_ok());
        if result.is_err() {
            self.pressure.drops.dropped("export_failed", n as u64);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn setup(vars: &[(&str, &str)]) -> Result<Setup, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Setup::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn export(endpoint: &str, transport: Transport) -> Result<Setup, String> {
        Ok(Setup::Export { endpoint: endpoint.to_owned(), transport })
    }

    #[rstest]
    #[case(&[], Ok(Setup::Local))]
    #[case(&[("OTEL_SDK_DISABLED", "TRUE"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")], Ok(Setup::Disabled))]
    #[case(&[("OTEL_SDK_DISABLED", "false")], Ok(Setup::Local))]
    #[case(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")], Ok(Setup::Local))]
    #[case(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")], export("http://c:4317", Transport::Grpc))]
    #[case(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], export("http://c:4318/v1/traces", Transport::HttpProtobuf))]
    #[case(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example/")], export("https://otlp.example/v1/traces", Transport::HttpProtobuf))]
    #[case(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        export("http://c:4318", Transport::Grpc)
    )]
    #[case(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/v1/traces"),
          ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")],
        export("http://b:4318/v1/traces", Transport::HttpProtobuf)
    )]
    #[case(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")], Ok(Setup::Local))]
    fn the_standard_variables_decide(#[case] vars: &[(&str, &str)], #[case] want: Result<Setup, String>) {
        assert_eq!(setup(vars), want);
    }

    #[rstest]
    #[case(&[("OTEL_TRACES_EXPORTER", "zipkin")], "OTEL_TRACES_EXPORTER=\"zipkin\" is not supported: use otlp or none")]
    #[case(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")], "use http://host:port or https://host:port")]
    #[case(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")], "OTEL_EXPORTER_OTLP_ENDPOINT=\"not a url\": relative URL")]
    #[case(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not supported: use grpc or http/protobuf"
    )]
    fn a_bad_variable_is_named(#[case] vars: &[(&str, &str)], #[case] want: &str) {
        let e = setup(vars).expect_err("refused");
        assert!(e.contains(want), "{e}");
    }

    #[test]
    fn a_traceparent_is_continued_and_a_malformed_one_starts_a_root() {
        use opentelemetry::trace::TraceContextExt;
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("h"));
        headers.insert("baggage", "tenant=shop".parse().expect("h"));
        let cx = parent_from(&headers);
        assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(cx.span().span_context().is_remote());
        use opentelemetry::baggage::BaggageExt;
        assert_eq!(cx.baggage().get("tenant").map(|v| v.as_str().to_owned()), Some("shop".to_owned()));
        headers.insert("traceparent", "00-zz-00f067aa0ba902b7-01".parse().expect("h"));
        assert!(!parent_from(&headers).span().span_context().is_valid());
    }
}
