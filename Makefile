# Two commands on a fresh machine (see README):
#   make run    set up, then run the embedded default sweep
#   make test   set up, then run the whole test suite
# `make setup` installs exactly requirements.lock (every package pinned, with its hashes) and then
# this project; `make lock` regenerates the lock after a change to pyproject.toml's dependencies.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV ?= uv

.PHONY: setup browser run test test-fast lint bench lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The lock: the whole dependency set of pyproject.toml with the test extras, for CPython 3.11 on
# Linux x86_64 (the machines docs/install.md and CI use), with the hashes of every matching file.
lock:
	$(UV) pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" --quiet \
	  --output-file requirements.lock

# Debian's Chromium for the report's browser test (no browser download); skipped when not root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "not root: install Debian's chromium to run the browser test"; fi; }

run: setup
	$(BIN)/backdoor-sweep run --overwrite

test: setup browser
	$(BIN)/python -m pytest

# the fast subset: everything not marked slow (no sweeps on Ray, no clusters, no browser)
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/sweep_overhead.py
	$(BIN)/python bench/slope_cost.py
	$(BIN)/python bench/cli_startup.py
