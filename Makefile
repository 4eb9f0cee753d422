# MagicQueue: the everyday commands. `make run-cluster` and `make test` do all set-up themselves.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install browser-deps run-cluster test test-unit test-integration test-pg bench lint format clean

install: $(STAMP)            ## the venv, and the gRPC stubs generated from proto/magicqueue.proto
	$(BIN)/python -m proto.grpc_gen

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run-cluster: install        ## the cluster in memory mode on 127.0.0.1:6789
	$(BIN)/python -m cluster

# The dashboard's browser test: Debian's Chromium (never a downloaded browser) and playwright-core.
BROWSER_STAMP := tests/browser/node_modules/.installed

browser-deps: /usr/bin/chromium $(BROWSER_STAMP)

/usr/bin/chromium:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	command -v npm >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm)
	cd tests/browser && npm ci --no-audit --no-fund
	touch $@

test: install browser-deps  ## unit, integration and PostgreSQL tests
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install browser-deps
	$(BIN)/python -m pytest tests/integration

test-pg: install
	$(BIN)/python -m pytest tests/pg

bench: install              ## side by side with BullMQ on the local Redis, then with PostgreSQL
	$(BIN)/python -m bench --with-pg

lint: install               ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
