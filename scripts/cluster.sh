#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1, in one of two lanes:
#   current (default)  etcd, kube-apiserver, kube-controller-manager and kube-scheduler of the Kubernetes release
#                      tools/kubernetes pins (built by scripts/control-plane.sh), with the controllers that make pods
#                      (deployment, replicaset, statefulset, daemonset, job, cronjob, garbage collector, namespace,
#                      service accounts and their tokens) and two Ready Nodes, so pods are scheduled; no kubelet, so
#                      pods stay unstarted, stored exactly as admitted. kubectl of the same release is DIR/bin/kubectl.
#   1.20               kube-apiserver v1.20.2 alone (scripts/kube-apiserver.sh, from Debian's source package), for
#                      what needs an old API server (classic sidecars below 1.29, policy/v1beta1, batch/v1beta1).
# Both: a CA and serving certificate from `otel-injector certs`, a static admin token, RBAC, and a client certificate
# the API server presents to webhooks (DIR/pki/apiserver-client-ca.crt is its CA).
#
#   scripts/cluster.sh up DIR [current|1.20]  start; writes DIR/kubeconfig and prints `export KUBECONFIG=...`
#   scripts/cluster.sh down DIR [--purge]     stop (and remove DIR)
#   scripts/cluster.sh restart-apiserver DIR  stop kube-apiserver and start it again on the same etcd and port
#
# Environment: OTEL_INJECTOR_BIN (the otel-injector binary, default target/debug/otel-injector); OWNER_PID (stop
# and purge the cluster when that process exits, so test runs leave nothing behind).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '13,15p' "$0" | sed 's/^# *//' >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() {
  local port=$1
  for _ in $(seq 600); do
    if curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $(cat "$dir/token")" \
      "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then
      echo "kube-apiserver exited; last lines of $dir/apiserver.log:" >&2
      tail -20 "$dir/apiserver.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "kube-apiserver not ready after 60 s; see $dir/apiserver.log" >&2
  return 1
}

# Starts component $1 (apiserver, controller-manager, scheduler) from $dir/$1.bin with the arguments in $dir/$1.args.
start() {
  # shellcheck disable=SC2046 # one argument per line
  setsid "$(cat "$dir/$1.bin")" $(cat "$dir/$1.args") </dev/null >>"$dir/$1.log" 2>&1 &
  echo $! >"$dir/$1.pid"
}

start_apiserver() {
  start apiserver
  wait_ready "$(cat "$dir/apiserver.port")"
}

stop_pid() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Two Nodes that stay Ready (no node-lifecycle controller runs), with room for many pods.
nodes() {
  local now
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for node in node-a node-b; do
    cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels: {kubernetes.io/hostname: $node, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  capacity: {cpu: "64", memory: 256Gi, pods: "500", ephemeral-storage: 1Ti}
  allocatable: {cpu: "64", memory: 256Gi, pods: "500", ephemeral-storage: 1Ti}
  conditions:
  - {type: Ready, status: "True", reason: KubeletReady, message: "e2e node", lastHeartbeatTime: "$now", lastTransitionTime: "$now"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: v0.0.0, kubeProxyVersion: "", bootID: "", containerRuntimeVersion: "", kernelVersion: "", machineID: "", osImage: "", systemUUID: ""}
YAML
  done
}

case $cmd in
up)
  lane=${3:-current}
  bin=${OTEL_INJECTOR_BIN:-$here/../target/debug/otel-injector}
  [ -x "$bin" ] || { echo "$bin not found: run cargo build (or set OTEL_INJECTOR_BIN)" >&2; exit 1; }
  case $lane in
  current) bins=$("$here/control-plane.sh"); apiserver=$bins/kube-apiserver ;;
  1.20) apiserver=$("$here/kube-apiserver.sh") ;;
  *) echo "unknown lane $lane (current, 1.20)" >&2; exit 2 ;;
  esac
  "$here/kube-apiserver.sh" --etcd-only >/dev/null
  mkdir -p "$dir/bin"
  dir=$(cd "$dir" && pwd)
  echo "$lane" >"$dir/lane"
  # kubectl of the same release as the API server (the machine's own for the old lane).
  if [ "$lane" = current ]; then ln -sf "$bins/kubectl" "$dir/bin/kubectl"; else ln -sf "$(command -v kubectl)" "$dir/bin/kubectl"; fi
  # The API server's serving certificate, from our own `certs` command; its certificate doubles as the service
  # account verification key.
  "$bin" certs --service kubernetes --namespace default --ip 127.0.0.1 --dns localhost --days 30 \
    --out-dir "$dir/pki" >/dev/null 2>&1
  # The client certificate the API server presents to every webhook (AdmissionConfiguration below), so a webhook
  # started with --client-ca "$dir/pki/apiserver-client-ca.crt" lets only this API server in.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=otel-injector-e2e-apiserver-client-ca -keyout "$dir/pki/apiserver-client-ca.key" \
    -out "$dir/pki/apiserver-client-ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=kube-apiserver \
    -keyout "$dir/pki/apiserver-client.key" -out "$dir/pki/apiserver-client.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$dir/pki/apiserver-client.ext"
  openssl x509 -req -in "$dir/pki/apiserver-client.csr" -CA "$dir/pki/apiserver-client-ca.crt" \
    -CAkey "$dir/pki/apiserver-client-ca.key" -CAcreateserial -days 30 -extfile "$dir/pki/apiserver-client.ext" \
    -out "$dir/pki/apiserver-client.crt" 2>/dev/null
  cat >"$dir/webhook-kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: '*'
  user:
    client-certificate: $dir/pki/apiserver-client.crt
    client-key: $dir/pki/apiserver-client.key
