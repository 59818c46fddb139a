//! The fuzzers' kept corpus and every crash they found, replayed through the same checks
//! (`otel_injector::testing::fuzz_checks`) on stable Rust, so `make test` guards what `make fuzz` found. Inputs live in `fuzz/corpus/<target>/` (minimised)
//! and `fuzz/regressions/<target>/` (each crash, kept as a regression test).

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use otel_injector::testing::fuzz_checks as checks;

/// Every input kept for `target`; at least `min` of them (the corpus must not go missing unnoticed).
fn inputs(target: &str, min: usize) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut found = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries.map_while(Result::ok) {
            let bytes = std::fs::read(entry.path()).expect("readable");
            found.push((entry.path().display().to_string(), bytes));
        }
    }
    found.sort();
    assert!(found.len() >= min, "{target}: {} inputs kept, expected at least {min}", found.len());
    found
}

/// Runs `check` on each input, naming the one that fails.
fn replay(target: &str, min: usize, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    for (name, bytes) in inputs(target, min) {
        if let Err(e) = std::panic::catch_unwind(|| check(&bytes)) {
            let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()));
            panic!("{name}: {}", why.unwrap_or_default());
        }
    }
}

#[test]
fn raw_bytes_into_the_review_handler_always_get_a_well_formed_answer() {
    replay("review_bytes", 20, checks::review_bytes);
}

#[test]
fn objects_from_the_grammar_get_patches_that_apply_keep_every_field_and_settle() {
    replay("review_object", 20, |bytes| {
        // As libfuzzer-sys decodes a typed input.
        if let Ok(case) = checks::Case::arbitrary_take_rest(Unstructured::new(bytes)) {
            checks::review_object(&case);
        }
    });
}

#[test]
fn preview_over_arbitrary_text_never_panics() {
    replay("preview_text", 20, checks::preview_text);
}
