# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the service in development on http://127.0.0.1:8000 (SQLite in ./instance).
run: install
	LINKS_ENV=development $(BIN)/gunicorn -w 2 -b $(HOST):$(PORT) wsgi:app

## Debian packages the tests need (a real redis-server, Chromium for browser
## tests), installed when missing.
DEBIAN_PACKAGES := redis-server:redis-server chromium:chromium
system-deps:
	@missing=""; for pair in $(DEBIAN_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Install everything, then run the linters and every test.
test: install system-deps lint
	$(BIN)/pytest

## The benchmark: ratios against PyJWT, a bare Flask endpoint, ... (docs/PERFORMANCE.md).
bench: install system-deps
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

## Start the service (development, demo keys, SQLite) on 127.0.0.1:8000 and the example
## portal on 127.0.0.1:8080, switch auto-login on, print an email whose link works. Ctrl-C stops.
.PHONY: demo
demo: install
	$(BIN)/python examples/portal/demo.py
