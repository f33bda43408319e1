# Developer entry points; .ci/run uses them too.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install check test test-quick bench bench-quick clean

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

check:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test:
	$(VENV)/bin/pytest -q

test-quick:
	$(VENV)/bin/pytest -q -m "not slow"

bench:
	$(PY) -m bench

bench-quick:
	$(PY) -m bench --quick

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
