"""Shared fixtures. Every test runs with a clean environment: no proxy, no CRAWLER_* settings,
and no name lookup leaves the machine (``tests/dnsguard.py``): a test that resolves a name
outside loopback, in-process or in a Python subprocess it starts, fails naming the host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import dnsguard

pytest_plugins = ["tests.mockserver.fixture"]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CRAWLER_") or name.lower() in _PROXY_VARS:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True, scope="session")
def _dns_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dnsguard.Guard, Path]]:
    """Resolve loopback names only, for the whole session and the subprocesses it starts.

    Subprocesses inherit ``os.environ``: ``tests/sitecustom`` on ``PYTHONPATH`` installs the
    same guard in them, and they append refused names to the log file named there. A helper
    that sets ``PYTHONPATH`` itself keeps the guard with :func:`dnsguard.subprocess_env`.
    """
    log_file = tmp_path_factory.mktemp("dnsguard") / "refused.txt"
    guard = dnsguard.install()
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", dnsguard.ENV_LOG)}
    os.environ.update(dnsguard.subprocess_env(dict(os.environ), log_file))
    try:
        yield guard, log_file
    finally:
        dnsguard.uninstall(guard)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _no_dns_outside_loopback(_dns_guard: tuple[dnsguard.Guard, Path]) -> Iterator[None]:
    """Fail the test that resolved a name outside loopback (the guard answered "no such name")."""
    guard, log_file = _dns_guard
    yield
    refused = guard.take_violations() + dnsguard.read_log(log_file)
    if refused:
        names = ", ".join(sorted(set(refused)))
        pytest.fail(
            f"the test resolved a name outside loopback: {names} (tests never ask DNS: use a "
            "loopback address, a .invalid name, or monkeypatch socket.getaddrinfo)",
            pytrace=False,
        )
