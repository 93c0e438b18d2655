# Dataspace4Health — the two commands: `make demo` and `make test` (both bootstrap .venv).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
export D4H_SHARED ?= $(abspath ../shared)

.PHONY: help venv demo test lint typecheck pytest bench soak clean

help:
	@echo "make demo   run the end-to-end data space demo (creates .venv when missing)"
	@echo "make test   lint, type checks and the whole test suite (SQLite and PostgreSQL)"
	@echo "make bench  benchmarks: a table of figures, each as a ratio to a baseline from the same run"
	@echo "make soak   long runs: fuzzing, property tests and crash-recovery trials with 20x the budget of make test"

# Installs exactly the locked versions, so two fresh installs are identical.
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (install Python 3.11)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/d4h demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	bash scripts/ensure-chromium.sh
	scripts/with-postgres.sh $(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The same tests as `make test` runs for these areas, with D4H_SOAK=1 multiplying examples and trials.
SOAK_TESTS ?= tests/fuzz tests/properties tests/unit/hdab/test_hdab_workflow_properties.py tests/e2e/test_crash_recovery.py
soak: $(STAMP)
	D4H_SOAK=1 scripts/with-postgres.sh $(BIN)/pytest -n 2 --dist loadfile --timeout 3600 $(SOAK_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build src/*.egg-info
