"""Statements compiled once per dialect, and the transaction handle the data functions use.

SQLAlchemy builds and compiles every query (so the SQL is portable between SQLite and
PostgreSQL and checked against the models), but only once per dialect: per-call statement
construction, cache-key generation and ORM session bookkeeping cost many times the query itself
on a primary-key read (README, Performance), and the hot paths are exactly such reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Dialect
from sqlalchemy.sql import ClauseElement

Row = Mapping[str, Any]
"""A result row, read by column name (sqlite3.Row or psycopg's dict_row)."""
Params = Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Compiled:
    """Driver SQL, the parameter order of positional drivers (None for named), fixed values."""

    sql: str
    order: tuple[str, ...] | None
    fixed: dict[str, Any]

    def args(self, params: Params) -> Sequence[Any] | Mapping[str, Any]:
        """The driver's parameters: a sequence for positional drivers, else the mapping."""
        values = params or {}
        if self.fixed:
            values = {**self.fixed, **values}
        return [values[name] for name in self.order] if self.order is not None else values


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


class StatementCache:
    """Statements that vary by shape (which filters, which columns) built once per shape."""

    def __init__(self) -> None:
        self._by_key: dict[Any, Statement] = {}

    def get(self, key: Any, build: Callable[[], ClauseElement]) -> Statement:
        statement = self._by_key.get(key)
        if statement is None:
            statement = self._by_key[key] = Statement(build())
        return statement


class Tx(Protocol):
    """One connection inside one transaction (or, for reads on PostgreSQL, one autocommit
    connection): the only way data functions reach the database. They never commit."""

    @property
    def dialect(self) -> Dialect:
        """The SQLAlchemy dialect statements are compiled for."""
        ...

    @property
    def integrity_error(self) -> type[Exception]:
        """The driver's unique/foreign-key violation class."""
        ...

    async def execute(self, statement: Statement, params: Params = None) -> None:
        """Runs a statement whose result is not needed now (PostgreSQL may pipeline it: an
        error then surfaces at the next read or at commit)."""
        ...

    async def count(self, statement: Statement, params: Params = None) -> int:
        """Runs a statement and returns how many rows it changed."""
        ...

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Runs the statement once per parameter set (bulk loads)."""
        ...

    async def first(self, statement: Statement, params: Params = None) -> Any:
        """The first row (a Row) or None."""
        ...

    async def rows(self, statement: Statement, params: Params = None) -> list[Any]:
        """Every row (Rows)."""
        ...

    async def scalar(self, statement: Statement, params: Params = None) -> Any:
        """The first column of the first row, or None."""
        ...
