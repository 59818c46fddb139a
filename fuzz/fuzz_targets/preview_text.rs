//! `checks::preview_text` (see `src/testing/fuzz_checks.rs`), driven by libFuzzer.
#![no_main]

use otel_injector::testing::fuzz_checks as checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::preview_text(data));
