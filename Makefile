# MagicQueue: the everyday commands. `make run-cluster` and `make test` do all set-up themselves.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run-cluster test test-unit test-integration test-pg bench lint format clean

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

test: install               ## unit, integration and PostgreSQL tests
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-pg: install
	$(BIN)/python -m pytest tests/pg

bench: install              ## side by side with BullMQ on the local Redis
	$(BIN)/python -m bench

lint: install               ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
