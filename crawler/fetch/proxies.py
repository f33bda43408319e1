"""Which proxy a request goes through: the proxy environment read once, applied per URL."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit


class ProxyRules:
    """The proxy environment read once (``urllib.request.getproxies``), applied per URL.

    ``no_proxy`` follows curl/requests: comma-separated hosts (a leading ``.`` or ``*.`` is
    ignored, and each entry matches the host and its subdomains), ``host:port`` entries, IP
    addresses and CIDR networks, and ``*`` for everything.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.proxies = {k: v for k, v in environ.items() if k in ("http", "https", "all") and v}
        entries = [e.strip().lower() for e in environ.get("no", "").split(",") if e.strip()]
        self.bypass_all = "*" in entries
        self.names = tuple(e.removeprefix("*").lstrip(".") for e in entries if e != "*")
        self.networks = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue

    def for_url(self, url: str) -> dict[str, str] | None:
        if not self.proxies or self.bypass_all:
            return None
        if not self.names:
            return self.proxies
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        with_port = f"{host}:{port}" if port else host
        for name in self.names:
            for candidate in (host, with_port):
                if candidate == name or candidate.endswith("." + name):
                    return None
        if self.networks:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return self.proxies
            if any(address in net for net in self.networks):
                return None
        return self.proxies
