"""Issue 13, "Redirects are links too": every hop is checked before it is requested, and no
credentials ever come from a URL. A real server on loopback is the judge (its request log and
the headers it received), with the database file and the log output as the user sees them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.crawlkit import crawl, query
from tests.siteserver import Page, Redirect, loopback_hosts
from tests.test_politeness import by_host, links_page, url_states

pytestmark = pytest.mark.timeout(60)

SECRET = "hunter2"


def _link_rows(db: Path) -> set[tuple[str, str]]:
    return set(
        query(
            db,
            "select s.url, d.url from links l join urls s on s.id = l.src_url_id "
            "join urls d on d.id = l.dst_url_id",
        )
    )


def _final_errors(db: Path, url: str) -> list[tuple[str, str]]:
    return query(
        db,
        "select e.kind, e.message from errors e join urls u on u.id = e.url_id "
        "where u.url = ? and e.final = 1",
        url,
    )


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("same_host", [True, False], ids=["same-host", "cross-host"])
def test_location_userinfo_is_never_sent_stored_or_logged(
    site_server, tmp_path: Path, caplog: pytest.LogCaptureFixture, same_host: bool
) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    target_host = h2 if same_host else h3
    target = srv.url("/target", target_host).replace("://", f"://bob:{SECRET}@", 1)
    srv.site.add("/", links_page("root", ["/go"]), host=h2)
    srv.site.add("/go", Redirect(target), host=h2)
    srv.site.add("/target", links_page("target", []), host=target_host)
    log_file = tmp_path / "crawl.log"
    caplog.set_level(logging.DEBUG)
    seeds = [srv.url("/", h) for h in hosts]  # both seed hosts: the guard lets both through
    assert crawl(tmp_path, seeds, "-v", "--log-file", str(log_file)) == 0

    [hit] = srv.requests_for("/target", target_host)
    assert "authorization" not in {k.lower() for k in hit.headers}, hit.headers
    db = tmp_path / "crawl.db"
    assert SECRET.encode() not in db.read_bytes()
    for extra in db.parent.glob("crawl.db-*"):  # a WAL left behind must not hold it either
        assert SECRET.encode() not in extra.read_bytes()
    assert SECRET not in log_file.read_text(encoding="utf-8")
    assert SECRET not in caplog.text
    assert url_states(db)[srv.url("/target", target_host)] == "done"
