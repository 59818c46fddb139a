//! JSON log lines: one flat object per event, each key once.
//!
//! `timestamp`, `level`, `target`, `span` (the innermost span's name) and `message` come first in meaning; then the
//! fields of every span the event is in (outermost first, an inner span's value winning), which inside an
//! admission include `trace_id`, `span_id` and the object's `k8s.*` attributes; then the event's own fields. A key
//! is written once: a field that would replace one of the five fixed keys is written as `fields.<key>`.
//! Fields meant for the tracer only (`otel.*`) are left out.
//!
//! Span fields are kept by [`JsonFields`] as JSON text that a recorded field is appended to, never re-parsed (the
//! `tracing-subscriber` one re-parses and re-writes the whole object on every `record`, which cost a quarter of an
//! admission); a key recorded twice is written once, with its last value, when a line is formatted.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Keys every line has, which no field may replace.
const FIXED: [&str; 5] = ["timestamp", "level", "target", "span", "message"];

/// Span fields as a JSON object, appended to as fields are recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Fields(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Fields(&mut map));
        if map.is_empty() {
            return Ok(());
        }
        let added = Value::Object(map).to_string();
        if current.fields.len() <= 2 {
            current.fields = added;
        } else {
            // `{"a":1}` + `{"b":2}` = `{"a":1,"b":2}`.
            current.fields.pop();
            current.fields.push(',');
            current.fields.push_str(&added[1..]);
        }
        Ok(())
    }
}

/// The JSON event format (with [`JsonFields`] for span fields).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(meta.level().as_str().to_owned()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) else { continue };
                for (key, value) in fields.into_iter().filter(|(key, _)| !key.starts_with("otel.")) {
                    line.insert(if FIXED.contains(&key.as_str()) { format!("fields.{key}") } else { key }, value);
                }
            }
            if let Some(name) = innermost {
                line.insert("span".into(), Value::String(name.to_owned()));
            }
        }
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        for (key, value) in fields {
            let key = if key != "message" && FIXED.contains(&key.as_str()) { format!("fields.{key}") } else { key };
            line.insert(key, value);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_line_is_flat_json_with_each_key_once() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("admission", "k8s.object.name" = "web", "otel.kind" = "server", level = 1);
            let _outer = outer.enter();
            let inner = tracing::info_span!("policy", "k8s.object.name" = "web-1", later = tracing::field::Empty);
            inner.record("k8s.object.name", "web-2");
            inner.record("later", 7);
            let _inner = inner.enter();
            tracing::info!(name = "x", target = "t", count = 3, ok = true, "admitted");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let line: Map<String, Value> = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(line["message"], "admitted");
        assert_eq!(line["span"], "policy");
        assert_eq!(line["k8s.object.name"], "web-2", "the inner span wins, with its last value");
        assert_eq!(line["later"], 7);
        assert_eq!(
            (&line["name"], &line["fields.target"], &line["count"], &line["ok"]),
            (&"x".into(), &"t".into(), &3.into(), &true.into())
        );
        assert_eq!(line["target"], "otel_injector::telemetry::logs::tests");
        assert_eq!(line["fields.level"], 1);
        assert!(!line.contains_key("otel.kind"), "{line:?}");
        assert_eq!(text.matches("\"target\"").count(), 1, "{text}");
    }
}
