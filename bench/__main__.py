"""``python -m bench [--quick] [--scenario NAME ...]``: run the benchmark, print, save JSON.

Examples::

    python -m bench --quick                      # all six scenarios, scaled down (< 5 min)
    python -m bench --scenario throughput        # scenario 1 at full size (20,000 pages)
    python -m bench --quick --server python      # the pure-Python server instead of nginx
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import measure
from bench.scenarios import SCENARIOS, SIZES, Context

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the crawler against Scrapy and the plain pattern on local sites.",
        epilog=__doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="scaled-down sizes (all under 5 min)")
    p.add_argument("--size", choices=sorted(SIZES), help="full, quick or tiny (tests) [full]")
    p.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable) [all]",
    )
    p.add_argument(
        "--server",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="static server for scenario 1: nginx if installed (auto), or the Python fallback",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    p.add_argument("--workdir", type=Path, help="keep sites and databases here (default: temp)")
    p.add_argument("--seed", type=int, default=0, help="site generator seed [0]")
    return p


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    out = [f"\n== {result['title']}", f"   server: {result['server']}"]
    rows = result.get("rows") or []
    if rows:
        ratios = result.get("ratios_to_scrapy") or {}
        headers = ["peer", "pages", "complete", "wall s", "pages/s", "CPU ms/page", "RSS MB"]
        if ratios:
            headers += ["x pages/s", "x CPU/page", "x RSS"]
        body = []
        for r in rows:
            line = [
                r["peer"],
                r["pages"],
                r["complete"],
                r["wall_s"],
                r["pages_per_s"],
                r["cpu_ms_per_page"],
                r["peak_rss_mb"],
            ]
            if ratios:
                x = ratios.get(r["peer"], {})
                line += [x.get("pages_per_s"), x.get("cpu_per_page"), x.get("peak_rss")]
            body.append(line)
        out.append(table(headers, body))
        if ratios:
            out.append("   (x = ratio to Scrapy in this run)")
    metrics = result.get("metrics") or {}
    targets = result.get("targets") or {}
    out.append(
        "   "
        + ", ".join(
            f"{k}={_fmt(v)}" + (f" (target {targets[k]})" if k in targets else "")
            for k, v in metrics.items()
        )
    )
    out += [f"   note: {n}" for n in result.get("notes") or []]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = args.size or ("quick" if args.quick else "full")
    names = args.scenario or list(SCENARIOS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crawler-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # nginx's workers (user nobody) must reach the site
    info = measure.machine()
    print(
        f"bench ({size}): {', '.join(names)}; {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['ram_mb']:,} MB RAM, Python {info['python']}, SQLite {info['sqlite']}",
        flush=True,
    )
    report: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "size": size,
        "machine": info,
        "scenarios": {},
        "failed": {},
    }
    ctx = Context(SIZES[size], workdir, args.server, args.seed, report["scenarios"])
    started = time.perf_counter()
    try:
        for name in names:
            t0 = time.perf_counter()
            print(f"\n-- {name} ...", flush=True)
            try:
                result = SCENARIOS[name](ctx)
            except Exception as exc:
                traceback.print_exc()
                report["failed"][name] = f"{type(exc).__name__}: {exc}"
                continue
            result["elapsed_s"] = round(time.perf_counter() - t0, 1)
            report["scenarios"][name] = result
            print(render(result), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"bench-{size}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{len(report['scenarios'])} scenarios in {report['elapsed_s']:g} s; saved {path}")
    if report["failed"]:
        print(f"failed: {report['failed']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
