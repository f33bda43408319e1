"""Profile the crawler on scenario 1's site: ``python -m bench.profile [--pages N]``.

The crawler runs in a child process (``--child``) with a ``cProfile.Profile`` in every thread
(the fetch pool's workers, the writer, the dispatcher on the main thread), timed with
``time.thread_time`` so the figures are CPU time, not time spent waiting on sockets or locks.
The per-thread profiles are merged and summed into categories (BeautifulSoup, requests and
urllib3, SQLAlchemy and SQLite, URL canonicalization, the dispatcher, ...). cProfile slows
call-heavy Python code more than C code, so categories are shares of a profiled run; multiply
a share by the unprofiled CPU ms/page to estimate its cost.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench import measure, servers, sitegen

CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("parse: BeautifulSoup tree + lxml", ("/bs4/", "lxml", "soupsieve", "dammit")),
    (
        "parse: our parser (links, text, hash)",
        (
            "crawler/parse/soup.py",
            "crawler/parse/fast.py",
            "hashlib",
            "_sre",
            "re.py",
            "re.Pattern",
        ),
    ),
    ("urls: canonicalize/resolve", ("crawler/urls.py", "ada_url", "w3lib", "idna", "urllib/parse")),
    ("fetch: requests", ("/requests/",)),
    ("fetch: urllib3", ("/urllib3/",)),
    ("fetch: http.client/socket/ssl", ("http/client.py", "socket", "email/", "ssl")),
    (
        "fetch: our fetcher + netguard + tenacity",
        ("crawler/fetch/fetcher.py", "netguard", "tenacity"),
    ),
    ("store: SQLAlchemy", ("/sqlalchemy/",)),
    ("store: sqlite3 (C)", ("sqlite3",)),
    ("store: our sql + writer", ("crawler/store/results.py", "crawler/store/writer.py")),
    (
        "dispatch: engine/frontier/pool/politeness",
        (
            "crawler/run/engine.py",
            "crawler/run/frontier.py",
            "crawler/run/pool.py",
            "crawler/fetch/gate.py",
            "concurrent/futures",
        ),
    ),
    (
        "worker: work.py, schedule, records",
        ("crawler/run/work.py", "crawler/schedule.py", "records"),
    ),
    ("threading/queue/locks", ("threading.py", "queue.py", "_thread")),
    ("start-up: imports, alembic, migrations", ("importlib", "alembic", "<frozen", "marshal")),
]


def category(func: tuple[str, int, str]) -> str:
    filename, _line, name = func
    key = f"{filename}:{name}"
    for label, needles in CATEGORIES:
        if any(n in key for n in needles):
            return label
    return "other"


def _child(argv: list[str], out: Path) -> None:
    """Run ``crawler`` with ``argv``, profiling every thread; write merged stats to ``out``."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()
            with lock:
                profiles.append(prof)

    threading.Thread.run = run  # type: ignore[method-assign]
    from crawler.commands.cli import main

    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    try:
        main(argv)
    except SystemExit:
        pass
    finally:
        main_prof.disable()
    stats = pstats.Stats(main_prof)
    with lock:
        for p in profiles:
            stats.add(p)
    stats.dump_stats(str(out))


def summarize(path: Path, pages: int, top: int = 25) -> str:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    by_cat: dict[str, float] = defaultdict(float)
    total = 0.0
    for func, (_cc, _nc, tt, _ct, callers) in raw.items():
        total += tt
        label = category(func)
        if label != "other" or func[0] != "~" or not callers:
            by_cat[label] += tt
            continue
        # A builtin (isinstance, str.lower, ...) counts where it was called from.
        weights = {c: v[3] for c, v in callers.items()}
        whole = sum(weights.values()) or 1.0
        for caller, w in weights.items():
            by_cat[category(caller)] += tt * w / whole
    lines = [f"profiled CPU: {total:.2f} s for {pages} pages ({1000 * total / pages:.2f} ms/page)"]
    lines.append("\nby category (self time, share of profiled CPU):")
    for label, t in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * t / total:5.1f}%  {1000 * t / pages:6.2f} ms/page  {label}")
    lines.append(f"\ntop {top} functions by self time:")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in rows:
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        lines.append(
            f"  {100 * tt / total:5.1f}%  self {tt:6.2f}s  cum {ct:6.2f}s  {nc:>9} calls  "
            f"{short}:{line}({name})"
        )
    lines.append(f"\ntop {top} functions by cumulative time:")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for (filename, line, name), (_cc, nc, _tt, ct, _callers) in rows:
        if "threading.py" in filename or name in ("<module>", "run", "_worker"):
            continue
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        lines.append(
            f"  {100 * ct / total:5.1f}%  cum {ct:6.2f}s  {nc:>9} calls  {short}:{line}({name})"
        )
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("--pages", type=int, default=2000, help="site size [2000]")
    ap.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    ap.add_argument("--out", type=Path, help="write the merged .prof here")
    ap.add_argument("--summarize", type=Path, help="only summarize this .prof (and --pages)")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.summarize is not None:
        print(summarize(args.summarize, args.pages))
        return 0
    if args.child is not None:
        _child(args.child[1:], Path(args.child[0]))
        return 0
    with tempfile.TemporaryDirectory(prefix="crawler-profile-") as tmp:
        wd = Path(tmp)
        wd.chmod(0o755)  # nginx's workers (user nobody) must reach the site
        hosts = sitegen.host_addresses(1)
        site = sitegen.generate(wd / "site", hosts, args.pages)
        srv = servers.static_server(site.root, hosts, wd / "nginx", args.server, 3600)
        try:
            seed = measure.write_seeds(wd / "seed.txt", site.seeds(srv.port))
            conf = measure.write_settings(wd / "politeness-off.toml", measure.POLITENESS_OFF)
            prof = args.out or wd / "crawler.prof"
            cmd = [sys.executable, "-m", "bench.profile", "--child", str(prof), "crawl"]
            cmd += [str(seed), "--db", str(wd / "crawl.db"), "--config", str(conf), "-q"]
            repo = str(Path(__file__).resolve().parent.parent)
            m = measure.run_measured(cmd, wd / "run", 3600, env={"PYTHONPATH": repo})
            counts = measure.count_ours(wd / "crawl.db")
        finally:
            srv.stop()
        if m.returncode != 0:
            print(m.stderr_tail, file=sys.stderr)
            return 1
        print(
            f"profiled run ({srv.label}): {counts.pages} pages in {m.wall_s:.1f} s, "
            f"{1000 * m.cpu_s / max(1, counts.pages):.2f} CPU ms/page under the profiler "
            f"(exit {m.returncode})"
        )
        print(summarize(prof, max(1, counts.pages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
