//! YAML read the way `kubectl` reads it (sigs.k8s.io/yaml over go-yaml v2, YAML 1.1), so that `preview` shows
//! what the cluster would get: plain scalars resolved the YAML 1.1 way (`0644` is 420, `0o644` 420, `1_000` 1000,
//! `yes`/`on` true, `~` null), merge keys (`<<`) applied, and aliases expanded within a budget, so that a small
//! file cannot ask for gigabytes.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Bytes the documents of one input may expand to through aliases, beyond their own text.
pub(crate) const EXPANDED_BYTES: usize = 64 * 1024 * 1024;

/// A document that cannot be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The document (1-based).
    pub document: usize,
    /// What is wrong, with the line and column where it is known.
    pub message: String,
}

/// Every document of `text`, each as the JSON `kubectl` would make of it (`null` for an empty one). Reading stops at
/// the first document that cannot be read.
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    // go-yaml takes `\'` inside double quotes as `'`, which YAML does not define: so does this, one at a time.
    let mut text = std::borrow::Cow::Borrowed(text);
    let mut fixed = 0;
    loop {
        match read(&text) {
            Ok(docs) => return Ok(docs),
            Err(Unreadable::QuoteEscape(quote, e)) => match quote_escape(&text, quote) {
                Some(escape) if fixed < MAX_QUOTE_ESCAPES => {
                    text.to_mut().replace_range(escape..escape + 2, "'");
                    fixed += 1;
                }
                _ => return Err(e),
            },
            Err(Unreadable::Error(e)) => return Err(e),
        }
    }
}

/// Where the first `\'` escape is in the double-quoted scalar that opens at byte `quote`.
fn quote_escape(text: &str, quote: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = quote + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'\'') => return Some(i),
            b'\\' => i += 2,
            b'"' => return None,
            _ => i += 1,
        }
    }
    None
}

/// The most `\'` escapes read as kubectl reads them.
const MAX_QUOTE_ESCAPES: usize = 1000;

/// Why a text could not be read.
enum Unreadable {
    /// An unknown escape in the double-quoted scalar that opens at this byte (go-yaml's `\'`, perhaps).
    QuoteEscape(usize, YamlError),
    /// Anything else.
    Error(YamlError),
}

fn read(text: &str) -> Result<Vec<Value>, Unreadable> {
    let mut loader =
        Loader { parser: Parser::new_from_str(text), escape_at: None, anchors: HashMap::new(), spent: 0, document: 0 };
    loader.documents().map_err(|e| match loader.escape_at.take() {
        Some(at) => Unreadable::QuoteEscape(at, e),
        None => Unreadable::Error(e),
    })
}

impl Loader<'_> {
    fn documents(&mut self) -> Result<Vec<Value>, YamlError> {
        let loader = self;
        let mut docs = Vec::new();
        loop {
            let (event, mark) = loader.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(docs),
                Event::DocumentStart => {
                    loader.document += 1;
                    loader.anchors.clear();
                    let (event, mark) = loader.next()?;
                    match event {
                        Event::DocumentEnd => docs.push(Value::Null),
                        event => docs.push(loader.node(event, mark)?.0),
                    }
                }
                _ => return Err(loader.error(&mark, "unexpected content outside a document")),
            }
        }
    }
}

struct Loader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    /// Where the scanner met a `\'` escape, if that is what stopped it.
    escape_at: Option<usize>,
    /// Each anchored node of the document, with what it costs to copy.
    anchors: HashMap<usize, (Value, usize)>,
    /// Bytes built so far, copies through aliases included.
    spent: usize,
    document: usize,
}

