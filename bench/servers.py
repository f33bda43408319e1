"""The benchmark's HTTP servers, all on loopback addresses only, all bounded in time.

* :class:`NginxServer`: Debian's nginx, configured and started by the bench (one worker
  process, ``access_log off``, keep-alive on, one ``listen 127.0.x.y:PORT`` line per host) to
  serve a :mod:`bench.sitegen` tree. It runs under ``timeout``, so it dies after
  ``lifetime_s`` even if the bench is killed.
* :class:`PyServer`: a pure-Python fallback (``http.server`` handlers, one thread per
  connection) that listens on many addresses through one selector. It also serves the latency
  scenario (every response delayed by ``latency_s``, concurrency unlimited), the frontier
  scenario (pages made on the fly) and logs request start times for the politeness scenario.

Must not: bind anything but 127.x addresses, or outlive :meth:`stop` / its lifetime.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

NGINX_MISSING = (
    "nginx is not installed (Debian/Ubuntu: sudo apt-get install -y nginx); "
    "using the pure-Python server instead, which is slower and labelled as such"
)

Dynamic = Callable[[str, str], bytes | None]
"""(host, path) -> a body to serve as text/html, or None for the static tree / 404."""


def _check_loopback(hosts: Sequence[str]) -> None:
    for h in hosts:
        if not h.startswith("127."):
            raise ValueError(f"benchmark servers bind loopback addresses only, not {h!r}")


def free_port(hosts: Sequence[str], attempts: int = 50) -> int:
    """A port that is free on every one of ``hosts`` right now."""
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        socks: list[socket.socket] = []
        try:
            for h in hosts[1:]:
                s = socket.socket()
                socks.append(s)
                s.bind((h, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no port free on all of {len(hosts)} addresses")


def _wait_listening(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def nginx_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


class NginxServer:
    """nginx serving ``site_root/<host>/`` on ``host:port`` for every host."""

    def __init__(
        self, site_root: Path, hosts: Sequence[str], workdir: Path, *, lifetime_s: float = 7200
    ) -> None:
        _check_loopback(hosts)
        binary = nginx_binary()
        if binary is None:
            raise FileNotFoundError(NGINX_MISSING)
        self.binary = binary
        self.site_root = site_root
        self.hosts = tuple(hosts)
        self.workdir = workdir
        self.lifetime_s = lifetime_s
        self.port = 0
        self.label = f"nginx {nginx_version(binary)} (1 worker)"
        self._proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        listens = "\n".join(f"    listen {h}:{self.port};" for h in self.hosts)
        w = self.workdir
        temps = "\n".join(
            f"  {name}_temp_path {w}/tmp_{name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""
worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
worker_rlimit_nofile {max(4096, 2 * len(self.hosts) + 4096)};
events {{ worker_connections {max(2048, 2 * len(self.hosts) + 2048)}; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  types {{ text/html html; text/plain txt; }}
  default_type application/octet-stream;
{temps}
  server {{
{listens}
    root {self.site_root}/$server_addr;
    index index.html;
  }}
}}
"""

    def start(self) -> NginxServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        last = ""
        for _ in range(5):
            self.port = free_port(self.hosts)
            conf = self.workdir / "nginx.conf"
            conf.write_text(self._config())
            cmd = [
                "timeout",
                "--signal=TERM",
                "--kill-after=5",
                str(int(self.lifetime_s)),
                self.binary,
                "-p",
                str(self.workdir),
                "-c",
                str(conf),
                "-e",
                str(self.workdir / "error.log"),
            ]
            self._proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            if _wait_listening(self.hosts[-1], self.port, 10.0):
                self._check_readable()
                return self
            self.stop()
            log = self.workdir / "error.log"
            last = log.read_text()[-500:] if log.exists() else ""
            if "in use" not in last:
                break
        raise RuntimeError(f"nginx did not start: {last}")

    def _check_readable(self) -> None:
        """nginx's workers run as nobody when started by root: every directory above the site
        must be world-searchable (``tempfile.mkdtemp`` makes 0700 ones)."""
        with socket.create_connection((self.hosts[0], self.port), timeout=5) as s:
            s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            status = s.recv(64).split(b" ", 2)[1:2]
        if status != [b"200"]:
            self.stop()
            raise RuntimeError(
                f"nginx answers {status} for / of {self.site_root}/{self.hosts[0]}: are all "
                "its parent directories readable by nginx's worker user (nobody)?"
            )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # timeout(1) passes it on to nginx
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60
    server: PyServer  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    arrived: float | None = None

    def do_GET(self) -> None:
        srv = self.server
        started = self.arrived if self.arrived is not None else time.monotonic()
        host = self.connection.getsockname()[0]
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if srv.log is not None:
            srv.log.append((host, path, started))
        if srv.latency_s > 0 and srv.stopping.wait(srv.latency_s):
            self.close_connection = True
            return
        body = srv.dynamic(host, path) if srv.dynamic is not None else None
        ctype = "text/html; charset=utf-8"
        if body is None:
            body, ctype = srv.static(host, path)
        if body is None:
            body = b"<html><head><title>404</title></head><body>not found</body></html>"
            self.send_response(404)
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class _TimedHandler(_Handler):
    """Takes each request's start from the kernel's receive timestamp of its first bytes, so
    the politeness gaps do not depend on when this thread got the GIL (as tests/mockserver).
    Unbuffered reads, so the next request's bytes wait in the socket to be peeked at."""

    rbufsize = 0

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)

    def handle_one_request(self) -> None:
        self.arrived = None
        try:
            _d, anc, _f, _a = self.connection.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
        except OSError:
            anc = []
        mono, real = time.monotonic(), time.time()
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                self.arrived = mono - max(0.0, real - (sec + nsec / 1e9))
        super().handle_one_request()


