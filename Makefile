# Developer entry points; .ci/run uses them too.
VENV ?= .venv
PY := $(VENV)/bin/python
# The versions the suite last passed with; `make test-latest` tries the newest ones instead.
CONSTRAINTS ?= constraints.txt
LATEST_VENV ?= build/venv-latest
LATEST_PY := $(LATEST_VENV)/bin/python
# The modules that exercise the dependencies directly (selectolax, lxml, bs4, ada-url, brotli,
# zstd, protego, justhtml, markupever, SQLAlchemy, Alembic, requests, urllib3, tenacity, warcio,
# rich): what CI runs against the newest versions (the whole suite twice would double CI's time; see CONTRIBUTING.md).
LATEST_QUICK ?= tests/parse/test_sitemaps.py tests/parse/test_soup.py tests/parse/test_hotpath.py \
	tests/test_urls.py tests/fetch/test_robots.py tests/store/test_db.py \
	tests/store/test_migrations.py tests/fetch/test_fetcher.py tests/tools/test_warc.py \
	tests/test_config.py tests/test_dnsguard.py tests/fetch/test_codings.py \
	tests/parse/test_charset.py tests/parse/test_oracle.py

.PHONY: install check test test-quick test-latest test-latest-quick latest-venv constraints \
	bench bench-quick clean

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[dev]'

check:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test:
	$(VENV)/bin/pytest -q

test-quick:
	$(VENV)/bin/pytest -q -m "not slow"

# A venv of its own with the newest versions pyproject.toml's ranges allow (no constraints),
# so an upstream release that breaks us is found here before a user finds it.
latest-venv:
	test -x $(LATEST_PY) || python3 -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install --quiet --upgrade pip
	$(LATEST_PY) -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,bench]'
	@$(LATEST_PY) -m pip list --format=freeze --exclude-editable > $(LATEST_VENV)/versions.txt
	@grep -vixFf $(CONSTRAINTS) $(LATEST_VENV)/versions.txt | grep -v '^pip==' \
		| sed 's/^/not in $(CONSTRAINTS): /' || true

test-latest: latest-venv
	$(LATEST_PY) -m pytest -q

test-latest-quick: latest-venv
	$(LATEST_PY) -m pytest -q $(LATEST_QUICK)

# After `make test-latest` passes: pin what it ran with (then commit constraints.txt).
constraints:
	$(LATEST_PY) .ci/freeze_constraints.py > $(CONSTRAINTS)

bench:
	@$(PY) -c 'import scrapy' 2>/dev/null || $(PY) -m pip install -q -e '.[bench]' || echo "could not install the bench extra (Scrapy): pip install -e '.[bench]'; Scrapy is skipped"
	$(PY) -m bench

bench-quick:
	@$(PY) -c 'import scrapy' 2>/dev/null || $(PY) -m pip install -q -e '.[bench]' || echo "could not install the bench extra (Scrapy): pip install -e '.[bench]'; Scrapy is skipped"
	$(PY) -m bench --quick

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