impl Loader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        self.parser.next_token().map_err(|e| {
            if e.info().contains("unknown escape character") {
                self.escape_at = Some(e.marker().index());
            }
            YamlError { document: self.document.max(1), message: format!("invalid YAML: {e}") }
        })
    }

    fn error(&self, at: &Marker, message: &str) -> YamlError {
        YamlError {
            document: self.document.max(1),
            message: format!("{message} at line {} column {}", at.line(), at.col() + 1),
        }
    }

    /// Charges `bytes` to the budget.
    fn spend(&mut self, bytes: usize, at: &Marker) -> Result<(), YamlError> {
        self.spent += bytes;
        if self.spent > EXPANDED_BYTES {
            let limit = EXPANDED_BYTES / (1024 * 1024);
            return Err(self.error(at, &format!("aliases expand this input past {limit} MiB (refused)")));
        }
        Ok(())
    }

    /// The node that starts with `event`, and what it cost.
    fn node(&mut self, event: Event, at: Marker) -> Result<(Value, usize), YamlError> {
        let (value, cost, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_ref()).map_err(|m| self.error(&at, &m))?;
                let cost = text.len() + 16;
                self.spend(cost, &at)?;
                (value, cost, anchor)
            }
            Event::Alias(id) => {
                let Some((value, cost)) = self.anchors.get(&id).cloned() else {
                    return Err(self.error(&at, "an alias to an anchor not defined before it"));
                };
                self.spend(cost, &at)?;
                return Ok((value, cost));
            }
            Event::SequenceStart(anchor, _) => {
                let (mut items, mut cost) = (Vec::new(), 16);
                loop {
                    let (event, mark) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let (item, item_cost) = self.node(event, mark)?;
                    cost += item_cost;
                    items.push(item);
                }
                (Value::Array(items), cost, anchor)
            }
            Event::MappingStart(anchor, _) => {
                let (map, cost) = self.mapping(&at)?;
                (Value::Object(map), cost, anchor)
            }
            _ => return Err(self.error(&at, "unexpected YAML event")),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), cost));
        }
        Ok((value, cost))
    }

    /// The rest of a mapping, its keys as JSON keys (a number or boolean key written as text, as kubectl does), and
    /// its merge keys applied the way go-yaml v2 applies them: in order, a later key replacing an earlier one; of a
    /// list of merged mappings, the first wins.
    fn mapping(&mut self, at: &Marker) -> Result<(Map<String, Value>, usize), YamlError> {
        let (mut map, mut cost) = (Map::new(), 16);
        loop {
            let (event, mark) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                return Ok((map, cost));
            }
            let merge = matches!(&event, Event::Scalar(k, TScalarStyle::Plain, _, None) if k == "<<");
            let (key, key_cost) = self.node(event, mark)?;
            let (event, mark) = self.next()?;
            let (value, value_cost) = self.node(event, mark)?;
            cost += key_cost + value_cost;
            if merge {
                let merged: Vec<Map<String, Value>> = match value {
                    Value::Object(one) => vec![one],
                    Value::Array(list) => list
                        .into_iter()
                        .rev()
                        .map(|m| match m {
                            Value::Object(m) => Ok(m),
                            _ => Err(self.error(at, "a merge key (<<) takes mappings only")),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(self.error(at, "a merge key (<<) takes a mapping or a list of mappings")),
                };
                merged.into_iter().flatten().for_each(|(k, v)| {
                    map.insert(k, v);
                });
                continue;
            }
            let key = match key {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_owned(),
                _ => return Err(self.error(at, "a mapping key that is not a scalar")),
            };
            map.insert(key, value);
        }
    }
}

/// A scalar as go-yaml v2 resolves it into JSON: quoted and block scalars are strings; plain ones may be null,
/// booleans (YAML 1.1: `yes`, `no`, `on`, `off`, `y`, `n` too), integers (`0644` octal, `0x`, `0o`, `0b`, with
/// `_`) or floats; an explicit tag decides the type.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let tagged = tag.filter(|t| t.handle == "!!" || t.handle == "tag:yaml.org,2002:").map(|t| t.suffix.as_str());
    match tagged {
        Some("str" | "binary" | "timestamp") => return Ok(Value::String(text.to_owned())),
        Some("null") => return Ok(Value::Null),
        Some(kind @ ("bool" | "int" | "float")) => {
            let resolved = plain(text)?;
            let fits = match kind {
                "bool" => resolved.is_boolean(),
                "int" => resolved.is_i64() || resolved.is_u64(),
                _ => resolved.is_number(),
            };
            return if fits { Ok(resolved) } else { Err(format!("{text:?} is not a !!{kind}")) };
        }
        _ => {}
    }
    match style {
        TScalarStyle::Plain => plain(text),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// A plain scalar, the YAML 1.1 way of go-yaml v2.
fn plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN"
        | ".NAN" => return Err(format!("{text} has no JSON form (kubectl refuses it too)")),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Ok(Value::String(text.to_owned()));
    }
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(n) = integer(&digits) {
        return Ok(n);
    }
    if is_float(&digits)
        && let Ok(f) = digits.parse::<f64>()
    {
        // Go writes an integral float as an integer.
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return Ok(Value::Number(Number::from(f as i64)));
        }
        return Ok(Number::from_f64(f).map_or_else(|| Value::String(text.to_owned()), Value::Number));
    }
    Ok(Value::String(text.to_owned()))
}

