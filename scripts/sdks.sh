#!/usr/bin/env bash
# Installs (once, cached outside the repository, keyed by the pinned requirements) the OpenTelemetry SDKs the SDK
# tests run, from their registries, and prints where. `python`: a virtualenv with tools/sdks/python/requirements.txt;
# `node`: tools/sdks/node's locked packages (npm ci); `go`: tools/sdks/go built against its go.sum; `java`: the
# autoconfigure module and OTLP exporters of tools/sdks/java/pom.xml, and App.java compiled against them; `rust`:
# tools/sdks/rust built against its Cargo.lock.
#
#   scripts/sdks.sh python|node|go|java|rust
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
sdk=${1:?usage: scripts/sdks.sh python|node|go|java|rust}
cache=${OTEL_INJECTOR_CACHE:-$HOME/.cache/otel-injector}
case "$sdk" in
  python)
    requirements=$here/../tools/sdks/python/requirements.txt
    key=$(cksum <"$requirements" | cut -d' ' -f1)
    out=$cache/sdk-python-$key
    # Complete only once the stamp is there: an interrupted install is started again.
    if [ -f "$out/.installed" ]; then echo "$out"; exit 0; fi
    echo "installing the Python SDK (once)" >&2
    rm -rf "$out"
    python3 -m venv "$out"
    "$out/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    touch "$out/.installed"
    echo "$out"
    ;;
  node)
    dir=$here/../tools/sdks/node
    key=$(cat "$dir/package.json" "$dir/package-lock.json" | cksum | cut -d' ' -f1)
    out=$cache/sdk-node-$key
    if [ -f "$out/.installed" ]; then echo "$out"; exit 0; fi
    echo "installing the Node.js SDK (once)" >&2
    rm -rf "$out"
    mkdir -p "$out"
    cp "$dir/package.json" "$dir/package-lock.json" "$out/"
    (cd "$out" && npm ci --no-audit --no-fund --silent >&2)
    touch "$out/.installed"
    echo "$out"
    ;;
  go)
    dir=$here/../tools/sdks/go
    key=$(cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" | cksum | cut -d' ' -f1)
    out=$cache/sdk-go-$key
    if [ -x "$out/app" ]; then echo "$out"; exit 0; fi
    command -v go >/dev/null || { echo "go not found (make test installs Debian's golang-go)" >&2; exit 1; }
    echo "building the Go SDK application (once)" >&2
    export GOPATH=$cache/gopath GOMODCACHE=$cache/gomodcache GOCACHE=$cache/gocache GOFLAGS=-mod=mod
    mkdir -p "$out"
    (cd "$dir" && go build -o "$out/app.tmp" .) >&2
    mv "$out/app.tmp" "$out/app"
    echo "$out"
    ;;
  java)
    dir=$here/../tools/sdks/java
    key=$(cat "$dir/pom.xml" "$dir/App.java" | cksum | cut -d' ' -f1)
    out=$cache/sdk-java-$key
    if [ -f "$out/.installed" ]; then echo "$out"; exit 0; fi
    echo "fetching the Java SDK from Maven Central and compiling the application (once)" >&2
    rm -rf "$out"
    mkdir -p "$out/classes"
    mvn -q -B -Dmaven.repo.local="$cache/m2" -f "$dir/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$out/lib" >&2
    javac -d "$out/classes" -cp "$out/lib/*" "$dir/App.java" >&2
    touch "$out/.installed"
    echo "$out"
    ;;
  rust)
    dir=$here/../tools/sdks/rust
    key=$(cat "$dir/Cargo.toml" "$dir/Cargo.lock" "$dir/src/main.rs" | cksum | cut -d' ' -f1)
    out=$cache/sdk-rust-$key
    if [ -x "$out/app" ]; then echo "$out"; exit 0; fi
    echo "building the Rust SDK application (once, about a minute)" >&2
    mkdir -p "$out"
    CARGO_TARGET_DIR=$cache/sdk-rust-target cargo build --quiet --locked --manifest-path "$dir/Cargo.toml" >&2
    cp "$cache/sdk-rust-target/debug/sdk-test-rust" "$out/app.tmp"
    mv "$out/app.tmp" "$out/app"
    echo "$out"
    ;;
  *) echo "unknown SDK $sdk" >&2; exit 2 ;;
esac
