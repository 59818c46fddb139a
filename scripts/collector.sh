#!/usr/bin/env bash
# Builds (once, cached outside the repository, keyed by the builder config's content) an OpenTelemetry Collector
# from the components listed in tools/collector/NAME.yaml, with the collector builder at that config's release and
# the Go module proxy, and prints the binary's path. `sidecar`: the components of the sidecar's generated
# configuration; `gateway`: those of the gateway in helm-values/. About 3 minutes on 2 cores, once each.
#
#   scripts/collector.sh sidecar|gateway
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: scripts/collector.sh sidecar|gateway}
config=$here/../tools/collector/$name.yaml
[ -f "$config" ] || { echo "no builder config $config" >&2; exit 2; }
cache=${OTEL_INJECTOR_CACHE:-$HOME/.cache/otel-injector}
version=$(sed -n 's/^  version: //p' "$config")
key=$(cksum <"$config" | cut -d' ' -f1)
out=$cache/otelcol-$name-v$version-$key
binary=$out/otelcol-$name
if [ -x "$binary" ]; then echo "$binary"; exit 0; fi

command -v go >/dev/null || { echo "go not found (make test installs Debian's golang-go)" >&2; exit 1; }
export GOPATH=$cache/gopath GOMODCACHE=$cache/gomodcache GOCACHE=$cache/gocache CGO_ENABLED=0 GOFLAGS=-mod=mod
builder_dir=$cache/collector-builder-v$version
if [ ! -x "$builder_dir/builder" ]; then
  echo "installing the collector builder v$version" >&2
  GOBIN=$builder_dir go install "go.opentelemetry.io/collector/cmd/builder@v$version" >&2
fi
echo "building the $name collector v$version from its components (about 3 minutes, once)" >&2
work=$(mktemp -d "$cache/otelcol-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The output path goes under `dist:`.
python3 - "$config" "$work/out" >"$work/config.yaml" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
out = []
for line in lines:
    out.append(line)
    if line.startswith("dist:"):
        out.append("  output_path: " + sys.argv[2])
print("\n".join(out))
PY
# The builder writes the sources and go.mod; its `go mod tidy` also fetches the components' test dependencies,
# some of which the proxy does not serve, so it may fail there: `go mod tidy -e` tolerates those, and the build
# needs none of them.
(
  cd "$work"
  "$builder_dir/builder" --config "$work/config.yaml" --skip-compilation >"$work/builder.log" 2>&1 ||
    grep -q 'go subcommand failed with args .\[mod tidy' "$work/builder.log" || { cat "$work/builder.log" >&2; exit 1; }
  cd "$work/out"
  go mod tidy -e >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "otelcol-$name" . >&2
)
mkdir -p "$out"
mv "$work/out/otelcol-$name" "$binary"
echo "$binary"
