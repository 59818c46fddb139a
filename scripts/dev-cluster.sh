#!/usr/bin/env bash
# A development cluster on this machine: the current control plane of scripts/cluster.sh (API server, controllers,
# scheduler, two Nodes) with otel-injector running beside it and registered as a mutating webhook
# (clientConfig.url on 127.0.0.1), so `kubectl create deployment` gives instrumented pods with nothing else
# installed. Pods are scheduled but never start (there is no kubelet); they are stored exactly as admitted.
#
#   scripts/dev-cluster.sh up DIR     start everything; prints the KUBECONFIG and PATH (its kubectl) to export
#   scripts/dev-cluster.sh down DIR   stop everything and remove DIR
#
# Environment: OTEL_INJECTOR_BIN (default target/debug/otel-injector).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '6,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
bin=${OTEL_INJECTOR_BIN:-$here/../target/debug/otel-injector}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case $cmd in
up)
  [ -x "$bin" ] || { echo "$bin not found: run cargo build (or set OTEL_INJECTOR_BIN)" >&2; exit 1; }
  if [ -f "$dir/webhook.pid" ] && kill -0 "$(cat "$dir/webhook.pid")" 2>/dev/null; then
    echo "a dev cluster is already running in $dir (stop it with: make dev-cluster-down)" >&2
    echo "export KUBECONFIG=$(cd "$dir" && pwd)/kubeconfig PATH=$(cd "$dir" && pwd)/bin:\$PATH"
    exit 0
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  export OTEL_INJECTOR_BIN=$bin
  "$here/cluster.sh" up "$dir/cluster" >/dev/null
  cp "$dir/cluster/kubeconfig" "$dir/kubeconfig"
  # kubectl of the control plane's own release.
  mkdir -p "$dir/bin"
  ln -sf "$(readlink -f "$dir/cluster/bin/kubectl")" "$dir/bin/kubectl"
  export KUBECONFIG=$dir/kubeconfig PATH=$dir/bin:$PATH
  mkdir -p "$dir/webhook-certs"
  "$bin" certs --service otel-injector --namespace otel-injector --ip 127.0.0.1 --dns localhost \
    --out-dir "$dir/webhook-certs" 2>/dev/null >"$dir/webhook-certs/ca-bundle"
  cat >"$dir/config.yaml" <<'EOF'
# otel-injector's config for the dev cluster: opt-in per namespace or pod, workload templates mutated too.
default: skip
workloads: [Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob]
EOF
  port=$(free_port); metrics=$(free_port)
  # The config also lives where it would in a cluster, ConfigMap otel-injector/otel-injector (key config.yaml), so
  # `audit --config-from-cluster otel-injector/otel-injector` and `preview` read what the webhook uses.
  kubectl create namespace otel-injector >/dev/null
  kubectl create configmap otel-injector -n otel-injector --from-file=config.yaml="$dir/config.yaml" >/dev/null
  setsid "$bin" serve --config "$dir/config.yaml" --kubeconfig "$dir/kubeconfig" --webhook-namespace otel-injector \
    --tls-cert "$dir/webhook-certs/tls.crt" --tls-key "$dir/webhook-certs/tls.key" \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics" </dev/null >"$dir/webhook.log" 2>&1 &
  echo $! >"$dir/webhook.pid"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null || { echo "webhook not ready; see $dir/webhook.log" >&2; exit 1; }
  kubectl apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: otel-injector
webhooks:
- name: pods.otel-injector.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 5
  clientConfig:
    url: https://127.0.0.1:$port/mutate
    caBundle: $(cat "$dir/webhook-certs/ca-bundle")
  namespaceSelector:
    matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: [kube-system, kube-public, kube-node-lease, otel-injector]
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  - apiGroups: [apps, batch]
    apiVersions: ["*"]
    operations: [CREATE, UPDATE]
    resources: [deployments, statefulsets, daemonsets, jobs, cronjobs]
EOF
  # The API server picks up a new webhook configuration within a moment: wait until a dry-run pod is mutated.
  probe='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probe","annotations":{"otel-injector.io/inject":"true"}},"spec":{"containers":[{"name":"c","image":"x"}]}}'
  for _ in $(seq 100); do
    if echo "$probe" | kubectl create -n default --dry-run=server -o yaml -f - 2>/dev/null | grep -q otel-injector.io/status; then
      echo "dev cluster up: Kubernetes $(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'), otel-injector on 127.0.0.1:$port (metrics :$metrics, log $dir/webhook.log)" >&2
      echo "export KUBECONFIG=$dir/kubeconfig PATH=$dir/bin:\$PATH"
      exit 0
    fi
    sleep 0.1
  done
  echo "the webhook is registered but the API server does not call it; see $dir/webhook.log" >&2
  exit 1
  ;;
down)
  if [ -f "$dir/webhook.pid" ]; then kill "$(cat "$dir/webhook.pid")" 2>/dev/null || true; fi
  if [ -d "$dir/cluster" ]; then "$here/cluster.sh" down "$dir/cluster"; fi
  rm -rf "$dir"
  ;;
*)
  echo "unknown command $cmd (up, down)" >&2
  exit 2
  ;;
esac
