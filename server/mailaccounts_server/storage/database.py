"""Connections and transactions, on the event loop: SQLite through the standard library,
PostgreSQL through asyncpg's pool. `read()`, `write()` and `scan()` are the only ways
code gets a connection; the data functions take the Tx they yield and never commit."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
from sqlalchemy import Dialect
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.pysqlite import dialect as pysqlite_dialect
from sqlalchemy.engine import make_url

from mailaccounts_server.domain.ports import UniqueViolation
from mailaccounts_server.storage.sql import Params, Statement

_LOG = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Back-off while another process holds SQLite's write lock: short first (the common holder is
# a one-row write), never long enough to matter next to the busy timeout.
_LOCKED_BACKOFF_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


class Database(Protocol):
    """Transactions on one database, whichever it is."""

    url: str
    is_sqlite: bool

    def read(self) -> Any:
        """`async with db.read() as tx`: reads that cannot wait on a lock."""
        ...

    def write(self) -> Any:
        """`async with db.write() as tx`: one transaction, committed on success."""
        ...

    def scan(self) -> Any:
        """`async with db.scan() as tx`: reads that may walk many rows (filtered lists)."""
        ...

    async def close(self) -> None: ...


async def open_database(url: str, *, pool_size: int, scan_threads: int = 2) -> Database:
    """The database behind a SQLAlchemy URL (sqlite:///FILE or postgresql+psycopg://...)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(url, pool_size=pool_size, scan_threads=scan_threads)
    if backend == "postgresql":
        db = PostgresDatabase(url, pool_size=pool_size)
        await db.open()
        return db
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


# -- SQLite ----------------------------------------------------------------------------------


class _SqliteTx:
    """A SQLite connection's cursor; calls run right here, on the event loop."""

    __slots__ = ("_cursor",)
    dialect: Dialect = pysqlite_dialect()
    integrity_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def _run(self, statement: Statement, params: Params) -> sqlite3.Cursor:
        compiled = statement.for_dialect(self.dialect)
        return self._cursor.execute(compiled.sql, compiled.args(params))

    async def execute(self, statement: Statement, params: Params = None) -> None:
        self._run(statement, params)

    async def count(self, statement: Statement, params: Params = None) -> int:
        return self._run(statement, params).rowcount

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        compiled = statement.for_dialect(self.dialect)
        self._cursor.executemany(compiled.sql, [compiled.args(r) for r in rows])

    async def first(self, statement: Statement, params: Params = None) -> Any:
        return self._run(statement, params).fetchone()

    async def rows(self, statement: Statement, params: Params = None) -> list[Any]:
        return self._run(statement, params).fetchall()

    async def scalar(self, statement: Statement, params: Params = None) -> Any:
        row = self._run(statement, params).fetchone()
        return None if row is None else row[0]


class _SqliteScanTx(_SqliteTx):
    """Statements that may walk many rows run on a scan thread: SQLite releases the GIL while
    it reads, so a large tenant's filtered list does not stall the loop."""

    __slots__ = ("_pool",)

    def __init__(self, cursor: sqlite3.Cursor, pool: ThreadPoolExecutor) -> None:
        super().__init__(cursor)
        self._pool = pool

    async def rows(self, statement: Statement, params: Params = None) -> list[Any]:
        def run() -> list[Any]:
            return self._run(statement, params).fetchall()

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    async def scalar(self, statement: Statement, params: Params = None) -> Any:
        rows = await self.rows(statement, params)
        return rows[0][0] if rows else None


class SqliteDatabase:
    """The embedded default. WAL readers never wait, so reads run on the event loop; one
    writer at a time, queued on an asyncio lock in this process, and a write whose BEGIN finds
    another process's lock waits with asyncio sleeps, never blocking the loop."""

    is_sqlite = True

    def __init__(self, url: str, *, pool_size: int, scan_threads: int = 2) -> None:
        self.url = url
        path = make_url(url).database
        if not path or path == ":memory:":
            raise ValueError("SQLite needs a file: sqlite:///path/to/file.db")
        self._path = path
        self._idle: list[sqlite3.Connection] = []
        self._keep = pool_size
        self._write_lock = asyncio.Lock()
        self._scan_pool = ThreadPoolExecutor(scan_threads, thread_name_prefix="db-scan")
        # WAL is a property of the file, set once here: switching a connection's journal mode
        # needs the exclusive lock, and a new connection made while another process writes
        # would fail on it. (Migrations at start-up usually set it already.)
        first = self._connect()
        if first.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            first.execute("PRAGMA journal_mode=WAL")
        self._idle.append(first)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are begun explicitly
            check_same_thread=False,  # a scan's statements run on a scan thread
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[sqlite3.Connection]:
        conn = self._idle.pop() if self._idle else self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown (e.g. cancelled mid-statement)
            raise
        if len(self._idle) < self._keep:
            self._idle.append(conn)
        else:
            conn.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteTx]:
        async with self._connection() as conn:
            cursor = conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                yield _SqliteTx(cursor)
            finally:
                conn.execute("ROLLBACK")

    @asynccontextmanager
    async def scan(self) -> AsyncIterator[_SqliteTx]:
        async with self._connection() as conn:
            cursor = conn.execute("BEGIN")
            try:
                yield _SqliteScanTx(cursor, self._scan_pool)
            finally:
                conn.execute("ROLLBACK")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteTx]:
        async with self._write_lock, self._connection() as conn:
            await self._begin_immediate(conn)
            try:
                yield _SqliteTx(conn.cursor())
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    async def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Takes the write lock up front (two writers then queue instead of one failing on a
        lock upgrade) without ever waiting inside SQLite: the loop stays free."""
        conn.execute("PRAGMA busy_timeout=0")
        try:
            deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
            attempt = 0
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() >= deadline:
                        raise
                await asyncio.sleep(_LOCKED_BACKOFF_S[min(attempt, len(_LOCKED_BACKOFF_S) - 1)])
                attempt += 1
        finally:
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    async def close(self) -> None:
        self._scan_pool.shutdown(wait=True, cancel_futures=True)
        while self._idle:
            self._idle.pop().close()


# -- PostgreSQL ------------------------------------------------------------------------------


def _rowcount(status: str) -> int:
    """Rows a command changed, from PostgreSQL's command tag ("UPDATE 1", "INSERT 0 1")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PostgresTx:
    """An asyncpg connection (statements are prepared once per connection and cached)."""

    __slots__ = ("_conn",)
    dialect: Dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
    integrity_error: type[Exception] = asyncpg.IntegrityConstraintViolationError

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Statement, params: Params = None) -> None:
        compiled = statement.for_dialect(self.dialect)
        await self._conn.execute(compiled.sql, *compiled.args(params))

    async def count(self, statement: Statement, params: Params = None) -> int:
        compiled = statement.for_dialect(self.dialect)
        return _rowcount(await self._conn.execute(compiled.sql, *compiled.args(params)))

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        compiled = statement.for_dialect(self.dialect)
        await self._conn.executemany(compiled.sql, [compiled.args(r) for r in rows])

    async def first(self, statement: Statement, params: Params = None) -> Any:
        compiled = statement.for_dialect(self.dialect)
        return await self._conn.fetchrow(compiled.sql, *compiled.args(params))

    async def rows(self, statement: Statement, params: Params = None) -> list[Any]:
        compiled = statement.for_dialect(self.dialect)
        return list(await self._conn.fetch(compiled.sql, *compiled.args(params)))

    async def scalar(self, statement: Statement, params: Params = None) -> Any:
        compiled = statement.for_dialect(self.dialect)
        return await self._conn.fetchval(compiled.sql, *compiled.args(params))


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """Returned to the pool without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL: a round trip on every release). The service sets no session state, takes no
    session advisory locks and listens to nothing; an open transaction is still ended."""

    def get_reset_query(self) -> str:
        return ""


class PostgresDatabase:
    """PostgreSQL through asyncpg's pool: the event loop waits on the network, no thread hops.
    Reads are single autocommit statements (under READ COMMITTED a transaction would not give
    them one snapshot anyway, and BEGIN/COMMIT would triple their round trips); writes are
    transactions. asyncpg rather than psycopg's asyncio mode: it costs less CPU per statement
    (measured, see the README's Performance section)."""

    is_sqlite = False

    def __init__(self, url: str, *, pool_size: int) -> None:
        self.url = url
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._max = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=1, max_size=self._max, timeout=30, connection_class=_Connection
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PostgresTx]:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            yield _PostgresTx(conn)

    scan = read

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PostgresTx]:
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield _PostgresTx(conn)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(unique_rule(exc.table_name)) from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def unique_rule(table: str | None) -> str:
    """Which uniqueness rule a violation broke: a CreateAccount requestId already used, or a
    second live account for an address."""
    return "request_id" if table == "idempotency_keys" else "email"
