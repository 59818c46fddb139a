//! An OTLP trace receiver for the benchmark (`scripts/bench.py`): gRPC on 127.0.0.1, port of its own choosing; it
//! decodes every export and counts its spans, keeping none.
//! Writes its endpoint to the file given, then, every 200 ms, the number of spans received to `<file>.count`.
#![allow(missing_docs)]

use otel_injector::testing::otlp;

fn main() {
    let out = std::env::args().nth(1).expect("usage: otlp_sink FILE");
    let receiver = otlp::Receiver::start_counting(otlp::Transport::Grpc);
    std::fs::write(&out, &receiver.endpoint).expect("write the endpoint");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::write(format!("{out}.count"), receiver.count().to_string()).expect("write the count");
    }
}
