# Set-up and everyday commands. `make run` and `make test` work on a machine with only Python 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall only when a requirements file changed since the last successful install.
STAMP := $(VENV)/.installed
CXR_HOME ?= $(CURDIR)/workspace
export CXR_HOME
# Real data for benchmarks and real-data tests, when the shared folder is next to the checkout.
CXR_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export CXR_DATA_DIR

.PHONY: run test lint format demo bench experiments clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Two malloc arenas: the server's session threads each kept freed upload memory in an arena of their
# own (about 25 MB a session, never returned); with two, memory falls back as sessions end.
run: $(STAMP) demo
	MALLOC_ARENA_MAX=2 $(PY) -m cxrcore.ui.serve

demo: $(STAMP)
	$(PY) -m cxrcore demo prepare

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The benchmarks also need torchxrayvision: installed into the same venv, with a stamp of its own.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) bench/run_all.py

# Trains the real-data runs behind the README's Results tables and writes the bundled real-data model
# (needs CXR_DATA_DIR; about 75 minutes on 2 CPU cores). `make bench` re-creates the tables from them.
experiments: $(STAMP)
	$(PY) bench/real_experiments.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
