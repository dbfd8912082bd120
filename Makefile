# deconv: every setup step lives here, so a fresh machine needs only `make serve` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 50051
PYTEST_ARGS ?=

.PHONY: help venv install install-test serve test lint proto demo bench soak image-check clean

help:
	@echo "make serve       create .venv, install the server, serve on $(HOST):$(PORT)"
	@echo "make test        create .venv, install with test extras, run lint + the whole suite"
	@echo "make demo        start a server, upsample a tensor through the client, check it, stop"
	@echo "make bench       benchmark the core against PyTorch/onnxruntime (when installed)"
	@echo "make image-check build and smoke-test the Docker image (podman, slow)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamp files re-run the install only when the dependency list changes.
$(VENV)/.installed-server: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e '.[server]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e '.[server,test]'
	touch $@ $(VENV)/.installed-server

venv: $(VENV)/bin/python
install: $(VENV)/.installed-server
install-test: $(VENV)/.installed-test

serve: install
	$(VENV)/bin/deconv-server --host $(HOST) --port $(PORT)

lint: install-test
	$(VENV)/bin/ruff check .

test: install-test lint
	$(PY) -m pytest -m "not soak" $(PYTEST_ARGS)

proto: install-test
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto --grpc_python_out=proto proto/deconv/v1/deconv.proto

demo: install
	$(PY) examples/demo.py

# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (set on some machines here) slow numpy's BLAS: unset both,
# for this command only. Competitors: $(PIP) install -e '.[bench]' (torch, onnx, onnxruntime).
bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) -m bench $(BENCH_ARGS)

soak: install-test
	$(PY) -m pytest -m soak $(PYTEST_ARGS)

# CONTAINER_CHECK: a command that builds the Dockerfile with podman, runs the image until its
# HEALTHCHECK passes and runs $$SMOKE_CMD against it (found on PATH, or give its path).
CONTAINER_CHECK ?= container-check
image-check: install-test
	@command -v $(CONTAINER_CHECK) >/dev/null || { echo "image-check: no $(CONTAINER_CHECK) command; set CONTAINER_CHECK=/path/to/it"; exit 2; }
	SMOKE_CMD='$(CURDIR)/$(PY) $(CURDIR)/deploy/smoke.py --target $$TARGET' $(CONTAINER_CHECK) $(CURDIR)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
