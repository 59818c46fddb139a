#!/usr/bin/env bash
# Load test: the release webhook over TLS with HTTP/1.1 keep-alive, the way the API server calls it
# (up to 25 idle connections per host), driven by h2load with a real captured Pod CREATE review (~9.5 KB).
# Runs once per tracing mode (TRACING, default "all"):
#   off   OTEL_SDK_DISABLED=true: no tracer
#   local no endpoint: a tracer for the logs' trace ids, nothing exported (the default)
#   dead  exporting over gRPC to a port that refuses
#   live  exporting over gRPC to an in-process receiver (examples/otlp_sink.rs)
# Prints throughput, latency at a fixed rate (RATE, default 500 reviews/s, for SECONDS_AT_RATE), RSS idle and after
# load. Usage: scripts/loadtest.sh [requests] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-40000}
connections=${2:-25}
rate=${RATE:-500}        # reviews/s of the fixed-rate latency run
seconds=${SECONDS_AT_RATE:-10}
modes=${TRACING:-all}
[ "$modes" = all ] && modes="off local dead live"
corpus=${OTEL_INJECTOR_CORPUS:-../shared/corpus}

if ! command -v h2load >/dev/null; then
  echo "h2load missing: installing Debian's nghttp2-client" >&2
  apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build --release --quiet --bin otel-injector --example otlp_sink
bin=target/release/otel-injector
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$corpus/admission-reviews/kw__replicaset-pod-create-generatename.req.json" > "$work/review.json" <<'PY'
import json, sys
request = json.load(open(sys.argv[1]))
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
PY
echo "body: $(wc -c < "$work/review.json") bytes, $requests requests over $connections connections"

target/release/examples/otlp_sink "$work/sink" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/sink" ] && break; sleep 0.1; done

port=18443; metrics=19090
for mode in $modes; do
  env=(env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_SDK_DISABLED)
  case $mode in
    off) env+=(OTEL_SDK_DISABLED=true) ;;
    local) ;;
    dead) env+=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1 OTEL_EXPORTER_OTLP_PROTOCOL=grpc) ;;
    live) env+=(OTEL_EXPORTER_OTLP_ENDPOINT="$(cat "$work/sink")" OTEL_EXPORTER_OTLP_PROTOCOL=grpc) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  "${env[@]}" "$bin" serve --dev-certs --default inject --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$metrics \
    --log-level warn --drain-delay 0s &
  pid=$!; pids+=($pid)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null && break; sleep 0.1; done
  before=$(cat "$work/sink.count" 2>/dev/null || echo 0)
  echo "== tracing $mode: idle $(grep VmRSS /proc/$pid/status | tr -s ' \t' ' ')"
  h2load --h1 -n "$requests" -c "$connections" -t 2 -d "$work/review.json" \
    -H 'content-type: application/json' "https://127.0.0.1:$port/mutate?timeout=10s" \
    | grep -E "^(finished|requests|status codes)"
  # Latency at a fixed rate (the admission latency a cluster sees), from h2load's per-request log.
  rm -f "$work/latency.log"
  h2load --h1 -c "$connections" -t 1 --rps $((rate / connections)) -D "$seconds" -d "$work/review.json" \
    -H 'content-type: application/json' --log-file "$work/latency.log" \
    "https://127.0.0.1:$port/mutate?timeout=10s" >/dev/null
  python3 - "$work/latency.log" "$rate" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]) if line.strip()]
ok = sorted(int(r[2]) for r in rows if r[1] == "200")
def q(p):
    return ok[min(len(ok) - 1, int(p * len(ok)))] / 1000
print(f"at {sys.argv[2]} reviews/s: {len(ok)}/{len(rows)} ok, latency ms p50 {q(0.5):.3f} p99 {q(0.99):.3f} "
      f"p99.9 {q(0.999):.3f} max {ok[-1] / 1000:.3f}")
PY
  echo "after load $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \t\n' ' ')"
  curl -s "http://127.0.0.1:$metrics/metrics" | grep -E '^otel_injector_(admission_requests_total|spans_dropped_total)' || true
  kill -TERM $pid; wait $pid 2>/dev/null || true
  sleep 0.5
  [ "$mode" = live ] && echo "spans received: $(( $(cat "$work/sink.count") - before ))"
done
