//! `checks::review_bytes` (see `fuzz/checks.rs`), driven by libFuzzer.
#![no_main]

#[path = "../../tests/common/preserve.rs"]
mod preserve;
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::review_bytes(data));
