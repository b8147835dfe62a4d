# mailaccounts: the two commands are `make run` and `make test`; both set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO := protos/mailaccounts/v1/account_service.proto
GEN_DIR := clients/python
GEN := $(GEN_DIR)/mailaccounts/v1/account_service_pb2.py

.PHONY: run test soak setup system-deps proto check-proto proto-lint lint bench bench-postgres migrate clean
BUF := tools/buf/node_modules/.bin/buf

# Virtualenv with the project (editable) and its dev tools; redone when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian packages the tests use (Dovecot, PostgreSQL); skipped when already present.
system-deps:
	@./scripts/install-system-deps.sh

# Regenerate the Python stubs (messages, gRPC, typing stubs) from the proto.
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		--mypy_out=$(GEN_DIR) --mypy_grpc_out=$(GEN_DIR) $(PROTO)

# Fails when the checked-in stubs differ from what the proto generates.
check-proto: $(STAMP)
	$(PY) scripts/check_generated.py

# buf lint (STANDARD, see buf.yaml) from the npm registry; skipped with a note where npm is absent.
$(BUF): tools/buf/package.json tools/buf/package-lock.json
	cd tools/buf && npm ci --no-audit --no-fund --silent
	touch $(BUF)

proto-lint:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(BUF) && $(BUF) lint && echo "buf lint: clean"; \
	else echo "proto-lint: npm not found, buf lint skipped"; fi

LINT_DIRS := $(wildcard server clients tests bench scripts)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(LINT_DIRS)
	$(VENV)/bin/mypy server/mailaccounts_server clients/python/mailaccounts_client

# Runs the server on the embedded SQLite default with health and reflection on.
run: $(STAMP)
	$(PY) -m mailaccounts_server serve

# Sets up everything and runs the whole suite (lint, stub check, tests).
test: $(STAMP) system-deps
	$(MAKE) --no-print-directory check-proto proto-lint lint
	$(PY) -m pytest

# The property and fuzz tests for much longer than in `make test` (MAILACCOUNTS_SOAK=1: far
# more examples and steps, no per-test timeout); SOAK_ARGS passes pytest options, e.g. "-x".
SOAK_TESTS := tests/test_model_isolation.py tests/test_fuzz_requests.py
soak: $(STAMP) system-deps
	MAILACCOUNTS_SOAK=1 $(PY) -m pytest $(SOAK_TESTS) --timeout=0 $(SOAK_ARGS)

# `make bench BENCH_ARGS="--database postgres --security plaintext,mtls+jwt"`; see --help.
bench: $(STAMP) system-deps
	$(PY) -m bench $(BENCH_ARGS)

# The production configuration: a throw-away PostgreSQL started for the run.
bench-postgres: $(STAMP) system-deps
	$(PY) -m bench --database postgres $(BENCH_ARGS)

migrate: $(STAMP)
	$(PY) -m mailaccounts_server migrate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
