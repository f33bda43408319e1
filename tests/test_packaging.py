"""The wheel is complete: installed in a fresh venv, away from the source tree, it crawls.

The wheel is built (``python -m build --wheel --no-isolation``) from a snapshot of the source
tree in a temporary directory, not in the checkout itself: setuptools writes ``build/`` and
``*.egg-info`` next to the sources and never prunes ``build/lib``, so a module deleted from the
tree could still ship and hide a missing file. The snapshot holds exactly what the checkout holds.

The fresh venv sees the dependencies already installed in the current one through a ``.pth``
file naming the current site-packages: a path line in a ``.pth`` is appended to ``sys.path``,
but ``.pth`` files inside that directory are not executed, so the editable install's import hook
does not activate and only the wheel's copy of ``crawler`` can be imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.crawlkit import ROOT, query, write_seeds, write_settings
from tests.mockserver import Page, Site

IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.db", "*.db-*"
)


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRAWLER_", "PYTHON", "VIRTUAL_ENV"))
    }
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.timeout(180)
def test_wheel_installs_into_a_fresh_venv_and_crawls(site_server, tmp_path: Path) -> None:
    # Build.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORED)
    dist = tmp_path / "dist"
    ok(run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, cwd=src))
    [wheel] = dist.glob("crawler-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for needed in (
        "migrations/__init__.py",
        "migrations/env.py",
        "migrations/script.py.mako",
        "migrations/versions/__init__.py",
        "migrations/versions/0001_initial.py",
        "models/__init__.py",
        "models/tables.py",
        "models/py.typed",
        "crawler/__main__.py",
        "crawler/py.typed",
    ):
        assert needed in names, f"{needed} is missing from {wheel.name}"
    assert not any(n.startswith("tests/") for n in names)

    # A fresh venv that sees the installed dependencies but not the editable crawler.
    venv = tmp_path / "venv"
    ok(run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path))
    python = venv / "bin" / "python"
    site_packages = Path(
        ok(
            run(
                python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
            )
        ).strip()
    )
    (site_packages / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    probe = run(python, "-c", "import sqlalchemy, alembic, requests; import crawler", cwd=tmp_path)
    assert probe.returncode == 1
    assert "No module named 'crawler'" in probe.stderr, "the editable install leaked in"

    ok(
        run(
            sys.executable, "-m", "pip", "--python", python, "install",
            "--no-deps", "--no-index", "--disable-pip-version-check", wheel,
            cwd=tmp_path,
        )
    )  # fmt: skip

    # Crawl a tiny site from a directory outside the source tree.
    site = Site()
    site.add("/", Page('<title>home</title><a href="/a">a</a>'))
    site.add("/a", Page('<title>a</title><a href="/">home</a>'))
    srv = site_server(site)
    work = tmp_path / "work"
    work.mkdir()
    write_seeds(work / "seed.txt", [srv.url("/")])
    write_settings(work / "settings.toml", {"politeness": {"delay": 0.0, "obey_robots": False}})
    result = run(python, "-m", "crawler", "crawl", "seed.txt", "--db", "out.db", cwd=work)
    out = ok(result)
    assert "2 fetched, 2 ok" in out
    assert query(work / "out.db", "select url, title from pages order by url") == [
        (srv.url("/"), "home"),
        (srv.url("/a"), "a"),
    ]

    where = ok(
        run(
            python,
            "-c",
            "import sys, crawler, models, migrations, migrations.versions\n"
            "for m in (crawler, models, migrations, migrations.versions): print(m.__file__)\n"
            "print(any('editable' in m for m in sys.modules))\n"
            "print(any('editable' in type(f).__name__.lower() for f in sys.meta_path))\n",
            cwd=work,
        )
    ).splitlines()
    assert where[-2:] == ["False", "False"], "the editable import hook is active"
    for path in where[:-2]:
        assert Path(path).is_relative_to(site_packages), f"{path} is not from the new venv"

    version = ok(run(venv / "bin" / "crawler", "--version", cwd=work))
    with (ROOT / "pyproject.toml").open("rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    assert version.strip() == f"crawler {expected}"
