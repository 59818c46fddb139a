#!/usr/bin/env bash
# The test run of `make test`: builds every test target, then runs the end-to-end binary (mostly waiting on an API
# server, sockets and a 93 s keep-alive idle) beside all the others, and reports both. Arguments go to every
# `cargo test` (e.g. --locked). Exit status: non-zero when any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}

"$cargo" test "$@" --no-run --quiet || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$cargo" test "$@" --no-fail-fast --test e2e >"$log" 2>&1 &
e2e=$!

others=(--lib --bins)
for target in tests/*.rs tests/*/main.rs; do
  name=$(basename "$target" .rs)
  [ "$name" = main ] && name=$(basename "$(dirname "$target")")
  [ "$name" = e2e ] || others+=(--test "$name")
done
"$cargo" test "$@" --no-fail-fast "${others[@]}"
status=$?
"$cargo" test "$@" --doc --quiet || status=1

wait "$e2e" || status=1
echo "---- end to end (tests/e2e) ----"
cat "$log"
exit $status