class PyServer:
    """A pure-Python HTTP/1.1 server on ``hosts`` (one port), one thread per connection.

    ``root``: a :mod:`bench.sitegen` tree to serve; ``dynamic``: pages made per request;
    ``latency_s``: every response waits this long first; ``log=True``: ``log`` gets one
    ``(host, path, time.monotonic())`` per request, when its first bytes arrived.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        root: Path | None = None,
        dynamic: Dynamic | None = None,
        latency_s: float = 0.0,
        log: bool = False,
        lifetime_s: float = 7200,
    ) -> None:
        _check_loopback(hosts)
        self.hosts = tuple(hosts)
        self.root = root
        self.dynamic = dynamic
        self.latency_s = latency_s
        self.log: list[tuple[str, str, float]] | None = [] if log else None
        self.lifetime_s = lifetime_s
        self.port = 0
        what = f", {latency_s * 1000:g} ms latency" if latency_s else ""
        self.label = f"python ThreadingHTTPServer-style (fallback, thread per connection{what})"
        self.stopping = threading.Event()
        self._listeners: list[socket.socket] = []
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._loop: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def static(self, host: str, path: str) -> tuple[bytes | None, str]:
        if self.root is None or ".." in path:
            return None, "text/html"
        rel = path.lstrip("/")
        if not rel or rel.endswith("/"):
            rel += "index.html"
        ctype = "text/plain" if rel.endswith(".txt") else "text/html; charset=utf-8"
        try:
            return (self.root / host / rel).read_bytes(), ctype
        except OSError:
            return None, ctype

    def _bind(self) -> list[socket.socket]:
        for _ in range(20):
            socks: list[socket.socket] = []
            port = 0
            try:
                for h in self.hosts:
                    s = socket.socket()
                    socks.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((h, port))
                    port = s.getsockname()[1]
                    s.listen(1024)
                    s.setblocking(False)
                self.port = port
                return socks
            except OSError as exc:
                for s in socks:
                    s.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise RuntimeError("no port free on every address")

    def start(self) -> PyServer:
        self._listeners = self._bind()
        self._loop = threading.Thread(target=self._accept_loop, name="bench-server", daemon=True)
        self._loop.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self._listeners:
            sel.register(s, selectors.EVENT_READ)
        try:
            while not self.stopping.is_set():
                for key, _ in sel.select(0.1):
                    listener: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        conn, addr = listener.accept()
                    except OSError:
                        continue
                    conn.setblocking(True)
                    t = threading.Thread(target=self._serve, args=(conn, addr), daemon=True)
                    with self._lock:
                        self._conns.add(conn)
                        self._threads.add(t)
                    t.start()
        finally:
            sel.close()

    def _serve(self, conn: socket.socket, addr: Any) -> None:
        try:
            handler = _TimedHandler if self.log is not None else _Handler
            handler(conn, addr, self)  # type: ignore[arg-type]
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join(timeout_s)
        for s in self._listeners:
            s.close()
        self._listeners = []
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> PyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def static_server(
    site_root: Path, hosts: Sequence[str], workdir: Path, kind: str, lifetime_s: float
) -> NginxServer | PyServer:
    """nginx when ``kind`` is nginx or auto (and nginx exists), else the Python server."""
    if kind in ("auto", "nginx"):
        try:
            return NginxServer(site_root, hosts, workdir, lifetime_s=lifetime_s).start()
        except FileNotFoundError:
            if kind == "nginx":
                raise
            print(f"note: {NGINX_MISSING}", flush=True)
    return PyServer(hosts, root=site_root, lifetime_s=lifetime_s).start()
