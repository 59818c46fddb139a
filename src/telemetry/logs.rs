//! Log lines. Text: `key=value` fields, a plain value (a name, a code, a number) written as it is and anything else
//! quoted with escapes ([`TextFields`]). JSON: one flat object per event, each key once.
//!
//! `timestamp`, `level`, `target`, `span` (the innermost span's name) and `message` come first; then the fields of
//! every span the event is in (outermost first, an inner span's value winning), which inside an admission include
//! `trace_id`, `span_id` and the object's `k8s.*` attributes; then the event's own fields (winning over a span's).
//! A key is written once: a field that would replace one of the five fixed keys is written as `fields.<key>`.
//! Fields meant for the tracer only (`otel.*`) are left out.
//!
//! Cheap on the admission path: a span's fields are kept as already-encoded JSON values, appended to as fields are
//! recorded and never parsed again; a line is written straight from them.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::engine::json_string;

/// Characters of one field's value (the message included) written in a log line; the rest is cut, with `…`.
pub(crate) const MAX_FIELD_CHARS: usize = 2048;

/// Bytes of one log line: a JSON line leaves out fields that would take it over (and says `"truncated":true`), a
/// text line is cut.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines waiting for the writer thread: when stderr is not read fast enough, more are dropped (and counted), so
/// logging never blocks an admission. At most this many times [`MAX_LINE_BYTES`] is held.
pub(crate) const BUFFERED_LINES: usize = 1024;

/// `value`, cut to [`MAX_FIELD_CHARS`] characters.
fn clipped(value: &str) -> std::borrow::Cow<'_, str> {
    // No more bytes than the limit: no more characters either, and nothing to count.
    if value.len() <= MAX_FIELD_CHARS {
        return value.into();
    }
    match value.char_indices().nth(MAX_FIELD_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]).into(),
        None => value.into(),
    }
}

/// Writes `value` with every control character escaped (`\n`, `\u{1b}`), so no value can start a line of its own.
fn write_escaped(writer: &mut Writer<'_>, value: &str) -> fmt::Result {
    let mut from = 0;
    for (at, c) in value.char_indices().filter(|(_, c)| c.is_control()) {
        writer.write_str(&value[from..at])?;
        write!(writer, "{}", c.escape_default())?;
        from = at + c.len_utf8();
    }
    writer.write_str(&value[from..])
}

/// Writes `value` as `{value:?}` does (quoted; quotes, backslashes and control characters escaped), without the
/// formatting machinery when it is printable ASCII, as nearly every value is (a reason, a description, a list).
fn write_quoted(writer: &mut Writer<'_>, value: &str) -> fmt::Result {
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return write!(writer, "{value:?}");
    }
    writer.write_char('"')?;
    let mut from = 0;
    for (at, b) in value.bytes().enumerate().filter(|(_, b)| matches!(b, b'"' | b'\\')) {
        writer.write_str(&value[from..at])?;
        writer.write_char('\\')?;
        writer.write_char(char::from(b))?;
        from = at + 1;
    }
    writer.write_str(&value[from..])?;
    writer.write_char('"')
}

/// Where log lines go: a non-blocking writer on stderr (see [`BUFFERED_LINES`]), and the count of lines it dropped.
/// Its thread writes every line waiting in the queue, then flushes: one `write` for a burst of lines instead of one
/// per line (a line alone is still written at once), never a line split between two writers.
pub(crate) fn stderr_writer()
-> (tracing_appender::non_blocking::NonBlocking, tracing_appender::non_blocking::WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("otel-injector-logs")
        .finish(std::io::BufWriter::with_capacity(STDERR_BUFFER, std::io::stderr()))
}

/// Bytes of lines the log thread gathers before writing them (it writes sooner when its queue runs dry).
const STDERR_BUFFER: usize = 64 * 1024;

/// A writer that cuts every line at [`MAX_LINE_BYTES`] (the text format; JSON lines bound themselves).
#[derive(Clone)]
pub(crate) struct Bounded<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for Bounded<M> {
    type Writer = BoundedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        BoundedWriter(self.0.make_writer())
    }
}

/// One line's writer of [`Bounded`].
pub(crate) struct BoundedWriter<W>(W);

