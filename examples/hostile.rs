//! Admits each hostile review of `otel_injector::testing::hostile` in-process and prints the CPU it cost, the size
//! of the answer and what was decided: `cargo run --release --example hostile [BYTES]` (default 3 MiB objects).
//! The figures docs/operations.md ("Limits of one object") reports come from here. `hostile write DIR [BYTES]` writes each review
//! to `DIR/<name>.json` instead, for load tools.
#![allow(missing_docs)]

use std::time::Instant;

use otel_injector::cluster::namespaces::Fixed;
use otel_injector::testing::hostile;
use otel_injector::webhook::admission;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("write") {
        let dir = std::path::PathBuf::from(std::env::args().nth(2).expect("a directory"));
        let bytes = std::env::args().nth(3).and_then(|a| a.parse().ok()).unwrap_or(hostile::MAX_OBJECT);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (name, review) in hostile::all(bytes) {
            std::fs::write(dir.join(format!("{name}.json")), review).expect("written");
        }
        return;
    }
    let bytes = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(hostile::MAX_OBJECT);
    let only = std::env::args().nth(2);
    let config = hostile::config();
    println!("{:<18} {:>10} {:>10} {:>12}  decision", "review", "bytes", "cpu ms", "answer bytes");
    for (name, review) in hostile::all(bytes) {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let started = Instant::now();
        let answer = admission::review(review.as_bytes(), &config, &Fixed::default()).expect("a valid review");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let warning = answer.warnings.first().map(String::as_str).unwrap_or_default();
        println!(
            "{name:<18} {:>10} {ms:>10.1} {:>12}  {} ({}) {} warnings; {warning}",
            review.len(),
            answer.body.len(),
            answer.decision,
            answer.cause,
            answer.warnings.len()
        );
    }
}
