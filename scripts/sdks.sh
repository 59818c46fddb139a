#!/usr/bin/env bash
# Installs (once, cached outside the repository, keyed by the pinned requirements) the OpenTelemetry SDKs the SDK
# tests run, from their registries, and prints where. `python`: a virtualenv with tools/sdks/python/requirements.txt.
#
#   scripts/sdks.sh python
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
sdk=${1:?usage: scripts/sdks.sh python}
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
  *) echo "unknown SDK $sdk" >&2; exit 2 ;;
esac
