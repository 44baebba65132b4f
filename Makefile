# Siyu — the two commands: `make demo` and `make test`. Everything they need is installed here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.stamp-deps
NODE := node_modules/.stamp
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test install lint typecheck importlint pytest chromium openapi lock clean

demo: install ## Build the demo brand on SQLite + local lake and serve the console
	$(BIN)/siyu demo --host $(HOST) --port $(PORT)

test: install chromium lint typecheck importlint pytest ## Every gate and the whole suite

install: $(DEPS) $(NODE)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEPS): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

$(NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

chromium: ## Debian's chromium for the browser tests (never a downloaded browser)
	@test -x /usr/bin/chromium || ( $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null )

lint: $(DEPS)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(DEPS)
	$(BIN)/mypy

importlint: $(DEPS)
	$(BIN)/lint-imports

pytest: $(DEPS)
	$(BIN)/pytest -q --durations=25

openapi: $(DEPS) ## Rewrite the committed OpenAPI schema after an API change
	$(BIN)/siyu openapi --output docs/openapi.json

lock: $(BIN)/python ## Re-resolve dependencies into requirements.lock
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^siyu' > requirements.lock

clean:
	rm -rf $(VENV) node_modules siyu-data .pytest_cache .mypy_cache .ruff_cache
