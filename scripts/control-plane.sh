#!/usr/bin/env bash
# Builds (once, cached outside the repository, keyed by version and recipe) the current Kubernetes control plane the
# end-to-end tests and `make dev-cluster` run: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# from the k8s.io/kubernetes Go module (tools/kubernetes/go.mod pins its staging modules), with the machine's Go and
# the Go module proxy. Prints the directory of the binaries on stdout. About 5 minutes on 2 cores, once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${OTEL_INJECTOR_CACHE:-$HOME/.cache/otel-injector}
module=$here/../tools/kubernetes
version=$(sed -n 's/^require k8s.io\/kubernetes v//p' "$module/go.mod")
recipe=1 # bump when this script builds differently, so cached binaries are rebuilt
out=$cache/kubernetes-v$version-r$recipe
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

built() { for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if built; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "go not found (make test installs Debian's golang-go)" >&2; exit 1; }
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}
echo "building Kubernetes v$version (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) from the Go module proxy (about 5 minutes, once)" >&2
tmp=$(mktemp -d "$cache/kubernetes-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Version stamps, as the Kubernetes build sets them: the API server reports them, and the webhook reads them.
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=v$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
(
  cd "$module"
  export GOPATH=$cache/gopath GOMODCACHE=$cache/gomodcache GOCACHE=$cache/gocache CGO_ENABLED=0 GOFLAGS=-mod=mod
  packages=()
  for b in "${binaries[@]}"; do packages+=("k8s.io/kubernetes/cmd/$b"); done
  go build -trimpath -ldflags "-s -w$stamp" -o "$tmp/" "${packages[@]}"
) >&2
mkdir -p "$out"
for b in "${binaries[@]}"; do mv "$tmp/$b" "$out/$b"; done
echo "$out"