EOF
  cat >"$dir/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $dir/webhook-kubeconfig
EOF
  python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/token"
  echo "$(cat "$dir/token"),admin,admin,\"system:masters\"" >"$dir/tokens.csv"
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  setsid etcd --name default --data-dir "$dir/etcd" --log-level warn \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  echo "$apiserver" >"$dir/apiserver.bin"
  echo "$api_port" >"$dir/apiserver.port"
  cat >"$dir/apiserver.args" <<EOF
--etcd-servers=http://127.0.0.1:$etcd_port
--bind-address=127.0.0.1
--advertise-address=127.0.0.1
--secure-port=$api_port
--tls-cert-file=$dir/pki/tls.crt
--tls-private-key-file=$dir/pki/tls.key
--client-ca-file=$dir/pki/ca.crt
--token-auth-file=$dir/tokens.csv
--authorization-mode=RBAC
--service-account-issuer=https://kubernetes.default.svc
--service-account-key-file=$dir/pki/tls.crt
--service-account-signing-key-file=$dir/pki/tls.key
--service-cluster-ip-range=10.0.0.0/24
--endpoint-reconciler-type=none
--admission-control-config-file=$dir/admission.yaml
--allow-privileged=true
EOF
  if [ "$lane" = 1.20 ]; then
    # No ServiceAccount admission (no controller creates `default` service accounts) and no insecure port.
    printf -- '--insecure-port=0\n--disable-admission-plugins=ServiceAccount\n' >>"$dir/apiserver.args"
  fi
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: otel-injector-dev
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    token: $(cat "$dir/token")
contexts:
- name: otel-injector-dev
  context: {cluster: otel-injector-dev, user: admin}
current-context: otel-injector-dev
EOF
  if [ -n "${OWNER_PID:-}" ]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down "$3" --purge' \
      watchdog "$OWNER_PID" "$here/cluster.sh" "$dir" </dev/null >/dev/null 2>&1 &
  fi
  start_apiserver
  if [ "$lane" = current ]; then
    echo "$bins/kube-controller-manager" >"$dir/controller-manager.bin"
    # Every controller but those that need a kubelet, a cloud or a node network; all under the admin identity.
    cat >"$dir/controller-manager.args" <<EOF
--kubeconfig=$dir/kubeconfig
--leader-elect=false
--bind-address=127.0.0.1
--secure-port=$(free_port)
--controllers=*,-node-lifecycle-controller,-node-ipam-controller,-taint-eviction-controller,-device-taint-eviction-controller,-persistentvolume-binder-controller,-persistentvolume-attach-detach-controller,-ttl-controller,-horizontal-pod-autoscaler-controller
--use-service-account-credentials=false
--service-account-private-key-file=$dir/pki/tls.key
--root-ca-file=$dir/pki/ca.crt
--concurrent-deployment-syncs=10
--concurrent-replicaset-syncs=10
EOF
    start controller-manager
    echo "$bins/kube-scheduler" >"$dir/scheduler.bin"
    printf -- '--kubeconfig=%s\n--leader-elect=false\n--bind-address=127.0.0.1\n--secure-port=%s\n' \
      "$dir/kubeconfig" "$(free_port)" >"$dir/scheduler.args"
    start scheduler
    nodes | "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" create -f - >/dev/null
    # Admission taints a new Node not-ready until its kubelet reports; there is none, and nothing taints it again.
    "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" taint nodes --all node.kubernetes.io/not-ready:NoSchedule- \
      >/dev/null
    # Namespaces get their `default` service account from the controller; wait for the first one.
    for _ in $(seq 300); do
      "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default -n default >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  echo "export KUBECONFIG=$dir/kubeconfig"
  ;;
down)
  stop_pid "$dir/scheduler.pid"
  stop_pid "$dir/controller-manager.pid"
  stop_pid "$dir/apiserver.pid"
  stop_pid "$dir/etcd.pid"
  if [ "${3:-}" = "--purge" ]; then rm -rf "$dir"; fi
  ;;
restart-apiserver)
  stop_pid "$dir/apiserver.pid"
  start_apiserver
  ;;
*)
  echo "unknown command $cmd (up, down, restart-apiserver)" >&2
  exit 2
  ;;
esac
