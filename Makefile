# Two commands: `make run` and `make test`. Both build .venv and the map pages themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UI := map_ui
UI_DEPS := $(UI)/node_modules/.package-lock.json
UI_BUILT := $(UI)/dist/.built
UI_SOURCES := $(shell find $(UI)/src $(UI)/static -type f 2>/dev/null) $(UI)/build.mjs

.PHONY: run test lint bench clean ui browser load

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Front-end packages come from the npm registry, pinned by the lockfile.
$(UI_DEPS): $(UI)/package.json $(UI)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is required to build the map pages" >&2; exit 1; }
	cd $(UI) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(UI_DEPS)

$(UI_BUILT): $(UI_DEPS) $(UI_SOURCES)
	cd $(UI) && npm run --silent build

ui: $(UI_BUILT)

# The browser tests drive Debian's chromium; install it once if it is missing.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

run: $(STAMP) $(UI_BUILT)
	$(BIN)/tracking demo

test: $(STAMP) $(UI_BUILT) browser
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Needs Node.js for the Socket.IO peer (bench/peers/socketio, npm ci on first use).
bench: $(STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/connections.py
	$(BIN)/python bench/eta_accuracy.py
	$(BIN)/python bench/faults.py

# A bounded locust run against a local stack it starts (loadtest/run.py); report in loadtest/results/.
USERS ?= 100
SPAWN_RATE ?= 20
DURATION ?= 60s
load: $(STAMP)
	$(BIN)/python loadtest/run.py --users $(USERS) --spawn-rate $(SPAWN_RATE) --duration $(DURATION)

clean:
	rm -rf $(VENV) build *.egg-info $(UI)/node_modules $(UI)/dist