impl<W: std::io::Write> std::io::Write for BoundedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= MAX_LINE_BYTES {
            return self.0.write(buf);
        }
        let mut cut = MAX_LINE_BYTES - 4;
        while cut > 0 && (buf[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
        let mut line = Vec::with_capacity(cut + 4);
        line.extend_from_slice(&buf[..cut]);
        line.extend_from_slice("…\n".as_bytes());
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Text fields: ` key=value`, the message as it is; a value of letters, digits and `-._/:@+` unquoted, anything
/// else quoted and escaped (so a line still splits into its fields whatever a value holds).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut text = Text { writer, first: true, result: Ok(()) };
        fields.record(&mut text);
        text.result
    }
}

struct Text<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Text<'_> {
    fn separator(&mut self) -> &'static str {
        if std::mem::replace(&mut self.first, false) { "" } else { " " }
    }
}

impl Visit for Text<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value = clipped(value);
        let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/:@+".contains(&b));
        let sep = self.separator();
        self.result = self.result.and_then(|()| match (field.name(), plain) {
            ("message", _) => {
                self.writer.write_str(sep)?;
                write_escaped(&mut self.writer, &value)
            }
            (name, plain) => {
                self.writer.write_str(sep)?;
                self.writer.write_str(name)?;
                self.writer.write_char('=')?;
                if plain { self.writer.write_str(&value) } else { write_quoted(&mut self.writer, &value) }
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // A value's own formatting can hold anything (a newline in a user's value): written as a string would be.
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Keys every line has, which no field may replace.
const FIXED: [&str; 5] = ["timestamp", "level", "target", "span", "message"];

/// Between a field's name and its encoded value. Compact JSON never holds a raw control character, and field names
/// are identifiers, so neither separator can occur inside an entry.
const KEY_END: char = '\x1e';
/// After each entry.
const ENTRY_END: char = '\x1f';

/// Span fields as `name␞json␟` entries, appended to as fields are recorded.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut entries = String::new();
        fields.record(&mut Entries(&mut entries));
        writer.write_str(&entries)
    }

    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        fields.record(&mut Entries(&mut current.fields));
        Ok(())
    }
}

/// The entries of `text`, as (name, encoded value).
fn entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split_terminator(ENTRY_END).filter_map(|entry| entry.split_once(KEY_END))
}

/// The JSON event format (with [`JsonFields`] for span fields).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut own = String::new();
        event.record(&mut Entries(&mut own));
        let spans: Vec<_> = ctx.event_scope().map(|scope| scope.from_root().collect()).unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        // Outermost span first, then the event: a later entry replaces an earlier one of the same name.
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(32);
        let span_fields = extensions.iter().filter_map(|e| e.get::<FormattedFields<N>>()).map(|f| f.as_str());
        for (key, value) in span_fields.chain(std::iter::once(own.as_str())).flat_map(entries) {
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => fields.push((key, value)),
            }
        }
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mut line = String::with_capacity(256 + own.len());
        line.push_str("{\"timestamp\":");
        json_string::push(&mut line, &timestamp);
        line.push_str(",\"level\":");
        json_string::push(&mut line, meta.level().as_str());
        line.push_str(",\"target\":");
        json_string::push(&mut line, meta.target());
        if let Some(span) = spans.last() {
            line.push_str(",\"span\":");
            json_string::push(&mut line, span.name());
        }
        if let Some((_, message)) = fields.iter().find(|(k, _)| *k == "message") {
            let _ = write!(line, ",\"message\":{message}");
        }
        // Room for the closing `,"truncated":true}`.
        let room = MAX_LINE_BYTES - 20;
        let mut truncated = false;
        for (key, value) in fields.iter().filter(|(k, _)| *k != "message" && !k.starts_with("otel.")) {
            if line.len() + key.len() + value.len() + 16 > room {
                truncated = true;
                continue;
            }
            line.push(',');
            if FIXED.contains(key) {
                json_string::push(&mut line, &format!("fields.{key}"));
            } else {
                json_string::push(&mut line, key);
            }
            line.push(':');
            line.push_str(value);
        }
        if truncated {
            line.push_str(",\"truncated\":true");
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Writes fields as `name␞json␟` entries.
struct Entries<'a>(&'a mut String);

