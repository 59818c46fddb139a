#!/usr/bin/env bash
# Load test: the release webhook over TLS with HTTP/1.1 keep-alive, the way the API server calls it
# (up to 25 idle connections per host), driven by h2load with a real captured Pod CREATE review (~9.5 KB).
# Prints RSS idle and after load. Usage: scripts/loadtest.sh [requests] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-40000}
connections=${2:-25}
corpus=${OTEL_INJECTOR_CORPUS:-../shared/corpus}

if ! command -v h2load >/dev/null; then
  echo "h2load missing: installing Debian's nghttp2-client" >&2
  apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build --release --quiet
bin=target/release/otel-injector
work=$(mktemp -d)
python3 - "$corpus/admission-reviews/kw__replicaset-pod-create-generatename.req.json" > "$work/review.json" <<'PY'
import json, sys
request = json.load(open(sys.argv[1]))
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
PY

port=18443; metrics=19090
"$bin" serve --dev-certs --default inject --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$metrics \
  --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null && break; sleep 0.1; done
echo "body: $(wc -c < "$work/review.json") bytes; idle $(grep VmRSS /proc/$pid/status)"
h2load --h1 -n "$requests" -c "$connections" -t 2 -d "$work/review.json" \
  -H 'content-type: application/json' "https://127.0.0.1:$port/mutate?timeout=10s" \
  | grep -E "^(finished|requests|status codes|traffic|time for request|req/s)|^ +(min|time)"
echo "after load $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr '\n' ' ')"
curl -s "http://127.0.0.1:$metrics/metrics" | grep -E '^otel_injector_admission_requests_total'
