# Two commands do everything: `make run` (serve with embedded defaults) and `make test`.
# Both bootstrap a virtualenv in .venv on first use: the pinned requirements, then the
# project itself in editable mode (`pip install -e .`), so the habitto_* packages of stack/
# import without PYTHONPATH. loadtests/, bench/ and ops/ run from the repository root.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORTS ?= 8000,8001
PYTEST_ARGS ?=
# The tests that use Django's test database run a second time on PostgreSQL.
POSTGRES_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres
DB_TESTS := $(wildcard tests/test_accounts*.py) tests/test_import_legacy.py $(wildcard tests/test_chat_*.py) tests/test_throttling.py tests/test_pictures.py tests/test_body_limits.py
CURRENT_PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.12*/bin/python) $(shell command -v python3.12 2>/dev/null))
CURRENT_VENV ?= .venv-django-current

export PYTHONUNBUFFERED := 1

.PHONY: help venv run test test-sqlite test-postgres test-django-current clean

help:
	@echo "make run    serve the backend on $(HOST) ports $(PORTS) (SQLite, in-memory layer)"
	@echo "make test   run the whole test suite"
	@echo "make up / down / logs   the full Docker Compose stack (docs/docker.md)"
	@echo "make up BACKENDS=3      three backends behind nginx on 8000/8001;  MONITORING=1 adds Prometheus"
	@echo "make loadtest   the Locust release gate;  make bench   benchmarks;  make health   on-call checks"

$(VENV)/.installed: requirements/base.txt requirements/dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet -e .
	@touch $@

venv: $(VENV)/.installed

# Development defaults for `make run`: DEBUG on, SQLite in var/, no Redis.
run: export DEBUG ?= 1
run: venv
	$(PY) stack/manage.py migrate --noinput
	$(PY) stack/manage.py seed_demo_users
	HOST=$(HOST) PORTS=$(PORTS) $(PY) -m habitto_server.serve

# The whole suite on SQLite, then the database tests on PostgreSQL. Services that are
# missing are skipped loudly; with REQUIRE_SERVICES=1 (CI) they fail instead.
test: export DEBUG ?= 1
test: test-sqlite test-postgres

# Connections close after each use in tests: a thread's persistent connection would keep
# PostgreSQL from dropping the test database at the end.
test-sqlite test-postgres test-django-current: export DB_CONN_MAX_AGE ?= 0

test-sqlite: export DEBUG ?= 1
test-sqlite: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-postgres: export DEBUG ?= 1
test-postgres: venv
	@if $(PY) -c "import sys; from tests.support.services import check_postgres; sys.exit(not check_postgres('$(POSTGRES_TEST_URL)')[0])"; then \
		echo "== database tests again on PostgreSQL ($(POSTGRES_TEST_URL))"; \
		DATABASE_URL=$(POSTGRES_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS) $(DB_TESTS); \
	elif [ "$$REQUIRE_SERVICES" = 1 ]; then \
		echo "REQUIRE_SERVICES=1 but PostgreSQL is not reachable at $(POSTGRES_TEST_URL)"; exit 1; \
	else \
		echo "*** SKIPPED: PostgreSQL not reachable at $(POSTGRES_TEST_URL); database tests ran on SQLite only ***"; \
	fi

# The chat app and accounts against the current Django release (needs Python >= 3.12).
test-django-current: export DEBUG ?= 1
test-django-current:
	@if [ -z "$(CURRENT_PYTHON)" ]; then \
		if [ "$$REQUIRE_SERVICES" = 1 ]; then echo "REQUIRE_SERVICES=1 but no Python 3.12 for the current Django"; exit 1; fi; \
		echo "*** SKIPPED: no Python 3.12 found (CURRENT_PYTHON=...) for Django 6.1 ***"; exit 0; fi; \
	test -x $(CURRENT_VENV)/bin/python || $(CURRENT_PYTHON) -m venv $(CURRENT_VENV); \
	$(CURRENT_VENV)/bin/python -m pip install --quiet -r requirements/dev.txt && \
	$(CURRENT_VENV)/bin/python -m pip install --quiet -r requirements/django-current.txt && \
	$(CURRENT_VENV)/bin/python -m pip install --quiet -e . && \
	$(CURRENT_VENV)/bin/python -m django --version && \
	$(CURRENT_VENV)/bin/python -m pytest $(PYTEST_ARGS) $(DB_TESTS)

clean:
	rm -rf $(VENV) $(CURRENT_VENV) var results .pytest_cache

# Targets owned by each part of the tooling (Docker stack, load tester, benchmarks, on-call checks).
-include mk/*.mk
