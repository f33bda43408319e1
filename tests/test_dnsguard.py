"""The suite's DNS guard (``tests/dnsguard.py``): loopback resolves, ``.invalid`` fails as a
missing name without a query, anything else fails the test, in-process and in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import dnsguard


class _Resolver:
    """A stand-in for the real resolver that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, host: str, *args: Any, **kwargs: Any) -> list[Any]:
        self.asked.append(host)
        return []


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> tuple[dnsguard.Guard, _Resolver]:
    real = _Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", real)
    return dnsguard.Guard(), real  # built now: its "real" resolver is the recorder


@pytest.mark.parametrize(
    "host", ["127.0.0.2", "127.0.0.1", "::1", "[::1]", "localhost", "LOCALHOST.", "10.1.2.3"]
)
def test_loopback_names_and_ip_literals_reach_the_resolver(guard: Any, host: str) -> None:
    g, real = guard
    g.getaddrinfo(host, 80)
    assert real.asked == [host]
    assert g.take_violations() == []


@pytest.mark.parametrize("host", ["nothing.invalid", "External.INVALID.", b"x.invalid"])
def test_invalid_names_fail_as_missing_without_a_query(guard: Any, host: str | bytes) -> None:
    g, real = guard
    with pytest.raises(socket.gaierror) as info:
        g.getaddrinfo(host, 80)
    assert info.value.errno == socket.EAI_NONAME
    assert real.asked == []
    assert g.take_violations() == []


@pytest.mark.parametrize("host", ["example.com", "pypi.org", "localhost.example"])
def test_a_real_name_is_refused_and_recorded(guard: Any, host: str) -> None:
    g, real = guard
    with pytest.raises(socket.gaierror) as info:
        g.getaddrinfo(host, 443)
    assert info.value.errno == socket.EAI_NONAME
    assert real.asked == []
    assert g.take_violations() == [host]
    assert g.take_violations() == []  # taken once


def test_reverse_lookups_stay_local() -> None:
    g = dnsguard.Guard()
    with pytest.raises(socket.herror):
        g.gethostbyaddr("127.0.0.2")  # not in /etc/hosts: would be a PTR query
    assert g.take_violations() == []
    with pytest.raises(socket.herror):
        g.gethostbyaddr("192.0.2.1")
    assert g.take_violations() == ["192.0.2.1"]


def test_the_session_guard_is_installed() -> None:
    with pytest.raises(socket.gaierror) as info:
        socket.getaddrinfo("nothing.invalid", 80)
    assert info.value.errno == socket.EAI_NONAME
    assert "dnsguard" in str(info.value)
    assert socket.getaddrinfo("127.0.0.2", 80)  # loopback still resolves


def test_a_monkeypatched_resolver_replaces_the_guard_for_the_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 80)  # the test's own fake: no violation recorded


def _child(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_subprocess_carries_the_guard_and_reports_to_the_parent(tmp_path: Path) -> None:
    log_file = tmp_path / "refused.txt"
    env = dnsguard.subprocess_env({"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nowhere"}, log_file)
    code = (
        "import socket\n"
        "for host in ('nothing.invalid', 'example.com'):\n"
        "    try:\n"
        "        socket.getaddrinfo(host, 80)\n"
        "    except socket.gaierror as exc:\n"
        "        print(host, exc.errno)\n"
        "socket.getaddrinfo('127.0.0.1', 80)\n"
    )
    done = _child(code, env, tmp_path)
    assert done.returncode == 0, done.stderr
    eai_noname = str(socket.EAI_NONAME)
    assert done.stdout.split() == ["nothing.invalid", eai_noname, "example.com", eai_noname]
    assert dnsguard.read_log(log_file) == ["example.com"]
    assert dnsguard.read_log(log_file) == []  # emptied once read


def test_the_session_passes_the_guard_to_subprocesses(tmp_path: Path) -> None:
    assert os.environ.get(dnsguard.ENV_LOG)
    code = (
        "import socket\n"
        "try:\n"
        "    socket.getaddrinfo('x.invalid', 80)\n"
        "except socket.gaierror as exc:\n"
        "    print(exc)\n"
    )
    done = _child(code, dict(os.environ), tmp_path)
    assert "dnsguard" in done.stdout, (done.stdout, done.stderr)
