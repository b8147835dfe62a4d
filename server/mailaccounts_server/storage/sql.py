"""Statements compiled once, run on pooled DBAPI connections.

SQLAlchemy builds and compiles every query (so the SQL is portable between SQLite and
PostgreSQL and checked against the models), but only once per dialect: per-call statement
construction, cache-key generation and ORM session bookkeeping cost about 25 times the query
itself on a primary-key read, and the service's hot paths are exactly such reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True, slots=True)
class Compiled:
    """Driver SQL, the parameter order of positional drivers (None for named), fixed values."""

    sql: str
    order: tuple[str, ...] | None
    fixed: dict[str, Any]


class Statement:
    """A Core statement compiled lazily, once per dialect, into driver SQL."""

    __slots__ = ("_stmt", "_compiled")

    def __init__(self, stmt: ClauseElement | Callable[[str], ClauseElement]) -> None:
        # A callable builds a dialect-specific statement (e.g. an upsert) from the dialect name.
        self._stmt = stmt
        self._compiled: dict[str, Compiled] = {}

    def for_dialect(self, dialect: Dialect) -> Compiled:
        """The statement's SQL for this dialect."""
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            stmt = self._stmt if isinstance(self._stmt, ClauseElement) else self._stmt(dialect.name)
            c = stmt.compile(dialect=dialect)
            positions = getattr(c, "positiontup", None) or ()
            # Parameters the compiler added itself (literals, SQLite's OFFSET 0) carry values.
            fixed = {name: value for name, value in c.params.items() if value is not None}
            order = tuple(positions) if dialect.positional else None
            compiled = self._compiled[dialect.name] = Compiled(c.string, order, fixed)
        return compiled


class Tx:
    """One pooled DBAPI connection inside one transaction (see Database.transaction)."""

    __slots__ = ("_cursor", "_dialect", "integrity_error")

    def __init__(self, cursor: Any, dialect: Dialect, integrity_error: type[Exception]) -> None:
        self._cursor = cursor
        self._dialect = dialect
        # The driver's unique/foreign-key violation class, for callers that translate it.
        self.integrity_error = integrity_error

    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> Any:
        """Runs the statement; returns the DBAPI cursor (rowcount, fetch*)."""
        compiled = statement.for_dialect(self._dialect)
        params = params or {}
        if compiled.fixed:
            params = {**compiled.fixed, **params}
        order = compiled.order
        args: Sequence[Any] | Mapping[str, Any] = (
            [params[name] for name in order] if order is not None else params
        )
        self._cursor.execute(compiled.sql, args)
        return self._cursor

    def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Runs the statement once per parameter set, in one driver call (bulk loads)."""
        compiled = statement.for_dialect(self._dialect)
        order = compiled.order
        batch = [{**compiled.fixed, **row} for row in rows] if compiled.fixed else rows
        args = [[r[name] for name in order] for r in batch] if order is not None else batch
        self._cursor.executemany(compiled.sql, args)

    def first(self, statement: Statement, params: Mapping[str, Any] | None = None) -> Any:
        return self.execute(statement, params).fetchone()

    def rows(self, statement: Statement, params: Mapping[str, Any] | None = None) -> list[Any]:
        return list(self.execute(statement, params).fetchall())

    def scalar(self, statement: Statement, params: Mapping[str, Any] | None = None) -> Any:
        row = self.execute(statement, params).fetchone()
        return None if row is None else row[0]


class StatementCache:
    """Statements that vary by shape (which filters, which columns) built once per shape."""

    def __init__(self) -> None:
        self._by_key: dict[Any, Statement] = {}

    def get(self, key: Any, build: Any) -> Statement:
        statement = self._by_key.get(key)
        if statement is None:
            statement = self._by_key[key] = Statement(build())
        return statement

    def __iter__(self) -> Iterator[Statement]:
        return iter(self._by_key.values())
