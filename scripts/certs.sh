#!/usr/bin/env bash
# `make certs`: a CA and a serving certificate for Service otel-injector in namespace otel-injector, written into
# DIR (default certs/), with ca-bundle.yaml, the kustomize patch that puts the CA into both webhook entries.
# Then: kubectl apply -k certs/
# An existing CA is kept (every caBundle trusting it would break); FORCE=1 replaces it.
# OTEL_INJECTOR_BIN runs a built binary instead of `cargo run`.
set -euo pipefail

dir=${1:-certs}
read -r -a bin <<<"${OTEL_INJECTOR_BIN:-cargo run --locked --quiet --}"
force=()
[ -n "${FORCE:-}" ] && force=(--force)

mkdir -p "$dir"
bundle=$("${bin[@]}" certs --out-dir "$dir" --service otel-injector --namespace otel-injector "${force[@]}")
cat >"$dir/ca-bundle.yaml" <<PATCH
# Written by scripts/certs.sh: the CA of $dir/ca.crt for both webhook entries.
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: otel-injector
webhooks:
  - name: pods.otel-injector.io
    clientConfig:
      caBundle: $bundle
  - name: workloads.otel-injector.io
    clientConfig:
      caBundle: $bundle
PATCH
echo "wrote $dir/ca-bundle.yaml; apply with: kubectl apply -k $dir/" >&2
