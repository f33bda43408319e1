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
	@$(PY) -c 'import scrapy' 2>/dev/null || $(PY) -m pip install -q -e '.[bench]' || echo "could not install the bench extra (Scrapy): pip install -e '.[bench]'; Scrapy is skipped"
	$(PY) -m bench

bench-quick:
	@$(PY) -c 'import scrapy' 2>/dev/null || $(PY) -m pip install -q -e '.[bench]' || echo "could not install the bench extra (Scrapy): pip install -e '.[bench]'; Scrapy is skipped"
	$(PY) -m bench --quick

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
