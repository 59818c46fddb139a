//! `checks::preview_text` (see `fuzz/checks.rs`), driven by libFuzzer.
#![no_main]

#[path = "../../tests/common/preserve.rs"]
mod preserve;
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::preview_text(data));
