"""The writer's hot statements as SQL compiled once per dialect, given values in stored form.

Executing a Core statement costs SQLAlchemy more CPU than SQLite spends storing the rows: for
every call it builds the statement and its cache key, and for every row it builds the parameter
set and runs each value through the column types (``UTCDateTime``, then SQLite's ``DATETIME``
formatter). At ~15 links a page that was about a quarter of the crawler's CPU. So each hot
Core statement stays the single definition of its SQL, but is compiled once per dialect into
the DBAPI string and the order of its parameters; callers pass plain tuples whose values are
already what the driver stores (:func:`converters`), and a batch is one ``executemany``. The
strings still run through ``Connection.exec_driver_sql``, so SQLAlchemy's transaction, events
and error wrapping (``DBAPIError``) are unchanged. ``tests/store/test_rawsql.py`` checks that the
rows stored are byte-identical to what the Core statements stored.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Column, Connection, CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine
from sqlalchemy.util.typing import TupleAny, Unpack

Row = tuple[Any, ...]

_PYFORMAT = re.compile(r"%\((\w+)\)s|__\[POSTCOMPILE_(\w+)\]")
"""A ``pyformat`` bind, or the place an expanding ``IN`` list goes (in every paramstyle)."""


def _dialect_key(dialect: Dialect) -> tuple[Any, ...]:
    return (type(dialect), dialect.paramstyle, dialect.server_version_info)


# -- values as the driver stores them ------------------------------------------------------


def _naive(value: dt.datetime) -> ValueError:
    return ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")


def sqlite_timestamp(value: dt.datetime | None) -> str | None:
    """``models.base.UTCDateTime`` then SQLite's ``DATETIME``: naive UTC text, always with
    microseconds (``2026-11-26 04:15:51.123000``), in one C call instead of two processors."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise _naive(value)
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def utc_timestamp(value: dt.datetime | None) -> dt.datetime | None:
    """``UTCDateTime`` on a backend with a timezone type: an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise _naive(value)
    return value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Converters:
    """Turn Python values into what the driver stores, for columns whose types convert."""

    timestamp: Callable[[dt.datetime | None], Any]
    json: Callable[[Any], Any]
    """The dialect's own JSON bind processor (``json.dumps`` text, ``psycopg`` ``Json``);
    ``None`` stays ``NULL`` (``none_as_null``)."""


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def converters(dialect: Dialect, json_column: Column[Any]) -> Converters:
    """The converters for ``dialect``; JSON as ``json_column``'s type binds it."""
    process = _processor(json_column.type, dialect)
    json: Callable[[Any], Any] = process if process is not None else _same
    stamp = sqlite_timestamp if dialect.name == "sqlite" else utc_timestamp
    return Converters(stamp, json)


def _same(value: Any) -> Any:
    return value


# -- statements ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    arrange: Callable[[Row], Row] | None
    """Caller's tuple → the DBAPI's (reordered, constants added); None when they are the same."""
    expand_at: int
    """Where the expanding ``IN`` list sits in the DBAPI's parameters; -1: none."""
    token: str
    placeholder: str


