//! `checks::review_object` (see `src/testing/fuzz_checks.rs`): libFuzzer's bytes decoded into a `Case` of the grammar.
#![no_main]

use otel_injector::testing::fuzz_checks as checks;

libfuzzer_sys::fuzz_target!(|case: checks::Case| checks::review_object(&case));
