# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-lowest lint typecheck check clean bench pgbouncer

# PgBouncer 1.24.1 built by `make pgbouncer` (the library never looks here: it is passed).
PGBOUNCER := .cache/pgbouncer-1.24.1/bin/pgbouncer

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tenantguard demo $(if $(DSN),--dsn '$(DSN)')

# The PgBouncer tests also run through that build once it exists (TENANTGUARD_PGBOUNCER).
test: export TENANTGUARD_PGBOUNCER ?= $(wildcard $(CURDIR)/$(PGBOUNCER))
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite against the lowest version of every dependency pyproject.toml allows, in a venv of
# its own (.cache/venv-lowest, installed by uv --resolution lowest-direct; see the script).
test-lowest: export TENANTGUARD_PGBOUNCER ?= $(wildcard $(CURDIR)/$(PGBOUNCER))
test-lowest:
	tools/lowest-deps.sh $(PYTEST_ARGS)

# The sync driver modules are generated from their async sources: CI fails when they differ.
lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/python tools/async_to_sync.py --check

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# PgBouncer 1.24.1 from Debian trixie's source package, fetched with `apt-get source` through a
# temporary deb-src list derived from the machine's own apt sources (bookworm's 1.18 cannot
# keep prepared statements in transaction mode).
pgbouncer:
	tools/build-pgbouncer.sh

# Benchmarks: embedded PostgreSQL 18, 1M rows then 10M rows (generated server-side), through
# the PgBouncer 1.24.1 of `make pgbouncer`.
bench: $(STAMP) pgbouncer
	$(BIN)/tenantguard bench --pgbouncer $(PGBOUNCER) --tenants 10000 --rows-per-tenant 100 --clients 1,4,16
	$(BIN)/tenantguard bench --pgbouncer $(PGBOUNCER) --tenants 100000 --rows-per-tenant 100 --clients 1,4,16 --rounds 3 --no-signed