/// An integer the way Go's `strconv.ParseInt(s, 0, 64)` (then `ParseUint`) reads it: a sign, then `0x`, `0o`, `0b`
/// or a leading `0` (octal) prefix, or decimal.
fn integer(text: &str) -> Option<Value> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, body) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = lower.strip_prefix("0o") {
        (8, oct)
    } else if let Some(bin) = lower.strip_prefix("0b") {
        (2, bin)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        let n = i64::try_from(magnitude).ok()?;
        Some(Value::Number(Number::from(-n)))
    } else {
        Some(Value::Number(Number::from(magnitude)))
    }
}

/// Whether `text` has go-yaml v2's float form: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn one(text: &str) -> Value {
        documents(text).expect("valid").remove(0)
    }

    #[rstest]
    #[case("0644", json!(420))]
    #[case("0o644", json!(420))]
    #[case("0x1F", json!(31))]
    #[case("0b101", json!(5))]
    #[case("1_000", json!(1000))]
    #[case("08", json!(8))]
    #[case("-12", json!(-12))]
    #[case("+7", json!(7))]
    #[case("1.5", json!(1.5))]
    #[case("1e3", json!(1000))]
    #[case("yes", json!(true))]
    #[case("On", json!(true))]
    #[case("n", json!(false))]
    #[case("off", json!(false))]
    #[case("~", json!(null))]
    #[case("1:20", json!("1:20"))]
    #[case("2026-12-07", json!("2026-12-07"))]
    #[case("1.2.3", json!("1.2.3"))]
    #[case("'0644'", json!("0644"))]
    #[case("\"yes\"", json!("yes"))]
    #[case("!!str 0644", json!("0644"))]
    #[case("!!int 0644", json!(420))]
    fn scalars_are_read_as_yaml_1_1(#[case] text: &str, #[case] want: Value) {
        assert_eq!(one(&format!("v: {text}\n"))["v"], want, "{text}");
    }

    #[test]
    fn merge_keys_apply_in_order_and_the_first_merged_mapping_wins() {
        let doc =
            one("base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\np:\n  <<: [*b, *o]\n  c: 5\nq:\n  d: 0\n  <<: *b\n");
        assert_eq!(doc["p"], json!({"a": 1, "b": 2, "c": 5}));
        assert_eq!(doc["q"], json!({"d": 0, "a": 1, "b": 2}));
        // YAML 1.1, as kubectl reads it: the key `y` is the boolean true.
        assert_eq!(one("y: 1\n"), json!({"true": 1}));
    }

    #[test]
    fn keys_are_text_and_documents_are_split() {
        let docs = documents("---\n1: a\ntrue: b\n---\n---\nk: v\n").expect("valid");
        assert_eq!(docs, [json!({"1": "a", "true": "b"}), Value::Null, json!({"k": "v"})]);
    }

    #[test]
    fn aliases_cannot_expand_a_small_file_into_gigabytes() {
        let big = "x".repeat(200 * 1024);
        let aliases: String = (0..20_000).map(|i| format!("  k{i}: *big\n")).collect();
        let text = format!("a: &big {big}\nb:\n{aliases}");
        assert!(text.len() < 600 * 1024);
        let e = documents(&text).expect_err("refused");
        assert_eq!(e.document, 1);
        assert!(e.message.starts_with("aliases expand this input past 64 MiB (refused) at line "), "{}", e.message);
    }

    #[test]
    fn an_escaped_single_quote_in_double_quotes_is_read_as_kubectl_reads_it() {
        assert_eq!(one("a: \"it\\'s \\'x\\'\"\n")["a"], "it's 'x'");
    }

    #[test]
    fn errors_name_the_document_and_the_place() {
        let e = documents("a: 1\n---\nb: *nowhere\n").expect_err("unknown anchor");
        assert_eq!(e.document, 2);
        assert!(e.message.contains("line 3"), "{}", e.message);
        let e = documents("a: [1, 2\n").expect_err("unclosed");
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
    }
}
