# `make run` serves Tandem on the default catalog; `make test` runs the whole suite.
# Both set up `.venv/` first and are fast when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS)

.PHONY: install install-dev run test lint typecheck unit clean lock

install: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml $(CONSTRAINTS)
	$(PIP) -e .
	touch $@

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml $(CONSTRAINTS)
	$(PIP) -e '.[dev]'
	touch $@

run: install
	$(BIN)/tandem serve --port 8000

lint: install-dev
	$(BIN)/ruff check gateway tests loadtests
	$(BIN)/ruff format --check gateway tests loadtests

typecheck: install-dev
	$(BIN)/mypy --strict gateway

unit: install-dev
	$(BIN)/pytest

test: lint typecheck unit

# Re-pin every dependency to what a fresh install resolves today.
lock: $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
