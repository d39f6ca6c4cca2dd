# Fallwerk task runner. `make demo` starts the application with demo data; `make test` runs every test.
# Both set everything up first (virtualenv, Python packages, JavaScript packages, Chromium for the
# browser tests) and are safe to run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FALLWERK_INSTANCE_PATH ?= $(CURDIR)/instance

.PHONY: demo test setup lint bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create the virtualenv and install everything

demo: setup  ## start the application with demo data on an embedded SQLite database
	$(BIN)/fallwerk demo

lint: setup  ## ruff over the whole tree
	$(BIN)/ruff check .

test: setup lint  ## run the whole test suite (PostgreSQL too when FALLWERK_TEST_POSTGRES_URL is set)
	$(BIN)/python -m pytest

bench: setup  ## run the benchmarks and print their figures
	$(BIN)/python bench/engine.py

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
