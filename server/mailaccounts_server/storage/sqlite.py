"""The embedded default: SQLite through the standard library, on the event loop. WAL readers
never wait, so reads run inline; one writer at a time, queued on an asyncio lock in this
process; a write whose BEGIN finds another process's lock retries with asyncio sleeps."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.dialects.sqlite.pysqlite import dialect as pysqlite_dialect
from sqlalchemy.engine import make_url

from mailaccounts_server.domain.ports import StorageFull, StorageUnavailable
from mailaccounts_server.storage.database import Limits, Reachability, budget
from mailaccounts_server.storage.sql import Params, Statement

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Back-off while another process holds SQLite's write lock: short first (the common holder is
# a one-row write), never long enough to matter next to the busy timeout.
_LOCKED_BACKOFF_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
# Primary result codes (the low byte of sqlite_errorcode) that mean "cannot use the database
# now" rather than a bug: busy or locked past the timeout, cannot open, I/O error, read-only,
# not a database, no permission.
_UNAVAILABLE_CODES = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM, sqlite3.SQLITE_PROTOCOL,
}  # fmt: skip


def _mapped(exc: sqlite3.Error) -> Exception | None:
    """The storage-level error an SQLite failure stands for, or None (a bug: let it be)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL:
        return StorageFull("the database disk is full")
    if primary in _UNAVAILABLE_CODES:
        return StorageUnavailable(f"database unavailable ({exc})")
    return None


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
    """SQLite on the event loop (see the module docstring)."""

    is_sqlite = True

    def __init__(self, url: str, *, limits: Limits, scan_threads: int = 2) -> None:
        self.url = url
        self.reachability = Reachability()
        path = make_url(url).database
        if not path or path == ":memory:":
            raise ValueError("SQLite needs a file: sqlite:///path/to/file.db")
        self._path = path
        self._idle: list[sqlite3.Connection] = []
        self._keep = limits.pool_size
        self._write_lock = asyncio.Lock()
        self._scan_pool = ThreadPoolExecutor(scan_threads, thread_name_prefix="db-scan")
        # WAL is a property of the file, set once here: switching a connection's journal mode
        # needs the exclusive lock, and a new connection made while another process writes
        # would fail on it. (Migrations at start-up usually set it already.)
        try:
            first = self._connect()
            if first.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                first.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise _mapped(exc) or exc from exc
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
        """A pooled connection; SQLite failures that mean "not now" become StorageUnavailable
        or StorageFull, and are counted as an outage."""
        try:
            conn = self._idle.pop() if self._idle else self._connect()
        except sqlite3.Error as exc:
            self.reachability.lost(exc)
            raise _mapped(exc) or exc from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.close()
            mapped = _mapped(exc)
            if mapped is None:
                raise
            if isinstance(mapped, StorageUnavailable):
                self.reachability.lost(exc)
            raise mapped from exc
        except Exception:
            self._release(conn)  # a refusal by the rules: the transaction was ended cleanly
            raise
        except BaseException:
            conn.close()  # its state is unknown (e.g. cancelled mid-statement)
            raise
        self.reachability.ok()
        self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
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
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    @asynccontextmanager
    async def scan(self) -> AsyncIterator[_SqliteTx]:
        async with self._connection() as conn:
            cursor = conn.execute("BEGIN")
            try:
                yield _SqliteScanTx(cursor, self._scan_pool)
            finally:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteTx]:
        async with self._write_lock, self._connection() as conn:
            await self._begin_immediate(conn)
            try:
                yield _SqliteTx(conn.cursor())
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a full disk) can leave the transaction open: end it.
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    async def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Takes the write lock up front (two writers then queue instead of one failing on a
        lock upgrade) without ever waiting inside SQLite: the loop stays free. Gives up after
        the busy timeout, or sooner when the call must be answered."""
        conn.execute("PRAGMA busy_timeout=0")
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + budget(SQLITE_BUSY_TIMEOUT_MS / 1000)
            attempt = 0
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if _mapped(exc) is None or loop.time() >= deadline:
                        raise
                await asyncio.sleep(_LOCKED_BACKOFF_S[min(attempt, len(_LOCKED_BACKOFF_S) - 1)])
                attempt += 1
        finally:
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    async def ping(self) -> bool:
        try:
            async with self.read() as tx:
                tx._cursor.execute("SELECT 1")
        except (StorageUnavailable, StorageFull):
            return False
        return True

    async def close(self) -> None:
        self._scan_pool.shutdown(wait=True, cancel_futures=True)
        while self._idle:
            self._idle.pop().close()
