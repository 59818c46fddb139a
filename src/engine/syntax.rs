//! The syntax of setting values: the typed values (protocol, signals, Kubernetes version, …), their parsers and
//! checks, shared by the config file, the annotations and the flags.
//!
//! Every parser returns a short reason on failure; callers add which field or annotation it was.

use std::fmt;

use serde::{Deserialize, Serialize};

/// OTLP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }

    /// Parses `grpc` or `http/protobuf`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            _ => Err("must be grpc or http/protobuf".to_owned()),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A telemetry signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Traces (`OTEL_TRACES_EXPORTER`).
    Traces,
    /// Metrics (`OTEL_METRICS_EXPORTER`).
    Metrics,
    /// Logs (`OTEL_LOGS_EXPORTER`).
    Logs,
}

impl Signal {
    /// All signals, in pipeline order.
    pub const ALL: [Signal; 3] = [Self::Traces, Self::Metrics, Self::Logs];

    /// The signal's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }
}

/// The propagator names the OpenTelemetry SDK environment specification defines.
pub(crate) const KNOWN_PROPAGATORS: [&str; 8] =
    ["tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace", "none"];

/// The propagators every SDK has without extra packages (and `none`); the others need one in most languages.
pub(crate) const BUILT_IN_PROPAGATORS: [&str; 3] = ["tracecontext", "baggage", "none"];

/// Parses `true` / `false` (any case, surrounding blanks ignored).
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

/// Parses a sampling ratio between 0.0 and 1.0.
pub(crate) fn parse_ratio(s: &str) -> Result<f64, String> {
    let ratio: f64 = s.trim().parse().map_err(|_| "must be a number from 0.0 to 1.0".to_owned())?;
    if ratio.is_finite() && (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err("must be a number from 0.0 to 1.0".to_owned())
    }
}

/// Checks an OTLP endpoint: an absolute `http` or `https` URL with a host and, if given, a port from 1 to 65535.
pub(crate) fn parse_endpoint(s: &str) -> Result<String, String> {
    let s = s.trim();
    let url = url::Url::parse(s).map_err(|e| match e {
        url::ParseError::InvalidPort => "has a port outside 1-65535".to_owned(),
        _ => "must be an http(s) URL".to_owned(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an http(s) URL".to_owned());
    }
    if url.port() == Some(0) {
        return Err("has a port outside 1-65535".to_owned());
    }
    Ok(s.to_owned())
}

/// The OTLP transport an endpoint's port implies (4317 gRPC, 4318 HTTP), if it implies one.
pub(crate) fn transport_of(endpoint: &str) -> Option<Protocol> {
    match url::Url::parse(endpoint.trim()).ok()?.port()? {
        4317 => Some(Protocol::Grpc),
        4318 => Some(Protocol::HttpProtobuf),
        _ => None,
    }
}

/// A sampling ratio as written into `OTEL_TRACES_SAMPLER_ARG`: short and canonical (at most six significant digits,
/// no `-0`, an exponent only for very small ratios), so equal settings always render the same text.
pub(crate) fn format_ratio(ratio: f64) -> String {
    if ratio <= 0.0 || !ratio.is_finite() {
        return "0".to_owned();
    }
    // Six significant digits, then the shortest text that reads back as that value.
    let rounded: f64 = format!("{ratio:.5e}").parse().unwrap_or(ratio);
    if rounded >= 1e-4 { rounded.to_string() } else { format!("{rounded:e}") }
}

/// Checks one propagator name.
pub(crate) fn check_propagator(s: &str) -> Result<(), String> {
    if KNOWN_PROPAGATORS.contains(&s) { Ok(()) } else { Err(format!("unknown propagator {s:?}")) }
}

/// Splits a comma list, trimming blanks and dropping empty entries.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// Parses a comma list of propagators.
pub(crate) fn parse_propagators(s: &str) -> Result<Vec<String>, String> {
    let list = split_list(s);
    if list.is_empty() {
        return Err("must name at least one propagator".to_owned());
    }
    list.iter().try_for_each(|p| check_propagator(p))?;
    Ok(list)
}

/// Parses a subset of `traces,metrics,logs` (an empty value turns every exporter off).
pub(crate) fn parse_signals(s: &str) -> Result<Vec<Signal>, String> {
    split_list(s)
        .iter()
        .map(|p| match p.as_str() {
            "traces" => Ok(Signal::Traces),
            "metrics" => Ok(Signal::Metrics),
            "logs" => Ok(Signal::Logs),
            other => Err(format!("unknown signal {other:?}")),
        })
        .collect()
}

/// Checks a resource attribute key: non-empty, printable ASCII without blanks, `,` or `=`.
pub(crate) fn check_attribute_key(key: &str) -> Result<(), String> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b'=') {
        Ok(())
    } else {
        Err(format!("{key:?} is not a valid attribute key"))
    }
}

