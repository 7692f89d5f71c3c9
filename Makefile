# radshare's front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# The first Python >= 3.12 found: on PATH, then in pyenv's versions, then Debian's.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) /usr/bin/python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$p; break; }; \
	done)
PG_URL ?= postgres://postgres@127.0.0.1:5432/radshare
PYTEST_WORKERS ?= 2

.PHONY: help run install test test-sqlite test-postgres lint messages check-messages bench bench-quick clean lock

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "radshare needs Python >= 3.12 (python3.12 on PATH, or set PYTHON=/path/to/python3.12)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(BIN)/.installed ## create .venv and install radshare with its pinned dependencies

run: install ## migrate, load the demo organisation and studies, start web + DICOM SCP + worker
	RADSHARE_DEMO=$${RADSHARE_DEMO:-1} $(BIN)/radshare migrate --verbosity 0
	RADSHARE_DEMO=$${RADSHARE_DEMO:-1} $(BIN)/radshare demo
	RADSHARE_DEMO=$${RADSHARE_DEMO:-1} exec $(BIN)/radshare serve

test: install ## the whole suite: on SQLite, then on PostgreSQL ($(PG_URL))
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install ## the suite on SQLite
	RADSHARE_DATA_DIR=$$(mktemp -d) $(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider -m "not postgres"

test-postgres: install ## database tests again on PostgreSQL (browser and Orthanc tests run once, on SQLite)
	@if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  data=$$(mktemp -d); RADSHARE_DATA_DIR=$$data RADSHARE_STORAGE_URL="file://$$data/storage?shared=1" \
	  RADSHARE_DATABASE_URL=$(PG_URL) RADSHARE_SECRET_KEY=test-only-$$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	    $(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider -m "(django_db and not once) or postgres"; \
	elif [ "$$RADSHARE_REQUIRE_ALL" = "1" ]; then echo "PostgreSQL is not running on 127.0.0.1:5432"; exit 1; \
	else echo "PostgreSQL is not running on 127.0.0.1:5432: PostgreSQL run skipped"; fi

lint: install ## ruff, mypy and the import contracts between the apps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

messages: install ## rebuild the translation catalogues (.po -> .mo); CI fails when they are stale
	cd src/radshare && export RADSHARE_DATA_DIR=$$(mktemp -d) && ../../$(BIN)/radshare makemessages -l nl -l en --no-obsolete --no-location && ../../$(BIN)/radshare compilemessages

check-messages: install ## fail when the committed translation catalogues are stale
	scripts/check-messages

BENCHES := $(filter-out bench/results.py bench/processes.py,$(wildcard bench/*.py))

bench: install ## benchmarks, each beside a reference measured in the same run (bench/README.md; about 10 minutes)
	@for b in $(BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done
	@echo "== bench/ready.py --journal"; $(BIN)/python bench/ready.py --journal

bench-quick: install ## every benchmark, tiny: checks that they run (CI), measures nothing
	@for b in $(BENCHES); do echo "== $$b --quick"; $(BIN)/python $$b --quick || exit 1; done
	@echo "== bench/ready.py --journal --quick"; $(BIN)/python bench/ready.py --journal --quick

lock: ## re-pin requirements.lock from pyproject.toml (needs the network to the package registry)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev --strip-extras -o requirements.lock pyproject.toml

clean: ## remove .venv and the demo data in ./var
	rm -rf $(VENV) var
