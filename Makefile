# The two front doors are `make demo` and `make test`; everything else is a part they call.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Built testbed binaries and the local cluster's state live outside the repository.
export FLASKOPS_CACHE ?= $(HOME)/.cache/flaskops
export PYTHONPATH := $(CURDIR)/testbed:$(CURDIR)/app$(if $(PYTHONPATH),:$(PYTHONPATH))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help venv lint testbed images chart-docs promrules cluster-up cluster-down test test-fast demo demo-down bench clean app-demo app-demo-down

help:
	@echo "make demo   - local PostgreSQL + control plane + a real node, the operator, the example to Ready, a URL to open"
	@echo "             (KUBECONFIG set: only with DEMO_ARGS=--use-kubeconfig-cluster; see README)"
	@echo "make test   - install everything into $(VENV), build/reuse the testbed, run the whole suite"
	@echo "make bench  - run the benchmarks and rewrite bench/RESULTS.md"
	@echo "make app-demo - just the guestbook: local PostgreSQL, migrations, Gunicorn on 127.0.0.1:$(APP_DEMO_PORT)"
	@echo "make images - build the guestbook and operator images locally (no registry; never pushed)"
	@echo "parts: venv lint testbed chart-docs cluster-up cluster-down demo-down app-demo-down clean"

$(STAMP): pyproject.toml
	@echo "==> installing Python dependencies into $(VENV)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools' notice that an editable install uses a meta path finder (package-dir maps
	@# flaskops and guestbook to operator/ and app/) is its only output: informational, so silenced.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[app,operator,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

lint: venv
	@echo "==> ruff, mypy, hadolint"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator/flaskops app/guestbook testbed/flaskops_testbed
	$(BIN)/hadolint Dockerfile

# Compiles kube-apiserver & co., etcd, kwok, helm and the real node's kubelet once into $(FLASKOPS_CACHE);
# a no-op when cached.
testbed:
	bash testbed/build.sh

# Rewrites charts/flaskops/README.md from README.md.gotmpl and values.yaml's `# --` comments (helm-docs, built
# from the Go module proxy into $(FLASKOPS_CACHE)/tools on first use); tests/chart fails when it is stale.
chart-docs:
	bash testbed/chart-docs.sh

# Builds the Prometheus rule checker (testbed/promrules.sh: Prometheus's rulefmt from the Go module proxy,
# into $(FLASKOPS_CACHE)/tools) that tests/chart runs on the chart's PrometheusRule.
promrules:
	bash testbed/promrules.sh --build

# Both Dockerfile targets (and the node's pause image) with a local Docker engine, from a base made of
# Debian packages: no image registry. A no-op when nothing that goes into them changed. testbed/images.sh.
images:
	bash testbed/images.sh

cluster-up: venv testbed
	$(BIN)/python -m flaskops_testbed up

cluster-down: venv
	$(BIN)/python -m flaskops_testbed down

test: venv testbed images lint pgbouncer promrules
	@echo "==> pytest (the local testbed starts unless KUBECONFIG names a cluster)"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv pgbouncer
	$(BIN)/python -m pytest tests/app tests/operator $(PYTEST_ARGS)

demo: venv testbed images
	$(BIN)/python -m flaskops_testbed demo $(DEMO_ARGS)

demo-down: venv
	$(BIN)/python -m flaskops_testbed down

# Not part of `make test`: ~2-2.5 h on 2 cores for the default sizes 10,100,500,1000 (Helm only at N <= 500;
# most of it the 500 Helm installs and the N = 1000 operator row); BENCH_ARGS="--sizes 10,100" ~20 min;
# "--soak-minutes 60" adds an hour of upgrades at the largest N. Results: bench/RESULTS.md.
bench: venv testbed
	@command -v wrk >/dev/null || { echo "==> installing wrk (Debian)"; apt-get update -qq && apt-get install -y -qq wrk; }
	PYTHONPATH=$(CURDIR)/testbed:$(CURDIR)/app:$(CURDIR) $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo

# The reference app alone, no Kubernetes: a local PostgreSQL (state in $(APP_DEMO_DIR)), `flask db upgrade`
# and Gunicorn in the foreground, exactly as the image runs them. Ctrl-C stops Gunicorn;
# `make app-demo-down` stops PostgreSQL.
APP_DEMO_PORT ?= 8000
APP_DEMO_DIR := $(FLASKOPS_CACHE)/app-demo
APP_DEMO_PG := $(BIN)/python -m flaskops_testbed.postgres --base-dir $(APP_DEMO_DIR)/postgres

app-demo: venv
	@mkdir -p $(APP_DEMO_DIR)
	@test -s $(APP_DEMO_DIR)/secret-key || \
	  (umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))' > $(APP_DEMO_DIR)/secret-key)
	$(APP_DEMO_PG) start
	@export APP_ENV=development \
	  DATABASE_URL="$$($(APP_DEMO_PG) createdb guestbook_demo)" \
	  SECRET_KEY="$$(cat $(APP_DEMO_DIR)/secret-key)" \
	  PATH="$(CURDIR)/$(BIN):$$PATH"; \
	cd app; \
	echo "==> flask db upgrade"; flask db upgrade; \
	echo "==> the guestbook is at http://127.0.0.1:$(APP_DEMO_PORT)/ (API: /api/entries; Ctrl-C stops)"; \
	exec gunicorn --config gunicorn.conf.py wsgi:app --workers 2 --bind 127.0.0.1:$(APP_DEMO_PORT)

app-demo-down:
	$(APP_DEMO_PG) stop

# Rewrite app/openapi.json from the code (tests/app fail while the checked-in copy differs).
.PHONY: openapi
openapi: venv
	$(BIN)/python -c 'from guestbook.openapi import dumps; print(dumps(), end="")' > app/openapi.json

# tests/app put a real PgBouncer (Debian's package) in front of PostgreSQL; installed once, like wrk.
.PHONY: pgbouncer
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { echo "==> installing pgbouncer (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }

# The reference app against a bare WSGI app alone (~3 min; no cluster): rewrites that section of
# bench/RESULTS.md. BENCH_ARGS="--app-variant before=/tmp/old/app" adds an older tree to the same run.
.PHONY: bench-app
bench-app: venv
	@command -v wrk >/dev/null || { echo "==> installing wrk (Debian)"; apt-get update -qq && apt-get install -y -qq wrk; }
	PYTHONPATH=$(CURDIR)/testbed:$(CURDIR)/app:$(CURDIR) $(BIN)/python -m bench --app-only $(BENCH_ARGS)
