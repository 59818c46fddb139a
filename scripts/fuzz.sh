#!/usr/bin/env bash
# Runs the fuzzers (cargo-fuzz, libFuzzer) for FUZZ_SECONDS each (default 600), TARGETS (default all three) two at a
# time, then minimises each kept corpus (cargo fuzz cmin). A crash is left in fuzz/artifacts/<target>/: fix it, then
# move the input to fuzz/regressions/<target>/, where `make test` replays it for good (tests/fuzz_replay.rs).
# Needs the nightly toolchain (rustup); installs cargo-fuzz into $TOOLS_DIR once.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-600}
targets=${TARGETS:-review_bytes review_object preview_text}
tools=${TOOLS_DIR:-$HOME/.cache/otel-injector/tools}
export PATH=$tools/cargo-fuzz/bin:$PATH

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "make fuzz needs the nightly toolchain (rustup toolchain install nightly); make test replays the corpus on stable" >&2
  exit 2
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz missing: installing it into $tools/cargo-fuzz (a few minutes, once)" >&2
  cargo install --quiet --locked cargo-fuzz --version 0.13.2 --root "$tools/cargo-fuzz"
fi
cargo +nightly fuzz build --fuzz-dir fuzz
run() {
  local target=$1
  mkdir -p "fuzz/artifacts/$target"
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>&1 | grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" | sed "s/^/$target: /"
}
status=0
set -- $targets
while [ $# -gt 0 ]; do
  run "$1" & first=$!
  second=
  if [ $# -gt 1 ]; then run "$2" & second=$!; fi
  wait $first || status=1
  [ -z "$second" ] || wait $second || status=1
  shift; [ $# -gt 0 ] && shift
done
for target in $targets; do
  before=$(ls "fuzz/corpus/$target" | wc -l)
  cargo +nightly fuzz cmin --fuzz-dir fuzz "$target" "fuzz/corpus/$target" >/dev/null 2>&1 || status=1
  echo "$target: corpus minimised from $before to $(ls "fuzz/corpus/$target" | wc -l) inputs"
done
exit $status