/// Parses `k=v,k2=v2` into pairs, keeping their order.
pub(crate) fn parse_attributes(s: &str) -> Result<Vec<(String, String)>, String> {
    split_list(s)
        .into_iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let k = k.trim();
            check_attribute_key(k)?;
            Ok((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Checks an HTTP header name (an RFC 9110 token).
pub(crate) fn check_header_name(name: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a valid HTTP header name"))
}

/// Checks a Kubernetes resource quantity such as `50m`, `64Mi`, `1.5` or `1e3`.
pub(crate) fn check_quantity(q: &str) -> Result<(), String> {
    const SUFFIXES: [&str; 15] = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n"];
    let bad = || format!("{q:?} is not a Kubernetes quantity (e.g. 50m, 64Mi)");
    let digits_end = q
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(q.len(), |(i, _)| i);
    let (number, suffix) = q.split_at(digits_end);
    let number = number.trim_start_matches(['+', '-']);
    let valid_number = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.bytes().any(|b| b.is_ascii_digit());
    let valid_suffix = SUFFIXES.contains(&suffix)
        || suffix.strip_prefix(['e', 'E']).is_some_and(|exp| {
            exp.trim_start_matches(['+', '-']).bytes().all(|b| b.is_ascii_digit()) && !exp.is_empty()
        });
    if valid_number && valid_suffix { Ok(()) } else { Err(bad()) }
}

/// The value a Kubernetes quantity stands for (`50m` → 0.05, `64Mi` → 67108864, `1e3` → 1000), if it is one.
pub(crate) fn quantity(q: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    check_quantity(q).ok()?;
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match UNITS.iter().find(|(unit, _)| *unit == suffix) {
        Some((_, f)) => *f,
        None if suffix.is_empty() => 1.0,
        None => 10f64.powi(suffix[1..].parse().ok()?),
    };
    Some(number * factor).filter(|v| v.is_finite())
}

/// The deepest nesting of a YAML or JSON text accepted (Kubernetes objects nest a few dozen levels at most).
pub(crate) const MAX_NESTING: usize = 100;

/// Checks, before any parser sees it, that a YAML or JSON text nests at most [`MAX_NESTING`] flow collections
/// (`[`, `{`) deep and is indented at most `MAX_NESTING * 8` columns: a 100,000-deep document is refused at once
/// rather than after a minute of parsing.
pub(crate) fn check_nesting(text: &str) -> Result<(), String> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut single, mut double, mut escaped, mut comment) = (false, false, false, false);
    let mut previous = '\n';
    let mut column = 0usize;
    let mut indent_done = false;
    for c in text.chars() {
        if c == '\n' {
            (comment, column, indent_done) = (false, 0, false);
            previous = c;
            continue;
        }
        if !indent_done {
            if c == ' ' {
                column += 1;
                if column > MAX_NESTING * 8 {
                    return Err(format!("is indented more than {} columns deep", MAX_NESTING * 8));
                }
            } else {
                indent_done = true;
            }
        }
        if comment {
            continue;
        }
        match c {
            _ if escaped => escaped = false,
            '\\' if double => escaped = true,
            '"' if !single => double = !double,
            '\'' if !double => single = !single,
            '#' if !single && !double && previous.is_whitespace() => comment = true,
            '[' | '{' if !single && !double => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > MAX_NESTING {
                    return Err(format!("nests deeper than {MAX_NESTING} levels"));
                }
            }
            ']' | '}' if !single && !double => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    Ok(())
}

/// A Kubernetes server version, as far as the engine cares: major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// `1`.
    pub major: u32,
    /// `20`, `29`, …
    pub minor: u32,
}

impl KubeVersion {
    /// The first version with native sidecars on by default (`initContainers[].restartPolicy: Always`).
    pub(crate) const NATIVE_SIDECARS: KubeVersion = KubeVersion { major: 1, minor: 29 };
    /// The first version whose Job controller labels pods `batch.kubernetes.io/job-name` (before: `job-name`).
    pub(crate) const JOB_NAME_LABEL: KubeVersion = KubeVersion { major: 1, minor: 27 };
    /// The first version with image volumes (`volumes[].image`) on by default (beta; GA in 1.36).
    pub(crate) const IMAGE_VOLUMES: KubeVersion = KubeVersion { major: 1, minor: 35 };

    /// Parses `1.29`, `v1.29.3`, `1.28+` or `v1.30.1-gke.100` (only major and minor count).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a Kubernetes version (e.g. 1.29)");
        let mut parts = s.trim().trim_start_matches('v').splitn(3, '.');
        let major = parts.next().ok_or_else(bad)?;
        let minor = parts.next().ok_or_else(bad)?;
        Self::from_parts(major, minor).ok_or_else(bad)
    }

    /// From discovery's `major` and `minor` fields, which some providers suffix (`"28+"`).
    pub(crate) fn from_parts(major: &str, minor: &str) -> Option<Self> {
        let number = |s: &str| {
            let digits = s.trim().trim_end_matches(|c: char| !c.is_ascii_digit());
            digits.parse::<u32>().ok().filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        };
        Some(Self { major: number(major)?, minor: number(minor)? })
    }

    /// Whether the API server keeps `restartPolicy: Always` on init containers (native sidecars).
    pub(crate) fn has_native_sidecars(self) -> bool {
        self >= Self::NATIVE_SIDECARS
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Parses a Go-style duration as the API server sends it in `?timeout=` (`10s`, `500ms`, `2m`, `1h`).
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{s:?} needs a unit: ms, s, m or h"))?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("{s:?} has an unknown unit (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("true", Ok(true))]
    #[case(" TRUE ", Ok(true))]
    #[case("false", Ok(false))]
    #[case("maybe", Err(()))]
    #[case("", Err(()))]
    #[case("1", Err(()))]
    fn bools(#[case] input: &str, #[case] want: Result<bool, ()>) {
        assert_eq!(parse_bool(input).map_err(|_| ()), want);
    }

    #[rstest]
    #[case("http://collector:4317", true)]
    #[case("https://gateway.example/otlp", true)]
    #[case("http://[::1]:4318", true)]
    #[case("http://x:99999", false)]
    #[case("http://x:0", false)]
    #[case("http://:4317", false)]
    #[case("collector:4317", false)]
    #[case("ftp://collector", false)]
    #[case("http://exa mple:4317", false)]
    #[case("", false)]
    fn endpoints_are_fully_validated(#[case] input: &str, #[case] valid: bool) {
        assert_eq!(parse_endpoint(input).is_ok(), valid, "{input}: {:?}", parse_endpoint(input));
    }

    #[rstest]
    #[case("http://c:4317", Some(Protocol::Grpc))]
    #[case("https://c:4318/", Some(Protocol::HttpProtobuf))]
    #[case("http://c", None)]
    #[case("http://c:8080", None)]
    fn transport_from_the_port(#[case] endpoint: &str, #[case] want: Option<Protocol>) {
        assert_eq!(transport_of(endpoint), want);
    }

    #[rstest]
    #[case(1.0, "1")]
    #[case(0.0, "0")]
    #[case(-0.0, "0")]
    #[case(0.25, "0.25")]
    #[case(0.1 + 0.2, "0.3")]
    #[case(1.0 / 3.0, "0.333333")]
    #[case(0.000_001, "1e-6")]
    #[case(1e-300, "1e-300")]
    #[case(0.0001, "0.0001")]
    fn ratios_are_written_short_and_canonical(#[case] ratio: f64, #[case] want: &str) {
        assert_eq!(format_ratio(ratio), want);
        assert_eq!(format_ratio(format_ratio(ratio).parse().expect("reads back")), want, "stable");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(check_nesting(&deep), Err("nests deeper than 100 levels".to_owned()));
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        let indented = (0..1000).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>();
        assert!(check_nesting(&indented).expect_err("too deep").starts_with("is indented more than"));
        let fine = "a: {b: [1, 2, {c: d}]}\nq: '[[[' # [[[\nr: \"{{{\\\" \"\n";
        assert_eq!(check_nesting(fine), Ok(()));
    }

    #[rstest]
    #[case("1.29", Some((1, 29)))]
    #[case("v1.20.2", Some((1, 20)))]
    #[case("1.28+", Some((1, 28)))]
    #[case("v1.30.1-gke.100", Some((1, 30)))]
    #[case("1", None)]
    #[case("one.two", None)]
    #[case("", None)]
    fn kube_versions(#[case] input: &str, #[case] want: Option<(u32, u32)>) {
        assert_eq!(KubeVersion::parse(input).ok().map(|v| (v.major, v.minor)), want);
    }

    #[test]
    fn discovery_parts_and_native_sidecars() {
        assert_eq!(KubeVersion::from_parts("1", "28+"), Some(KubeVersion { major: 1, minor: 28 }));
        assert_eq!(KubeVersion::from_parts("", ""), None);
        assert!(!KubeVersion { major: 1, minor: 28 }.has_native_sidecars());
        assert!(KubeVersion { major: 1, minor: 29 }.has_native_sidecars());
        assert!(KubeVersion { major: 2, minor: 0 }.has_native_sidecars());
        assert_eq!(KubeVersion { major: 1, minor: 20 }.to_string(), "1.20");
    }

    #[rstest]
    #[case("0", Some(0.0))]
    #[case("1", Some(1.0))]
    #[case("0.25", Some(0.25))]
    #[case("1.0000001", None)]
    #[case("2", None)]
    #[case("-0.5", None)]
    #[case("NaN", None)]
    #[case("inf", None)]
    #[case("half", None)]
    fn ratios(#[case] input: &str, #[case] want: Option<f64>) {
        assert_eq!(parse_ratio(input).ok(), want);
    }

    #[rstest]
    #[case("http://collector:4317", true)]
    #[case("https://otlp.example.com", true)]
    #[case(" http://c.monitoring.svc:4318/ ", true)]
    #[case("collector:4317", false)]
    #[case("grpc://collector:4317", false)]
    #[case("http://", false)]
    #[case("", false)]
    fn endpoints(#[case] input: &str, #[case] ok: bool) {
        assert_eq!(parse_endpoint(input).is_ok(), ok, "{input}");
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("grpc"), Ok(Protocol::Grpc));
        assert_eq!(Protocol::parse("http/protobuf"), Ok(Protocol::HttpProtobuf));
        assert!(Protocol::parse("http/json").is_err());
        assert_eq!(Protocol::HttpProtobuf.to_string(), "http/protobuf");
    }

    #[rstest]
    #[case("tracecontext,baggage", Some(vec!["tracecontext", "baggage"]))]
    #[case(" b3 , jaeger ,", Some(vec!["b3", "jaeger"]))]
    #[case("tracecontext,w3c", None)]
    #[case("", None)]
    fn propagators(#[case] input: &str, #[case] want: Option<Vec<&str>>) {
        let got = parse_propagators(input).ok();
        assert_eq!(got, want.map(|v| v.into_iter().map(str::to_owned).collect()));
    }

    #[rstest]
    #[case("traces,metrics,logs", Some(vec![Signal::Traces, Signal::Metrics, Signal::Logs]))]
    #[case("logs", Some(vec![Signal::Logs]))]
    #[case("", Some(vec![]))]
    #[case("traces,profiles", None)]
    fn signals(#[case] input: &str, #[case] want: Option<Vec<Signal>>) {
        assert_eq!(parse_signals(input).ok(), want);
    }

    #[rstest]
    #[case("team=shop,tier=web", Some(vec![("team", "shop"), ("tier", "web")]))]
    #[case(" team = shop ", Some(vec![("team", "shop")]))]
    #[case("url=http://x?a=b", Some(vec![("url", "http://x?a=b")]))]
    #[case("team", None)]
    #[case("bad key=x", None)]
    #[case("=x", None)]
    fn attribute_lists(#[case] input: &str, #[case] want: Option<Vec<(&str, &str)>>) {
        let want = want.map(|v| v.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
        assert_eq!(parse_attributes(input).ok(), want);
    }

    #[rstest]
    #[case("X-Scope-OrgID", true)]
    #[case("authorization", true)]
    #[case("X Org", false)]
    #[case("", false)]
    fn header_names(#[case] input: &str, #[case] ok: bool) {
        assert_eq!(check_header_name(input).is_ok(), ok);
    }

    #[rstest]
    #[case("256Mi", Some(256 * 1024 * 1024))]
    #[case("1Gi", Some(1 << 30))]
    #[case("1.5Gi", Some(1_610_612_736))]
    #[case("1G", Some(1_000_000_000))]
    #[case("500000", Some(500_000))]
    #[case("lots", None)]
    fn memory_quantities(#[case] input: &str, #[case] want: Option<u64>) {
        assert_eq!(quantity(input).map(|v| v as u64), want);
    }

    #[rstest]
    #[case("500m", 0.5)]
    #[case("2", 2.0)]
    #[case("1e3", 1000.0)]
    #[case("1E", 1e18)]
    #[case("-1", -1.0)]
    fn quantity_values(#[case] input: &str, #[case] want: f64) {
        assert_eq!(quantity(input), Some(want));
    }

    #[rstest]
    #[case("10s", Some(10_000))]
    #[case("500ms", Some(500))]
    #[case("2m", Some(120_000))]
    #[case("10", None)]
    #[case("s", None)]
    #[case("1h", Some(3_600_000))]
    #[case("1d", None)]
    fn durations(#[case] input: &str, #[case] millis: Option<u64>) {
        assert_eq!(parse_duration(input).ok().map(|d| d.as_millis() as u64), millis);
    }

    #[rstest]
    #[case("50m", true)]
    #[case("64Mi", true)]
    #[case("1", true)]
    #[case("1.5", true)]
    #[case("1e3", true)]
    #[case("0.5Gi", true)]
    #[case("lots", false)]
    #[case("Mi", false)]
    #[case("1..5", false)]
    #[case("64MB", false)]
    #[case("", false)]
    fn quantities(#[case] input: &str, #[case] ok: bool) {
        assert_eq!(check_quantity(input).is_ok(), ok, "{input}");
    }
}
