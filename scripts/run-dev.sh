#!/usr/bin/env bash
# Start the operator and its status sidecar against the current kube context (laptop use).
# With RECONCILER_VALKEY_URL unset both share an embedded valkey-server under the runtime dir.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

# First: is there a cluster? (Before kubectl, whose default of localhost:8080 may even reach the sidecar.)
"$BIN/python" -m reconciler_operator.preflight || exit 1

if command -v kubectl >/dev/null 2>&1; then
  kubectl apply --server-side -f deploy/crds/reconciler.dev_reconciles.yaml
else
  echo "kubectl not found: apply deploy/crds/reconciler.dev_reconciles.yaml to your cluster yourself" >&2
fi

"$BIN/reconciler" api --port "${RECONCILER_API_PORT:-8080}" &
api=$!
trap 'kill $api 2>/dev/null || true' EXIT INT TERM
echo "status sidecar on http://127.0.0.1:${RECONCILER_API_PORT:-8080} (docs at /docs)"
"$BIN/reconciler" run ${RECONCILER_RUN_ARGS:--A --standalone}
