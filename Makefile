# Cronlet developer commands. Quick start: `make demo` (local control plane and real node, the chart, an example task),
# `make test` (lint, type checks, unit and integration tests on the local control plane).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Executor pods of the fake kubelet run `cronlet-execute` from the venv; localkube lives in tools/.
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/tools

# Debian packages of the real node and the image build (runc; buildah and mmdebstrap; gcc for the pause
# image); installed when one is missing, after one `apt-get update`.
NODE_PACKAGES := runc buildah mmdebstrap gcc libc6-dev

.PHONY: help venv tools packages lint format image image-check unit test demo cluster-up node-up cluster-down crd clean

help:
	@echo "make demo          local control plane + real node + image + helm install + examples/01-minimal, watching runs (Ctrl-C stops)"
	@echo "make test          ruff (lint and format), mypy, layers, and the whole test suite on the local control plane"
	@echo "make unit          tests that need neither a cluster nor built binaries"
	@echo "make image         build the image from the Dockerfile with buildah (local base, no registry) for the real node"
	@echo "make image-check   lint the Dockerfile, replay its install steps in a fresh venv, and build it (make image)"
	@echo "make tools         build the control plane, the real node's parts, helm, promtool and the Kafka broker's jars (only what is missing)"
	@echo "make cluster-up    start a local control plane with the fake kubelet in the foreground; cluster-down stops it"
	@echo "make node-up       the same with a real node (containerd + kubelet) running the image of make image"
	@echo "make crd           regenerate the CRD (and the chart's copy) from the models"
	@echo "make format        apply ruff's formatter and fixes"

venv: $(VENV)/.installed

# Both distributions, editable: the handler side (handlers/) and the operator (.), which depends on it.
$(VENV)/.installed: pyproject.toml handlers/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./handlers -e '.[dev]'
	touch $@

tools: packages
	bash tools/build.sh k8s etcd helm prometheus node kafka

packages:
	@missing=$$(for p in $(NODE_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "[packages] installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The unchanged Dockerfile, built by buildah on a local Debian base tagged as its FROM; the archive goes to
# ~/.cache/cronlet/images for the real node (and into a running `make node-up` node at once).
image: packages
	bash tools/image.sh

# hadolint, our Dockerfile policy, the image's pip install replayed in a venv, then the real build.
image-check: image
	bash tools/check-dockerfile.sh

unit: venv
	$(BIN)/python -m pytest -q -m "not cluster and not binaries"

test: venv tools lint image-check
	$(BIN)/python -m pytest -q

# The control plane, a real node, the image and helm: what the demo needs (packages as for `make image`).
demo: venv packages image
	bash tools/build.sh k8s etcd helm node
	bash tools/demo.sh

cluster-up: venv
	bash tools/build.sh k8s etcd
	$(BIN)/python -m localkube up

node-up: venv tools image
	$(BIN)/python -m localkube up --node real

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
