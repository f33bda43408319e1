"""Keep the test suite's name lookups on the machine: loopback resolves, nothing else is asked.

Why: tests use names that must not resolve (``nothing.invalid``, ``external.invalid``), and a
real ``getaddrinfo`` sends each of them to the machine's name server. So the suite answers
every lookup itself:

- an IP literal, ``localhost`` (and ``*.localhost``), or a name of 127/8 or ``::1``: the real
  resolver, which answers those from the machine without a query;
- a ``.invalid`` name (RFC 6761 §6.4: never resolves): ``EAI_NONAME`` at once, as a missing
  name fails;
- anything else: ``EAI_NONAME`` too, and the name is recorded as a *violation*. The session
  fixture in ``tests/conftest.py`` fails the test that made it, naming the host.

Reverse lookups (``gethostbyaddr``, which ``socket.getfqdn`` calls) are answered the same way:
127.0.0.1, ``::1`` and ``localhost`` by the real resolver, another loopback address "unknown
host" at once, anything else a violation.

Subprocesses carry the same guard: :func:`subprocess_env` puts ``tests/sitecustom`` on
``PYTHONPATH`` (its ``sitecustomize.py`` calls :func:`install`) and names a file where the
child appends its violations, which the parent's fixture reads after each test. A test that
monkeypatches ``socket.getaddrinfo`` itself replaces the guard for its duration; that is fine.

Standard library only: ``sitecustomize`` imports this file before anything else is set up.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV_LOG = "TESTS_DNSGUARD_LOG"
"""Set in a subprocess's environment: the file its violations are appended to, one a line."""
SITECUSTOM_DIR = Path(__file__).resolve().parent / "sitecustom"
"""On a subprocess's ``PYTHONPATH``: its ``sitecustomize.py`` installs the guard."""

_MISSING = (".invalid",)


def is_local(host: str) -> bool:
    """Whether resolving ``host`` stays on the machine: an IP literal, localhost, 127/8, ::1."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])  # a scope id (fe80::1%lo) is no name
    except ValueError:
        return False
    return True


def _is_missing(host: str) -> bool:
    return host.rstrip(".").lower().endswith(_MISSING)


def _no_such_name(host: str, why: str) -> socket.gaierror:
    return socket.gaierror(socket.EAI_NONAME, f"Name or service not known ({host!r}: {why})")


class Guard:
    """The stand-ins for ``socket``'s resolving functions, recording what they refused."""

    def __init__(self, log_file: str | None = None) -> None:
        self.real_getaddrinfo = socket.getaddrinfo
        self.real_gethostbyname = socket.gethostbyname
        self.real_gethostbyname_ex = socket.gethostbyname_ex
        self.real_gethostbyaddr = socket.gethostbyaddr
        self._log_file = log_file
        self._lock = threading.Lock()
        self._violations: list[str] = []

    def _check(self, host: str) -> None:
        """Raise as a missing name does unless ``host`` is local; record a real name."""
        if is_local(host):
            return
        if _is_missing(host):
            raise _no_such_name(host, "a .invalid name, answered by tests/dnsguard.py")
        self._record(host)
        raise _no_such_name(host, "tests resolve loopback names only (tests/dnsguard.py)")

    def _record(self, host: str) -> None:
        with self._lock:
            self._violations.append(host)
            if self._log_file:
                with open(self._log_file, "a", encoding="utf-8") as out:
                    out.write(f"{host}\n")

    def take_violations(self) -> list[str]:
        """The names refused since the last call, in this process and in its subprocesses."""
        with self._lock:
            found, self._violations = self._violations, []
        return found

    def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode("idna")
        if isinstance(host, str):
            self._check(host)
        return self.real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(self, host: str) -> str:
        self._check(host)
        return self.real_gethostbyname(host)

    def gethostbyname_ex(self, host: str) -> tuple[str, list[str], list[str]]:
        self._check(host)
        return self.real_gethostbyname_ex(host)

    def gethostbyaddr(self, host: str) -> tuple[str, list[str], list[str]]:
        name = host.strip("[]").lower()
        if name in ("127.0.0.1", "::1", "localhost"):  # answered from /etc/hosts
            return self.real_gethostbyaddr(host)
        try:
            loopback = ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = name.endswith(".localhost")
        if not loopback:
            self._record(host)
        raise socket.herror(1, f"Unknown host ({host!r}: no reverse lookups in tests)")

    def patches(self) -> dict[str, Callable[..., Any]]:
        """The ``socket`` attributes this guard replaces, by name."""
        return {
            "getaddrinfo": self.getaddrinfo,
            "gethostbyname": self.gethostbyname,
            "gethostbyname_ex": self.gethostbyname_ex,
            "gethostbyaddr": self.gethostbyaddr,
        }


def install(log_file: str | None = None) -> Guard:
    """Replace ``socket``'s resolving functions with a :class:`Guard`'s, and return it."""
    guard = Guard(log_file)
    for name, fn in guard.patches().items():
        setattr(socket, name, fn)
    return guard


def uninstall(guard: Guard) -> None:
    """Give ``socket`` back the functions ``guard`` replaced."""
    for name in guard.patches():
        setattr(socket, name, getattr(guard, f"real_{name}"))


def read_log(log_file: Path) -> list[str]:
    """The names subprocesses recorded in ``log_file``, which is emptied."""
    try:
        text = log_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    log_file.write_text("", encoding="utf-8")
    return text.split()


def subprocess_env(env: dict[str, str], log_file: Path | None = None) -> dict[str, str]:
    """``env`` with the guard for a Python subprocess: ``tests/sitecustom`` first on its path.

    ``log_file`` defaults to the session's (``TESTS_DNSGUARD_LOG`` in ``os.environ``); without
    one (outside pytest) ``env`` is returned as it is.
    """
    if log_file is None:
        named = os.environ.get(ENV_LOG)
        if not named:
            return env
        log_file = Path(named)
    path = env.get("PYTHONPATH", "")
    if str(SITECUSTOM_DIR) not in path.split(os.pathsep):
        path = os.pathsep.join(p for p in (str(SITECUSTOM_DIR), path) if p)
    return {**env, "PYTHONPATH": path, ENV_LOG: str(log_file)}
