//! An application using the Rust SDK as its documentation sets one up: OTLP exporters for traces, metrics and logs
//! (endpoint and headers read from `OTEL_EXPORTER_OTLP_*` by the exporters), the resource from the SDK's detectors
//! (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`). The SDK does not choose the transport from
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, so the application does, per signal, as the specification says; it reads no
//! `OTEL_*_EXPORTER` and no `OTEL_PROPAGATORS` (nor does the SDK).
use opentelemetry::logs::{LogRecord, Logger, LoggerProvider};
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Whether `signal`'s protocol is gRPC: its own variable, else the generic one, else the SDK's default (gRPC).
fn grpc(signal: &str) -> bool {
    let own = std::env::var(format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")).ok();
    let protocol = own.or_else(|| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok());
    protocol.as_deref().is_none_or(|p| p == "grpc")
}

#[tokio::main]
async fn main() {
    let resource = Resource::builder().build();
    let spans = if grpc("TRACES") {
        SpanExporter::builder().with_tonic().build()
    } else {
        SpanExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary).build()
    }
    .expect("span exporter");
    let tracer_provider =
        SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
    let metrics = if grpc("METRICS") {
        MetricExporter::builder().with_tonic().build()
    } else {
        MetricExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary).build()
    }
    .expect("metric exporter");
    let meter_provider =
        SdkMeterProvider::builder().with_periodic_exporter(metrics).with_resource(resource.clone()).build();
    let logs = if grpc("LOGS") {
        LogExporter::builder().with_tonic().build()
    } else {
        LogExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary).build()
    }
    .expect("log exporter");
    let logger_provider = SdkLoggerProvider::builder().with_batch_exporter(logs).with_resource(resource).build();

    tracer_provider.tracer("sdk-test").start("work").end();
    meter_provider.meter("sdk-test").u64_counter("work.done").build().add(1, &[]);
    let logger = logger_provider.logger("sdk-test");
    let mut record = logger.create_log_record();
    record.set_body("work done".into());
    record.set_severity_text("WARN");
    logger.emit(record);

    tracer_provider.shutdown().expect("traces flushed");
    meter_provider.shutdown().expect("metrics flushed");
    logger_provider.shutdown().expect("logs flushed");
    println!("fields:");
}
