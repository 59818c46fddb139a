//! JSON strings written by hand, fast: the patch, the AdmissionReview answer and the JSON log lines all write their
//! strings through [`push`].

use std::fmt::Write as _;

/// Appends `s` as a JSON string.
pub fn push(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    push_inner(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string, without the quotes.
pub fn push_inner(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut from = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs escaping: the common case, and most of every value.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[from..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        i += 1;
        from = i;
    }
    out.push_str(&s[from..]);
}

/// Whether any of the eight bytes in `word` is a control character, `"` or `\`.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = word.wrapping_sub(0x20 * ONES) & !word & HIGH;
    below_space | zero_byte(word ^ (b'"' as u64 * ONES)) | zero_byte(word ^ (b'\\' as u64 * ONES)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any string, however it must be escaped, is written as valid JSON that reads back the same.
        #[test]
        fn strings_round_trip(s in "\\PC*|[\\x00-\\x7f]{0,20}") {
            let mut written = String::new();
            push(&mut written, &s);
            prop_assert_eq!(serde_json::from_str::<String>(&written).expect("valid JSON"), s);
        }
    }
}
