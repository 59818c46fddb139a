#!/usr/bin/env bash
# Builds a real kube-apiserver (Kubernetes v1.20.2, from Debian bookworm's source package) and installs etcd, both
# from Debian's packages alone, and caches the binary outside the repository so only the first run pays (~4 min).
# Prints the path of the kube-apiserver binary on stdout. Needs root for apt (as CI and these machines have).
set -euo pipefail

cache=${OTEL_INJECTOR_CACHE:-$HOME/.cache/otel-injector}
version=1.20.2
recipe=2 # bump when this script builds differently, so cached binaries are rebuilt
bin=$cache/kube-apiserver-v$version-r$recipe
log=$cache/kube-apiserver-build.log

apt_install() {
  local missing=()
  for pkg in "$@"; do
    # `dpkg -s` also succeeds for removed-but-not-purged packages: ask for the installed state.
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

apt_install etcd-server
# `--etcd-only`: etcd is all the caller needs (the current lane builds its own API server).
if [ "${1:-}" = --etcd-only ]; then exit 0; fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

mkdir -p "$cache"
apt_install golang-go golang-github-modern-go-reflect2-dev dpkg-dev

# `apt-get source` needs a deb-src entry for the mirror already configured.
src_list=/etc/apt/sources.list.d/otel-injector-deb-src.sources
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "adding deb-src entries ($src_list) for apt-get source" >&2
  sed -n '/^Types: deb$/,/^$/p' /etc/apt/sources.list.d/debian.sources | sed 's/^Types: deb$/Types: deb-src/' \
    > "$src_list"
  apt-get update -qq >&2
fi

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building kube-apiserver v$version from Debian's source package (about 4 minutes; log: $log)" >&2
# errexit is ignored in a subshell whose status is tested (`( ... ) || ...`), so test it afterwards.
set +e
(
  set -euo pipefail
  cd "$work"
  apt-get source -qq --download-only kubernetes
  dpkg-source -x --no-check kubernetes_*.dsc src
  # GOPATH mode: module mode fails offline ("updates to go.mod needed").
  mkdir -p gopath/src/k8s.io
  mv src gopath/src/k8s.io/kubernetes
  k8s=$work/gopath/src/k8s.io/kubernetes
  # Vendored reflect2 1.0.1 crashes under Go >= 1.18 (SIGSEGV in UnsafeMapType.UnsafeIterate): use Debian's 1.0.2.
  rm -rf "$k8s/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$k8s/vendor/github.com/modern-go/reflect2"
  export GOPATH=$work/gopath GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOCACHE=$work/gocache
  cd "$k8s"
  # The generated OpenAPI definitions are not in the tarball; generate them as upstream's Makefile does.
  go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # Every package tagged +k8s:openapi-gen, named as upstream's Makefile names them (staging/src -> vendor).
  dirs=$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
    | xargs grep -l '^// *+k8s:openapi-gen=' | sed 's|/[^/]*$||; s|^\./||; s|^staging/src|vendor|' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' | LC_ALL=C sort -u \
    | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)
  "$work/openapi-gen" --logtostderr -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/violations.report"
  # Stamp the version as upstream's hack/lib/version.sh does (discovery must report it); in GOPATH mode both
  # version packages live under the vendor path.
  ldflags="-s -w"
  for pkg in client-go/pkg/version component-base/version; do
    for kv in gitVersion=v$version gitMajor=1 gitMinor=$(echo "$version" | cut -d. -f2) gitTreeState=clean; do
      ldflags="$ldflags -X k8s.io/kubernetes/vendor/k8s.io/$pkg.$kv"
    done
  done
  go build -ldflags "$ldflags" \
    -o "$work/kube-apiserver" ./cmd/kube-apiserver
) >"$log" 2>&1
built=$?
set -e
if [ "$built" -ne 0 ]; then
  echo "kube-apiserver build failed; last lines of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
mv "$work/kube-apiserver" "$bin"
echo "$bin"
