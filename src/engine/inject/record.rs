//! What the webhook wrote into one container, kept in the status annotation: a short digest of every value it set,
//! so a later admission tells its own values (kept current) from values a user edited (never touched).
//!
//! Compact, because it is on every pod: `SN=1a2b3c,EP=4d5e6f,…,RA=7a8b9c.0d1e2f` (a two-letter code per variable,
//! six hex digits of a 64-bit FNV-1a hash per value; for `OTEL_RESOURCE_ATTRIBUTES` one digest per `key=value` pair
//! the webhook wrote, since that variable is merged with the user's pairs).

use std::collections::BTreeMap;
use std::hash::Hasher;

use super::env::RESOURCE_ATTRIBUTES;

/// The variables the webhook sets literally, and their codes in the record (order = rendering order).
pub const CODES: [(&str, &str); 11] = [
    ("OTEL_SERVICE_NAME", "SN"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "EP"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "PR"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "HD"),
    ("OTEL_TRACES_EXPORTER", "TE"),
    ("OTEL_METRICS_EXPORTER", "ME"),
    ("OTEL_LOGS_EXPORTER", "LE"),
    ("OTEL_TRACES_SAMPLER", "TS"),
    ("OTEL_TRACES_SAMPLER_ARG", "TA"),
    ("OTEL_PROPAGATORS", "PG"),
    (RESOURCE_ATTRIBUTES, "RA"),
];

/// Six hex digits of the 64-bit FNV-1a hash of `value`: stable across versions and platforms, and cheap.
pub fn digest(value: &str) -> String {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(value.as_bytes());
    format!("{:06x}", hasher.finish() & 0xff_ffff)
}

/// The webhook's values in one container, as digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    vars: BTreeMap<&'static str, String>,
    pairs: Vec<String>,
}

impl Record {
    /// Reads a record; unknown codes (from a newer version) are ignored.
    pub fn parse(text: &str) -> Self {
        let mut record = Self::default();
        for (code, value) in text.split(',').filter_map(|entry| entry.split_once('=')) {
            match CODES.iter().find(|(_, c)| *c == code) {
                Some((name, _)) if *name == RESOURCE_ATTRIBUTES => {
                    record.pairs = value.split('.').filter(|d| !d.is_empty()).map(str::to_owned).collect();
                }
                Some((name, _)) => {
                    record.vars.insert(name, value.to_owned());
                }
                None => {}
            }
        }
        record
    }

    /// The record's text, in the fixed order of [`CODES`].
    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        for (name, code) in CODES {
            if name == RESOURCE_ATTRIBUTES {
                if !self.pairs.is_empty() {
                    parts.push(format!("{code}={}", self.pairs.join(".")));
                }
            } else if let Some(d) = self.vars.get(name) {
                parts.push(format!("{code}={d}"));
            }
        }
        parts.join(",")
    }

    /// Notes that the webhook set `name` to `value` (a name outside [`CODES`] is not recorded).
    pub fn set(&mut self, name: &str, value: &str) {
        if let Some((name, _)) = CODES.iter().find(|(n, _)| *n == name && *n != RESOURCE_ATTRIBUTES) {
            self.vars.insert(name, digest(value));
        }
    }

    /// Notes that the webhook wrote this `key=value` pair into `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn set_pair(&mut self, pair: &str) {
        self.pairs.push(digest(pair));
    }

    /// Whether the webhook set `name`, whatever its value is now.
    pub fn recorded(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Whether `value` is exactly what the webhook set `name` to.
    pub fn owns(&self, name: &str, value: &str) -> bool {
        self.vars.get(name).is_some_and(|d| *d == digest(value))
    }

    /// Whether the webhook wrote this `OTEL_RESOURCE_ATTRIBUTES` pair.
    pub fn owns_pair(&self, pair: &str) -> bool {
        let d = digest(pair);
        self.pairs.contains(&d)
    }

    /// The variables the webhook set.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.vars.keys().copied()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_short_and_stable() {
        assert_eq!(digest("checkout").len(), 6);
        assert_eq!(digest("checkout"), digest("checkout"));
        assert_ne!(digest("checkout"), digest("checkouts"));
        // Pinned (64-bit FNV-1a, low 24 bits): a digest written by one version must be read by the next.
        assert_eq!(digest(""), "222325");
        assert_eq!(digest("a"), "01ec8c");
    }

    #[test]
    fn a_record_round_trips_in_a_fixed_order() {
        let mut r = Record::default();
        r.set("OTEL_TRACES_SAMPLER_ARG", "0.5");
        r.set("OTEL_SERVICE_NAME", "web");
        r.set("NOT_OURS", "x");
        r.set_pair("k8s.namespace.name=shop");
        r.set_pair("k8s.container.name=app");
        let text = r.render();
        assert!(text.starts_with(&format!("SN={},TA={},RA=", digest("web"), digest("0.5"))), "{text}");
        assert_eq!(Record::parse(&text), r);
        assert!(r.owns("OTEL_SERVICE_NAME", "web") && !r.owns("OTEL_SERVICE_NAME", "api"));
        assert!(r.recorded("OTEL_TRACES_SAMPLER_ARG") && !r.recorded("NOT_OURS"));
        assert!(r.owns_pair("k8s.namespace.name=shop") && !r.owns_pair("k8s.namespace.name=other"));
        assert_eq!(Record::parse("SN=abcdef,ZZ=123456,garbage").names().collect::<Vec<_>>(), ["OTEL_SERVICE_NAME"]);
    }
}
