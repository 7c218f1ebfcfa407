# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo test lint bench venv docs crd

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

## Install, put the CRD into the current kube context, and start the operator with its sidecar.
run: venv
	$(BIN)/pip install -q -e '.[kube-client]'   # the official client: kubeconfigs with exec plugins
	scripts/run-dev.sh

## Try the command line without a cluster: local Slack and GitLab servers, plan -> apply -> plan -> status.
demo: venv
	$(BIN)/python -c 'import reconciler_testing' 2>/dev/null || $(BIN)/pip install -q -e .
	$(BIN)/python -m reconciler_testing.demo

## Install with test extras (and helm), then lint, type-check and run the whole suite.
test: venv
	$(BIN)/pip install -q -e '.[test]'
	scripts/install-helm.sh
	$(MAKE) lint
	$(BIN)/pytest

## Write the CRD (deploy/crds/, the chart's and the package's copies) from the pydantic models.
crd:
	$(BIN)/python -m reconciler.crdgen

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## The benchmark table (docs/benchmarks.md is refreshed by it).
bench: venv
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m bench

## Regenerate docs/configuration.md from reconciler/settings.py (a test checks it is current).
docs: venv
	$(BIN)/python -m reconciler.settings > docs/configuration.md