class Statement:
    """A Core statement run as a DBAPI string compiled once per dialect.

    ``build(dialect)`` makes the Core statement (the one definition of its SQL); ``fields``
    names the values callers pass, in the order of their tuples. Bind parameters that are not
    fields must carry their value in the statement (``lease_until=None``, ``attempts + 1``) or
    be a column with a scalar Python default (``priority`` 0): those become constants, as
    SQLAlchemy would fill them. At most one field may be an expanding ``IN`` list, for
    :meth:`execute` only. Values must already be what the driver stores (:class:`Converters`).
    """

    def __init__(self, build: Callable[[Dialect], ClauseElement], fields: Sequence[str]) -> None:
        self._build = build
        self.fields = tuple(fields)
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}

    def sql(self, dialect: Dialect) -> str:
        """The DBAPI string (an expanding list still as SQLAlchemy's placeholder)."""
        return self._for(dialect).sql

    def execute(self, conn: Connection, params: Row = ()) -> CursorResult[Unpack[TupleAny]]:
        """Run once; an expanding field's value is a non-empty sequence."""
        c = self._for(conn.dialect)
        args = c.arrange(params) if c.arrange is not None else params
        sql = c.sql
        if c.expand_at >= 0:
            values = tuple(args[c.expand_at])
            if not values:
                raise ValueError(f"empty IN list for {self.fields[c.expand_at]!r}")
            sql = sql.replace(c.token, ", ".join([c.placeholder] * len(values)))
            args = (*args[: c.expand_at], *values, *args[c.expand_at + 1 :])
        return conn.exec_driver_sql(sql, args)

    def executemany(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Run once per row, in one DBAPI ``executemany``."""
        if not rows:
            return
        c = self._for(conn.dialect)
        if c.expand_at >= 0:
            raise TypeError("an expanding IN list cannot be part of an executemany")
        if c.arrange is not None:
            arrange = c.arrange
            rows = [arrange(r) for r in rows]
        elif not isinstance(rows, list):
            rows = list(rows)
        conn.exec_driver_sql(c.sql, rows)

    def returning_many(self, conn: Connection, rows: Sequence[Row]) -> list[Any]:
        """Run an ``INSERT ... RETURNING x`` once per row: each row's ``x``, in row order.

        psycopg returns one result per row from a single ``executemany(returning=True)``;
        elsewhere each row is its own execute (SQLite: no round trip, and ``executemany``
        discards what RETURNING gives back)."""
        if not rows:
            return []
        c = self._for(conn.dialect)
        args = [c.arrange(r) for r in rows] if c.arrange is not None else list(rows)
        if conn.dialect.driver != "psycopg":
            return [conn.exec_driver_sql(c.sql, a).scalar_one() for a in args]
        dbapi_conn: Any = conn.connection.driver_connection
        try:
            with dbapi_conn.cursor() as cur:
                cur.executemany(c.sql, args, returning=True)
                out = []
                while True:
                    out.append(cur.fetchone()[0])
                    if not cur.nextset():
                        return out
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                c.sql, args, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc

    # -- compiling ------------------------------------------------------------------------

    def _for(self, dialect: Dialect) -> _Compiled:
        key = _dialect_key(dialect)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        stmt = self._build(dialect)
        # An INSERT renders the columns it is given (and those with Python defaults); other
        # statements take only their own binds: a field named like a column would add it to
        # an UPDATE's SET.
        kw: dict[str, Any] = {}
        if isinstance(stmt, Insert):
            kw = {"column_keys": list(self.fields), "for_executemany": True}
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect, **kw))
        sql, names, placeholder = _positional(compiled, dialect)
        index = {name: i for i, name in enumerate(self.fields)}
        unused = set(self.fields) - set(names)
        if unused:
            raise ValueError(f"fields not in the statement: {sorted(unused)}")
        order: list[int] = []
        constants: list[Any] = []
        for name in names:
            if name in index:
                order.append(index[name])
            else:
                order.append(len(self.fields) + len(constants))
                constants.append(_constant(compiled, name, dialect))
        expanding = [b.key for b in compiled.post_compile_params if b.key in index]
        if len(expanding) > 1 or len(compiled.post_compile_params) > len(expanding):
            raise ValueError("only one expanding IN list, and it must be a field")
        return _Compiled(
            sql=sql,
            arrange=_arranger(order, tuple(constants)),
            expand_at=names.index(expanding[0]) if expanding else -1,
            token=f"__[POSTCOMPILE_{expanding[0]}]" if expanding else "",
            placeholder=placeholder,
        )


def _positional(compiled: SQLCompiler, dialect: Dialect) -> tuple[str, list[str], str]:
    """The SQL with positional placeholders, and the bind names in placeholder order."""
    if dialect.paramstyle == "qmark":
        return compiled.string, list(compiled.positiontup or ()), "?"
    if dialect.paramstyle != "pyformat":  # psycopg takes %s as well as %(name)s
        raise NotImplementedError(f"paramstyle {dialect.paramstyle!r}")
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        names.append(match.group(1) or match.group(2))
        return "%s" if match.group(1) else match.group(0)

    return _PYFORMAT.sub(positional, compiled.string), names, "%s"


def _constant(compiled: SQLCompiler, name: str, dialect: Dialect) -> Any:
    """The value SQLAlchemy would bind for a parameter the caller does not pass."""
    defaults = {c.key: c for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
    type_: TypeEngine[Any]
    if name in defaults:
        column = defaults[name]
        default = column.default
        if default is None or not default.is_scalar:
            raise ValueError(f"column {name!r} has no scalar default: make it a field")
        value, type_ = default.arg, column.type  # type: ignore[attr-defined]
    else:
        bind = compiled.binds[name]
        if bind.required:
            raise ValueError(f"parameter {name!r} has no value: make it a field")
        value, type_ = bind.effective_value, bind.type
    process = _processor(type_, dialect)
    return process(value) if process is not None else value


def _arranger(order: list[int], constants: Row) -> Callable[[Row], Row] | None:
    if not constants and order == list(range(len(order))):
        return None
    if len(order) == 1:
        (i,) = order
        return lambda row: ((row + constants)[i],)
    get = itemgetter(*order)
    if not constants:
        return cast(Callable[[Row], Row], get)
    return lambda row: cast(Row, get(row + constants))
