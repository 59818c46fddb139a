//! What the webhook wrote into one container, kept in the status annotation: a short digest of every value it set,
//! so a later admission tells its own values (kept current) from values a user edited (never touched).
//!
//! Compact, because it is on every pod: `SN=1a2b3c,EP=4d5e6f,…,RA=7a8b9c.0d1e2f` (a two-letter code per variable,
//! six hex digits of a 64-bit FNV-1a hash per value; for `OTEL_RESOURCE_ATTRIBUTES` one digest per `key=value` pair
//! the webhook wrote, since that variable is merged with the user's pairs).

use std::hash::Hasher;

use super::vars::{RESOURCE_ATTRIBUTES, VARS};

/// The most `OTEL_RESOURCE_ATTRIBUTES` pairs the webhook writes into one container: the attributes it derives and
/// the ones configured or annotated.
const MAX_PAIRS: usize = 16 + crate::engine::limits::ATTRIBUTES;

/// Six hex digits of the 64-bit FNV-1a hash of a value: stable across versions and platforms, and cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u32);

impl Digest {
    /// What a record holds that is not six hex digits (written by hand, or by a future version): matches nothing.
    const UNREADABLE: Self = Self(u32::MAX);

    fn parse(text: &str) -> Self {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        match u32::from_str_radix(text, 16) {
            Ok(d) if text.len() == 6 && text.bytes().all(lower_hex) => Self(d),
            _ => Self::UNREADABLE,
        }
    }

    /// Appends the six hex digits.
    fn push_to(self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in [20, 16, 12, 8, 4, 0] {
            out.push(char::from(HEX[((self.0 >> shift) & 0xf) as usize]));
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::with_capacity(6);
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

/// The [`Digest`] of `value`.
pub fn digest(value: &str) -> Digest {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(value.as_bytes());
    Digest((hasher.finish() & 0xff_ffff) as u32)
}

/// Where `name` is in [`VARS`], for a variable recorded by itself (not `OTEL_RESOURCE_ATTRIBUTES`).
fn slot(name: &str) -> Option<usize> {
    VARS.iter().position(|v| v.name == name && v.name != RESOURCE_ATTRIBUTES)
}

/// The webhook's values in one container, as digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// By position in [`VARS`].
    vars: [Option<Digest>; VARS.len()],
    pairs: Vec<Digest>,
}

impl Record {
    /// Reads a record; unknown codes (from a newer version) are ignored.
    pub fn parse(text: &str) -> Self {
        let mut record = Self::default();
        for (code, value) in text.split(',').filter_map(|entry| entry.split_once('=')) {
            match VARS.iter().position(|v| v.code == code) {
                Some(i) if VARS[i].name == RESOURCE_ATTRIBUTES => {
                    // No more than the webhook ever writes: a forged record cannot make every lookup long.
                    let digests = value.split('.').filter(|d| !d.is_empty()).take(MAX_PAIRS);
                    record.pairs = digests.map(Digest::parse).collect();
                }
                Some(i) => record.vars[i] = Some(Digest::parse(value)),
                None => {}
            }
        }
        record
    }

    /// The record's text, in the fixed order of [`VARS`].
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(10 * VARS.len() + 7 * self.pairs.len());
        let start = |out: &mut String, code: &str| {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(code);
            out.push('=');
        };
        for (i, var) in VARS.iter().enumerate() {
            let code = var.code;
            if var.name == RESOURCE_ATTRIBUTES {
                for (k, d) in self.pairs.iter().enumerate() {
                    if k == 0 {
                        start(&mut out, code);
                    } else {
                        out.push('.');
                    }
                    d.push_to(&mut out);
                }
            } else if let Some(d) = self.vars[i] {
                start(&mut out, code);
                d.push_to(&mut out);
            }
        }
        out
    }

    /// Notes that the webhook set `name` to `value` (a name outside [`VARS`] is not recorded).
    pub fn set(&mut self, name: &str, value: &str) {
        if let Some(i) = slot(name) {
            self.vars[i] = Some(digest(value));
        }
    }

    /// Notes that the webhook wrote this `key=value` pair into `OTEL_RESOURCE_ATTRIBUTES`.
    pub(crate) fn set_pair(&mut self, pair: &str) {
        self.pairs.push(digest(pair));
    }

    /// Whether the webhook set `name`, whatever its value is now.
    pub fn recorded(&self, name: &str) -> bool {
        slot(name).is_some_and(|i| self.vars[i].is_some())
    }

    /// Whether `value` is exactly what the webhook set `name` to.
    pub fn owns(&self, name: &str, value: &str) -> bool {
        slot(name).and_then(|i| self.vars[i]).is_some_and(|d| d == digest(value))
    }

    /// Whether the webhook wrote this `OTEL_RESOURCE_ATTRIBUTES` pair.
    pub(crate) fn owns_pair(&self, pair: &str) -> bool {
        self.pairs.contains(&digest(pair))
    }

    /// The variables the webhook set.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        VARS.iter().zip(&self.vars).filter(|(_, d)| d.is_some()).map(|(var, _)| var.name)
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.vars.iter().all(Option::is_none) && self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_short_and_stable() {
        assert_eq!(digest("checkout").to_string().len(), 6);
        assert_eq!(digest("checkout"), digest("checkout"));
        assert_ne!(digest("checkout"), digest("checkouts"));
        // Pinned (64-bit FNV-1a, low 24 bits): a digest written by one version must be read by the next.
        assert_eq!(digest("").to_string(), "222325");
        assert_eq!(digest("a").to_string(), "01ec8c");
        assert_eq!(Digest::parse("01ec8c"), digest("a"));
        for unreadable in ["1ec8c", "01ec8cc", "zzzzzz", "", "+1ec8c", "01EC8C"] {
            assert_eq!(Digest::parse(unreadable), Digest::UNREADABLE, "{unreadable}");
        }
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
