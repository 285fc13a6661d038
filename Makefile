# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov (a template scanner of the infra tests) pins a boto3 the project cannot use: it has a virtualenv of its own.
CHECKOV_VENV := $(VENV)/checkov
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install tools browser demo test lint typecheck unit functional e2e infra-test synth screenshots bench bench-stack bench-read bench-refresh bench-router bench-cost clean

# Node runs the CDK's jsii runtime (CDK synth in the tests); install it from Debian if the machine lacks it.
tools:
	@command -v node >/dev/null 2>&1 || { echo "installing Node.js (for CDK synth)"; \
	  (apt-get update -qq && apt-get install -y -qq nodejs >/dev/null) || \
	  { echo "Node.js is required for the CDK tests: install nodejs"; exit 1; }; }

# Chromium runs the web console's browser tests (tests/e2e/test_console.py, Playwright driving /usr/bin/chromium:
# no browser download); install Debian's package if the machine lacks it. Without it those tests fail.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Chromium (for the console's browser tests)"; \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  { echo "Chromium is required for the console's browser tests: install Debian's chromium package"; exit 1; }; \
	fi

$(STAMP): pyproject.toml constraints.txt constraints-checkov.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,infra]'
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints-checkov.txt checkov
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/streamboard demo

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy streamboard ingest processors glue

test: install tools browser lint typecheck
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q tests/unit

functional: install
	$(BIN)/pytest -q tests/functional

e2e: install browser
	$(BIN)/pytest -q tests/e2e

infra-test: install tools
	$(BIN)/pytest -q tests/infra

# The web console's screenshots in docs/ (the README shows them), taken by its browser tests.
screenshots: install browser
	STREAMBOARD_CONSOLE_SCREENSHOTS=docs $(BIN)/pytest -q tests/e2e/test_console.py

# Writes cdk.out/ offline: no Docker, no network, no credentials.
synth: install tools
	$(BIN)/python infra/app.py

# wrk drives the ingest benchmark too; without it (no Debian package to be had) it falls back to its Python
# load generator and says so in the results.
bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (for bench)"; \
	  (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || \
	  echo "could not install wrk: the ingest benchmark falls back to its Python load generator"; }
	$(BIN)/python -m bench.ingest

# wrk drives the stack's keep-alive latency benchmark; install it from Debian if the machine lacks it.
bench-stack: install
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (for bench-stack)"; \
	  (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || \
	  { echo "the stack benchmark needs wrk: install wrk"; exit 1; }; }
	$(BIN)/python -m bench.stack_latency

# The read API's board reads per second (200 and 304) against a bare endpoint sending the same bytes; wrk needed.
bench-read: install
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (for bench-read)"; \
	  (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || \
	  { echo "the read benchmark needs wrk: install wrk"; exit 1; }; }
	$(BIN)/python -m bench.read

# Builds synthetic lakes of 4M, 20M and 50M events under /tmp (deleted after); takes a long while.
bench-refresh: install
	$(BIN)/python -m bench.refresh

# The router Lambda's CPU per event (batched and single-event traffic) against decode-only; about a minute.
bench-router: install
	$(BIN)/python -m bench.router

# valgrind counts ingest's instructions per request (a figure the machine's noise does not move).
bench-cost: install
	@command -v valgrind >/dev/null 2>&1 || { echo "installing valgrind (for bench-cost)"; \
	  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
	$(BIN)/python -m bench.ingest_cost

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache data cdk.out
