"""The ``site_server`` pytest fixture (a factory) and loopback host names.

Loaded with ``pytest_plugins = ["tests.mockserver.fixture"]`` (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import pytest

from tests.mockserver.server import SiteServer
from tests.mockserver.site import Site

# --------------------------------------------------------------------------- pytest fixture


class SiteServerFactory(Protocol):
    """The ``site_server`` fixture: start a server; it is stopped at teardown."""

    def __call__(
        self, site: Site | None = None, hosts: Sequence[str] = ("127.0.0.1",)
    ) -> SiteServer: ...


@pytest.fixture
def site_server() -> Iterator[SiteServerFactory]:
    """Factory: ``srv = site_server(site, hosts=["127.0.0.2", "127.0.0.3"])`` is started;
    every server made is stopped after the test."""
    servers: list[SiteServer] = []

    def start(site: Site | None = None, hosts: Sequence[str] = ("127.0.0.1",)) -> SiteServer:
        server = SiteServer(site, hosts).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


def loopback_hosts(count: int, first: int = 2) -> list[str]:
    """``count`` loopback addresses ``127.0.0.<first>`` ... (Linux binds all of 127/8)."""
    return [f"127.0.0.{first + i}" for i in range(count)]
