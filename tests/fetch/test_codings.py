"""Issue 15, modern servers: brotli and zstd are advertised, decoded, and capped in decoded bytes.

Real loopback servers send the encoded bytes; bombs (1 GiB of zeros in under 33 KB) are made
once with the same libraries urllib3 decodes with, and cached in the temp directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import brotli
import pytest
import urllib3
from backports import zstd

from crawler.fetch.body import ACCEPT_ENCODING, CHUNK
from tests import dnsguard
from tests.crawlkit import FAST, ROOT, crawl, query, write_seeds, write_settings
from tests.mockserver import Page
from tests.mockserver.context import HTML, RequestContext

pytestmark = pytest.mark.timeout(120)

GIB = 1 << 30
MIB = 1 << 20


def _br(data: bytes) -> bytes:
    return bytes(brotli.compress(data))


def _zstd(data: bytes) -> bytes:
    return bytes(zstd.compress(data))


ENCODERS: dict[str, Callable[[bytes], bytes]] = {"br": _br, "zstd": _zstd}


@dataclass(frozen=True)
class Encoded:
    """``body`` (already encoded) sent with ``Content-Encoding: coding``."""

    body: bytes
    coding: str

    def __call__(self, ctx: RequestContext) -> None:
        ctx.send(200, self.body, {"Content-Encoding": self.coding}, content_type=HTML)


def _bomb_bytes(coding: str) -> bytes:
    """1 GiB of zeros, streamed through the encoder 1 MiB at a time (never held decoded)."""
    zeros = bytes(MIB)
    out = []
    if coding == "br":
        br = brotli.Compressor(quality=5, lgwin=24)
        out = [br.process(zeros) for _ in range(GIB // MIB)] + [br.finish()]
    else:
        zs = zstd.ZstdCompressor(level=3)
        out = [zs.compress(zeros) for _ in range(GIB // MIB)] + [zs.flush()]
    return b"".join(out)


def bomb(coding: str) -> bytes:
    """The bomb for ``coding``, made once per machine and library version (cached in tmp)."""
    version = brotli.__version__ if coding == "br" else zstd.zstd_version
    cache = Path(tempfile.gettempdir()) / f"crawler-bomb-1gib-{coding}-{version}.bin"
    if not cache.exists():
        data = _bomb_bytes(coding)
        part = cache.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(data)
        part.replace(cache)
    return cache.read_bytes()


def test_accept_encoding_lists_every_coding_urllib3_decodes() -> None:
    assert ACCEPT_ENCODING == "gzip, deflate, br, zstd"


@pytest.mark.parametrize(
    ("blocked", "expected"),
    [
        (["brotli", "brotlicffi"], "gzip, deflate, zstd"),
        (["backports.zstd", "compression.zstd"], "gzip, deflate, br"),
    ],
)
def test_a_coding_whose_decoder_does_not_import_is_not_advertised(
    blocked: list[str], expected: str
) -> None:
    """A ``None`` in ``sys.modules`` makes the import fail, as a missing package would."""
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from crawler.fetch.fetcher import ACCEPT_ENCODING\n"
        "print(ACCEPT_ENCODING)\n"
    )
    env = dnsguard.subprocess_env({**os.environ, "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == expected


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_bomb_is_small_on_the_wire(coding: str) -> None:
    assert len(bomb(coding)) < 33_000


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_one_read1_returns_at_most_a_chunk_of_a_bomb(site_server, coding: str) -> None:
    """What read_body relies on: urllib3 decodes with max_length, so one 64 KiB read1 of a bomb
    returns at most 64 KiB, and reading 2 MiB costs 2 MiB, not the whole bomb."""
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/bomb", Encoded(bomb(coding), coding))
    with urllib3.PoolManager() as pool:
        response = pool.request("GET", srv.url("/bomb"), preload_content=False)
        sizes = [len(response.read1(CHUNK, decode_content=True)) for _ in range(32)]
        response.release_conn()
    assert max(sizes) <= CHUNK
    assert sum(sizes) >= MIB  # it does decode: zeros keep coming


def test_brotli_and_zstd_pages_are_decoded_and_followed(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    for coding, encode in ENCODERS.items():
        page = f"<title>{coding} \u00e9t\u00e9</title><a href='/after-{coding}'>next</a>"
        srv.site.add(f"/{coding}", Encoded(encode(page.encode()), coding))
        srv.site.add(f"/after-{coding}", Encoded(encode(b"<title>after</title>"), coding))
    root = "<title>root</title><a href='/br'>b</a><a href='/zstd'>z</a>"
    srv.site.add("/", Encoded(_br(root.encode()), "br"))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    assert {r.headers.get("Accept-Encoding") for r in srv.log} == {"gzip, deflate, br, zstd"}
    db = tmp_path / "crawl.db"
    titles = dict(query(db, "select url, title from pages"))
    assert titles == {
        srv.url("/"): "root",
        srv.url("/br"): "br \u00e9t\u00e9",
        srv.url("/zstd"): "zstd \u00e9t\u00e9",
        srv.url("/after-br"): "after",
        srv.url("/after-zstd"): "after",
    }
    assert query(db, "select count(*) from errors") == [(0,)]


def _crawl_measured(tmp: Path, seeds: list[str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """A crawl in a grandchild, and the peak RSS (bytes) of it and everything it started:
    ru_maxrss of RUSAGE_CHILDREN, read in a wrapper that started nothing else."""
    seed_file = write_seeds(tmp / "seed.txt", seeds)
    cfg = write_settings(tmp / "settings.toml", FAST, {"crawl": {"workers": 2}})
    crawl_cmd = [sys.executable, "-m", "crawler", "crawl", str(seed_file)]
    crawl_cmd += ["--db", str(tmp / "crawl.db"), "--config", str(cfg), "-q"]
    wrapper = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], check=False).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *crawl_cmd],
        cwd=tmp,
        env=dnsguard.subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    max_rss_kib = int(done.stdout.split()[-1])  # Linux: kilobytes
    return done, max_rss_kib * 1024


def test_brotli_and_zstd_bombs_end_too_large_in_bounded_memory(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/br-bomb", Encoded(bomb("br"), "br"))
    srv.site.add("/zstd-bomb", Encoded(bomb("zstd"), "zstd"))
    srv.site.add("/", Page("<title>fine</title>"))  # one success: exit status 0
    seeds = [srv.url("/"), srv.url("/br-bomb"), srv.url("/zstd-bomb")]
    done, peak = _crawl_measured(tmp_path, seeds)
    assert done.returncode == 0, done.stderr
    db = tmp_path / "crawl.db"
    rows = query(db, "select u.url, e.kind, e.final from errors e join urls u on u.id = e.url_id")
    assert sorted(rows) == [
        (srv.url("/br-bomb"), "too_large", 1),
        (srv.url("/zstd-bomb"), "too_large", 1),
    ]
    states = query(db, "select state, count(*) from urls group by state order by state")
    assert states == [("done", 1), ("failed", 2)]
    assert peak < 400 * MIB, f"peak RSS {peak / MIB:.0f} MiB"
    print(f"bomb crawl peak RSS: {peak / MIB:.0f} MiB")  # shown with pytest -s
