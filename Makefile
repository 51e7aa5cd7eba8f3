# dhanfeed: `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test bench lint install clean check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || \
	  { echo "dhanfeed needs Python 3.11 or newer as '$(PYTHON)' (try: make PYTHON=python3.11 ...)" >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || \
	  { echo "'$(PYTHON)' lacks venv/ensurepip (on Debian: apt-get install python3-venv)" >&2; exit 1; }

$(STAMP): pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[postgresql]'
	@touch $(STAMP)

# The demo, the tests and the benchmarks also need the simulator (the `sim` extra) and the tools;
# the tests also exercise the pandas and Parquet extras (read_candles, export_candles --format parquet).
$(DEVSTAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,dev,sim,pandas,parquet,postgresql]'
	@touch $(DEVSTAMP)

install: $(STAMP)

demo: $(DEVSTAMP)
	$(PY) -m dhanfeed.cli.demo

# Four pytest-xdist workers: most tests wait on programs, sleeps and minute boundaries, not on
# the CPU, so four share two cores. Tests are handed out one at a time, in the order
# tests/support/scheduling.py sets: the slow ones first.
test: $(DEVSTAMP)
	$(PY) -m pytest -q -n 4 --maxschedchunk 1

bench: $(DEVSTAMP)
	$(PY) bench/run_all.py

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check lib tests bench
	$(VENV)/bin/ruff format --check lib tests bench
	$(VENV)/bin/mypy  # lib/dhanfeed, configured in pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache
