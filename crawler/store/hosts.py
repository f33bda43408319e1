"""The ``hosts`` table: host key → id (a bounded cache), host names by id, cached robots.txt.

Runs on the writer thread only (:meth:`crawler.store.writer.Writer.call`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable

from sqlalchemy import Connection, select

from crawler.store.common import (
    any_dialect,
    chunks,
    hosts_t,
    in_list,
    insert_for,
)
from crawler.store.rawsql import Statement

_INSERT_HOSTS = Statement(
    lambda d: insert_for(d, hosts_t).on_conflict_do_nothing(index_elements=["host"]), ["host"]
)
_HOST_IDS = Statement(
    any_dialect(
        lambda: select(hosts_t.c.host, hosts_t.c.id).where(in_list(hosts_t.c.host, "hosts"))
    ),
    ["hosts"],
)
_HOST_NAMES = Statement(
    any_dialect(lambda: select(hosts_t.c.id, hosts_t.c.host).where(in_list(hosts_t.c.id, "ids"))),
    ["ids"],
)


class HostCache:
    """host key → hosts.id, bounded: hosts seen as link targets can be many."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: dict[str, int] = {}
        self._limit = limit

    def ids(self, conn: Connection, hosts: Iterable[str]) -> dict[str, int]:
        wanted = set(hosts)
        # Sorted: concurrent writers (workers sharing PostgreSQL) then insert new keys in the
        # same order, so one waits for the other instead of the two deadlocking.
        missing = sorted(h for h in wanted if h not in self._ids)
        if missing:
            if len(self._ids) + len(missing) > self._limit:
                self._ids.clear()
            _INSERT_HOSTS.executemany(conn, [(h,) for h in missing])
            for chunk in chunks(missing):
                self._ids.update(_HOST_IDS.execute(conn, (chunk,)).all())
        return {h: self._ids[h] for h in wanted}


def host_names(conn: Connection, ids: Collection[int]) -> dict[int, str]:
    """hosts.id → host key, for the given ids."""
    return dict(_HOST_NAMES.execute(conn, (list(ids),)).all())


def cached_robots(conn: Connection, hosts: Collection[str]) -> list[tuple[str, str, dt.datetime]]:
    """``(host, robots_txt, robots_fetched_at)`` for the given hosts that have one cached."""
    out: list[tuple[str, str, dt.datetime]] = []
    for chunk in chunks(list(hosts)):
        rows = conn.execute(
            select(hosts_t.c.host, hosts_t.c.robots_txt, hosts_t.c.robots_fetched_at).where(
                hosts_t.c.host.in_(chunk),
                hosts_t.c.robots_txt.is_not(None),
                hosts_t.c.robots_fetched_at.is_not(None),
            )
        )
        out.extend((h, body, at) for h, body, at in rows)
    return out
