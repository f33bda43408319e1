"""Shared fixtures. Every test runs with a clean environment: no proxy, no CRAWLER_* settings."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.mockserver.fixture"]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CRAWLER_") or name.lower() in _PROXY_VARS:
            monkeypatch.delenv(name, raising=False)
