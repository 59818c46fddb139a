#!/usr/bin/env bash
# Lays out (once, cached outside the repository, keyed by what pins it) each language agent exactly as its
# auto-instrumentation image presents it at the root of the image (what an image volume mounts, and what the init
# container copies from), built from the registries the agents come from, plus the small applications without
# OpenTelemetry code that the agent tests start. Prints the directory.
#
#   java:   <out>/image/javaagent.jar (Maven Central), <out>/app/App.class (the JDK's HttpServer)
#   nodejs: <out>/image/autoinstrumentation/{autoinstrumentation.js,node_modules} (npm), <out>/app/app.js
#   python: <out>/image/autoinstrumentation/ (pip install --target, PyPI), <out>/app/{venv with Flask,app.py}
#
#   scripts/agents.sh java|nodejs|python
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tools=$here/../tools/agents
lang=${1:?usage: scripts/agents.sh java|nodejs|python}
cache=${OTEL_INJECTOR_CACHE:-$HOME/.cache/otel-injector}
# The Java agent's version: the default image's tag in src/engine/config/agents.rs (a test holds them equal).
JAVA_AGENT_VERSION=2.31.1

case "$lang" in
  java) key=$(cat "$tools/apps/App.java" | cksum | cut -d' ' -f1)-$JAVA_AGENT_VERSION ;;
  nodejs) key=$(cat "$tools/nodejs/"* "$tools/apps/app.js" | cksum | cut -d' ' -f1) ;;
  python) key=$(cat "$tools/python/requirements.txt" "$tools/apps/requirements.txt" "$tools/apps/app.py" | cksum | cut -d' ' -f1) ;;
  *) echo "unknown language $lang" >&2; exit 2 ;;
esac
out=$cache/agent-$lang-$key
# Complete only once the stamp is there: an interrupted install is started again.
if [ -f "$out/.installed" ]; then echo "$out"; exit 0; fi
echo "laying out the $lang agent as its image does (once)" >&2
rm -rf "$out"
mkdir -p "$out/image" "$out/app"
case "$lang" in
  java)
    mvn -q -B -Dmaven.repo.local="$cache/m2" dependency:copy \
      -Dartifact="io.opentelemetry.javaagent:opentelemetry-javaagent:$JAVA_AGENT_VERSION" \
      -DoutputDirectory="$out/download" >&2
    mv "$out/download/opentelemetry-javaagent-$JAVA_AGENT_VERSION.jar" "$out/image/javaagent.jar"
    rmdir "$out/download"
    javac -d "$out/app" "$tools/apps/App.java" >&2
    ;;
  nodejs)
    mkdir -p "$out/image/autoinstrumentation"
    cp "$tools/nodejs/package.json" "$tools/nodejs/package-lock.json" "$tools/nodejs/autoinstrumentation.js" \
      "$out/image/autoinstrumentation/"
    (cd "$out/image/autoinstrumentation" && npm ci --omit=dev --no-audit --no-fund --silent >&2)
    cp "$tools/apps/app.js" "$out/app/"
    ;;
  python)
    python3 -m pip install --quiet --disable-pip-version-check --no-compile \
      --target "$out/image/autoinstrumentation" -r "$tools/python/requirements.txt" >&2
    python3 -m venv "$out/app/venv"
    "$out/app/venv/bin/pip" install --quiet --disable-pip-version-check -r "$tools/apps/requirements.txt" >&2
    cp "$tools/apps/app.py" "$out/app/"
    ;;
esac
# Readable by anyone, as the images make it (the application runs as another user than the one that copied it).
chmod -R a+rX "$out/image"
touch "$out/.installed"
echo "$out"
