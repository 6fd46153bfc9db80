# Cronlet developer commands. Quick start: `make demo` (local control plane + operator + an example task),
# `make test` (lint, type checks, unit and integration tests on the local control plane).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Executor pods of the fake kubelet run `cronlet-execute` from the venv; localkube lives in tools/.
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/tools

.PHONY: help venv tools lint format image-check unit test demo cluster-up cluster-down crd clean

help:
	@echo "make demo          local control plane + CRD + operator + examples/01-minimal, watching runs (Ctrl-C stops)"
	@echo "make test          ruff (lint and format), mypy, layers, and the whole test suite on the local control plane"
	@echo "make unit          tests that need neither a cluster nor built binaries"
	@echo "make image-check   lint the Dockerfile and replay its install steps in a fresh venv (no engine needed)"
	@echo "make tools         build the control plane, helm and promtool from Go modules (only what is missing)"
	@echo "make cluster-up    start a local control plane in the foreground; cluster-down stops it"
	@echo "make crd           regenerate the CRD (and the chart's copy) from the models"
	@echo "make format        apply ruff's formatter and fixes"

venv: $(VENV)/.installed

# Both distributions, editable: the handler side (handlers/) and the operator (.), which depends on it.
$(VENV)/.installed: pyproject.toml handlers/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./handlers -e '.[dev]'
	touch $@

tools:
	bash tools/build.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# No container engine here: hadolint, our Dockerfile policy, and the image's pip install replayed in a venv.
image-check:
	bash tools/check-dockerfile.sh

unit: venv
	$(BIN)/python -m pytest -q -m "not cluster and not binaries"

test: venv tools lint image-check
	$(BIN)/python -m pytest -q

demo: venv
	bash tools/build.sh k8s etcd
	bash tools/demo.sh

cluster-up: venv
	bash tools/build.sh k8s etcd
	$(BIN)/python -m localkube up

cluster-down: venv
	$(BIN)/python -m localkube down

crd: venv
	$(BIN)/cronlet crd > crds/scheduledtasks.cronlet.dev.yaml
	cp crds/scheduledtasks.cronlet.dev.yaml charts/cronlet/files/scheduledtasks.cronlet.dev.yaml

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache handlers/build
