# pirate-workers — every target is one line; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
PYTEST_ARGS ?=
CLUSTER_DIR ?= $(HOME)/.cache/pirate-workers/cluster

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast chart-test cluster-test lint format bench control-plane images cluster cluster-stop manifests e2e-kind clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"

setup: $(BIN)/uv ## create .venv from uv.lock (all extras + dev tools)
	$(BIN)/uv sync --frozen --all-extras --quiet

demo: setup ## run the whole pipeline locally on examples/ (embedded Redis, offline provider)
	$(BIN)/pirate-workers demo

lint: setup ## ruff, mypy (strict), the import-layer contracts and hadolint
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports && $(BIN)/hadolint Dockerfile.operator Dockerfile.worker hack/images/*/Dockerfile

format: setup ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

control-plane: ## build (once, cached in ~/.cache/pirate-workers) Kubernetes 1.20: control plane and node binaries
	hack/kube/build.sh

images: ## build offline on the project's dockerd: worker, operator, Redis and PostgreSQL stand-ins (hack/images/)
	@# A dockerd this target started is stopped again (the images stay in its data root, the cache).
	@if hack/cluster/docker.sh env >/dev/null 2>&1; then hack/images/build.sh; \
	else hack/cluster/docker.sh start >/dev/null && { hack/images/build.sh; rc=$$?; \
	hack/cluster/docker.sh stop >/dev/null; exit $$rc; }; fi

cluster: control-plane ## start the real single-node cluster (kubelet on the project's dockerd) in CLUSTER_DIR and print its exports
	hack/cluster/start.sh $(CLUSTER_DIR) && echo "export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $$(grep '^DOCKER_HOST=' $(CLUSTER_DIR)/env)"

cluster-stop: ## stop the cluster of `make cluster` and remove what it left on the machine (the cache stays)
	hack/cluster/stop.sh $(CLUSTER_DIR)

test: setup control-plane images ## everything CI runs: system deps, images, lint, unit + integration + e2e + cluster tests
	hack/install-system-deps.sh && $(MAKE) --no-print-directory lint && $(BIN)/pytest $(PYTEST_ARGS)

cluster-test: setup control-plane images ## the cluster tier alone: the chart, the images and real pods on the real node
	hack/install-system-deps.sh && $(BIN)/pytest tests/cluster -m cluster -q $(PYTEST_ARGS)

test-fast: setup ## unit tests only (no services)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

chart-test: setup ## chart, manifests and image tests (starts a local control plane unless KUBECONFIG is set)
	$(BIN)/pytest tests/chart -q $(PYTEST_ARGS)

bench: setup ## benchmarks (figures in bench/results/): throughput, scaling, LLM capacity
	$(BIN)/python -m bench.throughput && $(BIN)/python -m bench.scaling && $(BIN)/python -m bench.llm_capacity

manifests: setup ## regenerate manifests/ from the chart and models
	$(BIN)/python hack/gen_manifests.py

e2e-kind: ## e2e tier on a kind cluster (needs Docker, kind, helm): build, load, install, test
	hack/e2e-kind.sh

clean: ## remove the virtualenv, caches and demo outputs (keeps the control-plane cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache outputs
