# Two commands do everything: `make run` (serve with embedded defaults) and `make test`.
# Both bootstrap a virtualenv in .venv from the pinned requirements on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORTS ?= 8000,8001
PYTEST_ARGS ?=

export PYTHONPATH := $(CURDIR)/stack:$(CURDIR)
export PYTHONUNBUFFERED := 1

.PHONY: help venv run migrate demo-users test test-postgres up down logs loadtest health bench clean

help:
	@echo "make run    serve the backend on $(HOST) ports $(PORTS) (SQLite, in-memory layer)"
	@echo "make test   run the whole test suite"
	@echo "make up / down / logs   the full Docker Compose stack"
	@echo "make loadtest   the Locust release gate;  make health   on-call checks"

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	@touch $@

venv: $(VENV)/.installed

# Development defaults for `make run`: DEBUG on, SQLite in var/, no Redis.
run: export DEBUG ?= 1
run: venv
	$(PY) stack/manage.py migrate --noinput
	$(PY) stack/manage.py seed_demo_users
	HOST=$(HOST) PORTS=$(PORTS) $(PY) -m chatserver.serve

test: export DEBUG ?= 1
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var results .pytest_cache

# Targets owned by each part of the tooling (Docker stack, load tester, on-call checks).
-include mk/*.mk
