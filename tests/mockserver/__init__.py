"""The test web server: a real HTTP server on loopback addresses serving sites of small
behaviours (the parts are described in :mod:`tests.mockserver.server`).
"""

from __future__ import annotations

from tests.mockserver.behaviours import (
    Binary,
    Drip,
    ETagPage,
    FailThenSucceed,
    Gzip,
    NotFound,
    Oversized,
    Page,
    Redirect,
    Slow,
)
from tests.mockserver.context import HTML, Behaviour, RequestContext, RequestRecord
from tests.mockserver.fixture import SiteServerFactory, loopback_hosts, site_server
from tests.mockserver.generated import EXTERNAL_HOST, GeneratedPage, GeneratedSite, generate_site
from tests.mockserver.server import SiteServer
from tests.mockserver.site import Site

__all__ = [
    "EXTERNAL_HOST",
    "HTML",
    "Behaviour",
    "Binary",
    "Drip",
    "ETagPage",
    "FailThenSucceed",
    "GeneratedPage",
    "GeneratedSite",
    "Gzip",
    "NotFound",
    "Oversized",
    "Page",
    "Redirect",
    "RequestContext",
    "RequestRecord",
    "Site",
    "SiteServer",
    "SiteServerFactory",
    "Slow",
    "generate_site",
    "loopback_hosts",
    "site_server",
]
