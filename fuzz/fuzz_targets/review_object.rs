//! `checks::review_object` (see `fuzz/checks.rs`): libFuzzer's bytes decoded into a `Case` of the grammar.
#![no_main]

#[path = "../../tests/common/preserve.rs"]
mod preserve;
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|case: checks::Case| checks::review_object(&case));
