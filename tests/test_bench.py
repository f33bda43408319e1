"""The benchmark suite runs: every scenario on a tiny size, no timing asserted (issue 8)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import sitegen
from bench.__main__ import main
from bench.scenarios import SCENARIOS

ROW_KEYS = {"peer", "pages", "complete", "wall_s", "pages_per_s", "cpu_ms_per_page", "peak_rss_mb"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_runs_on_a_tiny_size(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    argv = ["--size", "tiny", "--scenario", name, "--out", str(out), "--server", "python"]
    assert main([*argv, "--workdir", str(tmp_path / "work")]) == 0
    printed = capsys.readouterr().out
    [saved] = out.glob("bench-tiny-*.json")
    report = json.loads(saved.read_text())
    assert {"machine", "scenarios", "size", "started_at"} <= report.keys()
    assert report["machine"]["nproc"] >= 1
    result = report["scenarios"][name]
    assert {"scenario", "title", "server", "rows", "metrics", "targets"} <= result.keys()
    assert result["title"] in printed
    for row in result["rows"]:
        assert row.keys() >= ROW_KEYS
        assert row["returncode"] == 0, row["note"]
        if row["expected"] is not None:
            assert row["complete"], row  # every peer fetched the whole site
    if name == "throughput":
        peers = {r["peer"] for r in result["rows"]}
        assert {"ours", "plain"} <= peers
        if "scrapy" in peers:
            assert set(result["ratios_to_scrapy"]["ours"]) == {
                "pages_per_s",
                "cpu_per_page",
                "peak_rss",
            }
            assert "x pages/s" in printed
    if name == "frontier":
        assert result["metrics"]["discovered_target"] > result["metrics"]["discovered_base"]
    if name == "writer":
        m = result["metrics"]
        assert m["stored_links"] == m["link_rows"]
        assert m["max_queue_depth_paced"] <= m["queue_size"]


def test_site_is_deterministic_sized_and_linked(tmp_path: Path) -> None:
    hosts = sitegen.host_addresses(2)
    a = sitegen.generate(tmp_path / "a", hosts, 30, seed=7)
    b = sitegen.generate(tmp_path / "b", hosts, 30, seed=7)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*.html"))
    assert len(files) == 60
    for rel in files:
        data = (a.root / rel).read_bytes()
        assert data == (b.root / rel).read_bytes()
        assert 8_000 <= len(data) <= 15_500, (rel, len(data))
        assert 10 <= len(re.findall(rb"<a href=", data)) <= 20


def test_host_addresses_are_loopback_and_skip_127_0_0_1() -> None:
    hosts = sitegen.host_addresses(600)
    assert len(set(hosts)) == 600
    assert "127.0.0.1" not in hosts
    assert all(h.startswith("127.0.") and not h.endswith((".0", ".255")) for h in hosts)


def test_frontier_pages_link_only_to_new_urls() -> None:
    seen: set[bytes] = set()
    for n in range(5):
        links = re.findall(rb'href="(/f/\d+\.html)"', sitegen.frontier_page(n, 50))
        assert len(links) == 50
        assert not seen & set(links)
        seen |= set(links)