impl Entries<'_> {
    fn put(&mut self, field: &Field, value: impl fmt::Display) {
        let _ = write!(self.0, "{}{KEY_END}{value}{ENTRY_END}", field.name());
    }

    fn put_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(field.name());
        self.0.push(KEY_END);
        json_string::push(self.0, &clipped(value));
        self.0.push(ENTRY_END);
    }
}

impl Visit for Entries<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_str(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put(field, value);
        } else {
            self.put(field, "null");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put_str(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put_str(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use serde_json::{Map, Value};
    use tracing_subscriber::fmt::MakeWriter;

    proptest::proptest! {
        /// A quoted value reads exactly as Debug writes it, whatever it holds.
        #[test]
        fn quoted_values_are_written_as_debug_writes_them(value in "\\PC*|[ -~]{0,40}|[\\x00-\\x7f]{0,20}") {
            let mut out = String::new();
            write_quoted(&mut Writer::new(&mut out), &value).expect("written");
            proptest::prop_assert_eq!(out, format!("{value:?}"));
        }
    }

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
        assert_eq!(text.matches("\"k8s.object.name\"").count(), 1, "{text}");
    }

    #[test]
    fn text_fields_are_plain_when_they_can_be_and_quoted_when_not() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(TextFields)
            .with_ansi(false)
            .without_time()
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("admission", name = tracing::field::Empty, uid = "8756e33a-c52d");
            span.record("name", "web-7d9f8c6b5-");
            let _span = span.enter();
            tracing::info!(list = "a,b", spaced = "x y", empty = "", n = 3, "admitted {}", 1);
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(text.contains("admission{uid=8756e33a-c52d name=web-7d9f8c6b5-}"), "{text}");
        assert!(text.ends_with("admitted 1 list=\"a,b\" spaced=\"x y\" empty=\"\" n=3\n"), "{text}");
    }

    #[test]
    fn strings_are_escaped_and_numbers_stay_numbers() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(buffer.clone())
            .finish();
        let tricky = "a \"quoted\" \\ back\nslash\u{1}\u{1e}\u{1f} é ✓";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("admission", reason = tracing::field::Empty);
            span.record("reason", tricky);
            let _span = span.enter();
            tracing::warn!(ratio = 0.25, count = -3_i64, big = u64::MAX, nan = f64::NAN, error = %tricky, "said {tricky}");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Map<String, Value> = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(line["reason"], tricky);
        assert_eq!(line["error"], tricky);
        assert_eq!(line["message"], format!("said {tricky}"));
        assert_eq!(
            (&line["ratio"], &line["count"], &line["big"], &line["nan"]),
            (&0.25.into(), &(-3).into(), &u64::MAX.into(), &Value::Null)
        );
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn a_value_cannot_forge_a_text_line_and_lines_are_bounded() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(TextFields)
            .with_ansi(false)
            .without_time()
            .with_writer(Bounded(buffer.clone()))
            .finish();
        let forged = "web\n2026-12-07T00:00:00Z  INFO otel_injector: admitted reason=forged\u{1b}[31m";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("admission", name = forged);
            let _span = span.enter();
            tracing::info!(reason = %forged, list = ?vec![forged], "admitted {forged}");
            let huge = "x".repeat(1_000_000);
            tracing::warn!(a = %huge, b = %huge, c = %huge, d = %huge, e = %huge, f = %huge, g = %huge, h = %huge, i = %huge, "big");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.lines().next().is_some_and(|l| l.contains("admitted web\\n2026")), "{text}");
        assert!(
            text.lines().all(|l| l.len() <= MAX_LINE_BYTES),
            "{:?}",
            text.lines().map(str::len).collect::<Vec<_>>()
        );
    }

    #[test]
    fn json_lines_are_bounded_and_stay_json() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(buffer.clone())
            .finish();
        let control = "\u{1}".repeat(10_000);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(a = %control, b = %control, c = %control, d = "kept?", "{}", "m".repeat(100_000));
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1);
        assert!(text.len() <= MAX_LINE_BYTES + 1, "{}", text.len());
        let line: Map<String, Value> = serde_json::from_str(text.trim()).expect("still one JSON object");
        assert_eq!(line["message"].as_str().map(|m| m.chars().count()), Some(MAX_FIELD_CHARS + 1));
        assert_eq!(line["truncated"], true);
    }
}
