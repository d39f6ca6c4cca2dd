# Fallwerk task runner. `make demo` starts the application with demo data; `make test` runs every test.
# Both set everything up first (virtualenv, Python packages, JavaScript packages and bundle, Chromium
# for the browser tests) and are safe to run again.

# The distribution's CPython where it can make a virtualenv: Debian builds it with profile-guided and
# link-time optimisation, and it runs Fallwerk 15-20 % faster than a default pyenv build (docs/operations.md).
PYTHON ?= $(shell /usr/bin/python3 -c 'import ensurepip, sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
	&& echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := node_modules/.installed
DIST := webapp/static/dist/.built
PORT ?= 5000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export FALLWERK_INSTANCE_PATH ?= $(CURDIR)/instance

.PHONY: demo test setup lint bench chromium clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(JS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

$(DIST): $(JS_STAMP) $(wildcard webapp/static/js/*.js webapp/assets/*)
	npm run --silent build
	touch $(DIST)

setup: $(STAMP) $(DIST)  ## create the virtualenv, install Python and JavaScript packages, bundle the JavaScript

chromium:  ## install Debian's Chromium for the browser tests (Playwright drives it; no browser download)
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: setup  ## start the application with demo data on an embedded SQLite database
	$(BIN)/fallwerk demo
	$(BIN)/fallwerk serve --port $(PORT) --worker

lint: setup  ## ruff over the whole tree
	$(BIN)/ruff check .

test: setup chromium lint  ## run the whole test suite (PostgreSQL too when FALLWERK_TEST_POSTGRES_URL is set)
	$(BIN)/python -m pytest

bench: setup  ## run the benchmarks and print their figures (PostgreSQL rows need FALLWERK_TEST_POSTGRES_URL)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/monitor.py
	$(BIN)/python bench/timers.py

clean:  ## remove the virtualenv, JavaScript packages, bundles and local state
	rm -rf $(VENV) node_modules webapp/static/dist instance .pytest_cache .ruff_cache
