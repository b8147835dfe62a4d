"""Engine and session factory: built once per process, one session per request."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from mailaccounts_server.storage.sql import Tx

_LOG = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 10_000
_NONBLOCKING: contextvars.ContextVar[bool] = contextvars.ContextVar("db_nonblocking", default=False)


class WouldBlock(Exception):
    """A non-blocking SQLite write found the write lock taken; nothing was done."""


@contextmanager
def nonblocking() -> Iterator[None]:
    """Within this block, SQLite write transactions that would have to wait for the write lock
    raise WouldBlock at BEGIN instead of waiting (see concurrency.InlineFirstRunner)."""
    token = _NONBLOCKING.set(True)
    try:
        yield
    finally:
        _NONBLOCKING.reset(token)


class Database:
    """Owns the engine and its pool; `transaction()` is the only way code gets a connection."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
            kwargs["pool_size"] = pool_size
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._dialect = self.engine.dialect
        dbapi = self._dialect.dbapi
        assert dbapi is not None
        self._integrity_error: type[Exception] = dbapi.IntegrityError
        self._operational_error: type[Exception] = dbapi.OperationalError
        # SQLite has one writer at a time. Queueing this process's writers on a lock hands the
        # database over as soon as it is free; left to SQLite's busy handler they sleep in
        # back-off steps of up to 100 ms and tail latency explodes under concurrent writes.
        self._sqlite_write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """One pooled connection in one transaction: committed on success, rolled back on
        error, returned to the pool either way."""
        lock = self._sqlite_write_lock if write else None
        nowait = lock is not None and _NONBLOCKING.get()
        if lock is not None and not lock.acquire(blocking=not nowait):
            raise WouldBlock
        try:
            with self._connection(write, nowait=nowait) as tx:
                yield tx
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def _connection(self, write: bool, *, nowait: bool = False) -> Iterator[Tx]:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                if self.is_sqlite:
                    # Writers take the write lock up front so two of them queue on the busy
                    # timeout instead of one failing when it upgrades a read lock.
                    self._begin_sqlite(cursor, write, nowait)
                try:
                    yield Tx(cursor, self._dialect, self._integrity_error)
                except BaseException:
                    raw.rollback()
                    raise
                raw.commit()
            finally:
                cursor.close()
        finally:
            raw.close()

    def _begin_sqlite(self, cursor: Any, write: bool, nowait: bool) -> None:
        if not nowait:
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            return
        # Another process (a second server, the purge command) may hold the write lock.
        cursor.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except self._operational_error as exc:
            raise WouldBlock from exc
        finally:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    """WAL so readers never block the writer, a busy timeout so writers wait instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun explicitly (pysqlite's implicit BEGIN is deferred and would
        # let two writers deadlock on a lock upgrade).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    # SQLAlchemy-managed connections (migrations) then need their BEGIN emitted explicitly.
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")
