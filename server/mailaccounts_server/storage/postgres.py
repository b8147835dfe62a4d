"""PostgreSQL through asyncpg's pool, on the event loop. Reads are single autocommit
statements (under READ COMMITTED a transaction would not give them one snapshot anyway, and
BEGIN/COMMIT would triple their round trips); writes are transactions. asyncpg rather than
psycopg's asyncio mode: it costs less CPU per statement (measured; README, Performance).

Faults: a lost or refused connection is StorageUnavailable. A read is retried once on a fresh
connection; so is a write whose BEGIN failed (nothing reached the database). A write that fails
later was rolled back by the server (UNAVAILABLE, nothing changed); one whose COMMIT got no
answer is UNAVAILABLE with an unknown outcome, never retried blindly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
from asyncpg import exceptions as pg_errors
from sqlalchemy import Dialect
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url

from mailaccounts_server.domain.ports import StorageFull, StorageUnavailable, UniqueViolation
from mailaccounts_server.storage.database import Limits, Reachability, budget
from mailaccounts_server.storage.sql import Params, Statement

_LOG = logging.getLogger(__name__)
# What a restart, a failover, a dropped network or a hung server looks like from here.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pg_errors.PostgresConnectionError,
    pg_errors.InterfaceError,
    pg_errors.OperatorInterventionError,  # admin/crash shutdown, cannot connect now, cancelled
    pg_errors.InsufficientResourcesError,  # too many connections, out of memory
    pg_errors.InternalClientError,  # a connection left mid-operation by a cancelled call
    OSError,
    TimeoutError,
)


def _rowcount(status: str) -> int:
    """Rows a command changed, from PostgreSQL's command tag ("UPDATE 1", "INSERT 0 1")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def unique_rule(table: str | None) -> str:
    """Which uniqueness rule a violation broke: a CreateAccount requestId already used, or a
    second live account for an address."""
    return "request_id" if table == "idempotency_keys" else "email"


def _storage_error(exc: BaseException, *, outcome_unknown: bool = False) -> Exception:
    if isinstance(exc, pg_errors.DiskFullError):
        return StorageFull("the database disk is full")
    return StorageUnavailable(
        f"database unavailable ({type(exc).__name__})", outcome_unknown=outcome_unknown
    )


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """Returned to the pool without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL: a round trip on every release). The service sets no session state, takes no
    session advisory locks and listens to nothing; an open transaction is still ended."""

    def get_reset_query(self) -> str:
        return ""


class _PostgresTx:
    """An asyncpg connection; every statement waits at most the statement budget."""

    __slots__ = ("_db", "conn", "_retry")
    dialect: Dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
    integrity_error: type[Exception] = asyncpg.IntegrityConstraintViolationError

    def __init__(self, db: PostgresDatabase, conn: Any, *, retry: bool) -> None:
        self._db = db
        self.conn = conn
        self._retry = retry  # reads: once, on a fresh connection

    async def _call(self, method: str, statement: Statement, params: Params) -> Any:
        compiled = statement.for_dialect(self.dialect)
        args = compiled.args(params)
        timeout = budget(self._db.limits.statement_timeout)
        try:
            return await getattr(self.conn, method)(compiled.sql, *args, timeout=timeout)
        except _CONNECTION_ERRORS as exc:
            if not self._retry:
                raise
            self._retry = False
            self.conn = await self._db.replace(self.conn, exc)
            timeout = budget(self._db.limits.statement_timeout)
            return await getattr(self.conn, method)(compiled.sql, *args, timeout=timeout)

    async def execute(self, statement: Statement, params: Params = None) -> None:
        await self._call("execute", statement, params)

    async def count(self, statement: Statement, params: Params = None) -> int:
        return _rowcount(await self._call("execute", statement, params))

    async def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        compiled = statement.for_dialect(self.dialect)
        await self.conn.executemany(compiled.sql, [compiled.args(r) for r in rows])

    async def first(self, statement: Statement, params: Params = None) -> Any:
        return await self._call("fetchrow", statement, params)

    async def rows(self, statement: Statement, params: Params = None) -> list[Any]:
        return list(await self._call("fetch", statement, params))

    async def scalar(self, statement: Statement, params: Params = None) -> Any:
        return await self._call("fetchval", statement, params)


class PostgresDatabase:
    """PostgreSQL on the event loop (see the module docstring)."""

    is_sqlite = False

    def __init__(self, url: str, *, limits: Limits) -> None:
        self.url = url
        self.limits = limits
        self.reachability = Reachability()
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Connects the pool (one connection now); StorageUnavailable when that fails."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                # No floor: during an outage asyncpg would keep reconnecting to restore it and
                # log a traceback each time; connections are opened on demand instead.
                min_size=0,
                max_size=self.limits.pool_size,
                timeout=self.limits.connect_timeout,
                connection_class=_Connection,
                # A server-side backstop for the client-side budgets: no statement outlives it.
                server_settings={
                    "statement_timeout": str(int(self.limits.statement_timeout * 1000))
                },
            )
            async with self._pool.acquire(timeout=self.limits.connect_timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=self.limits.connect_timeout)
        except _CONNECTION_ERRORS as exc:
            if self._pool is not None:
                self._pool.terminate()
            raise _storage_error(exc) from exc

    async def _acquire(self) -> Any:
        assert self._pool is not None
        try:
            return await self._pool.acquire(timeout=budget(self.limits.connect_timeout))
        except _CONNECTION_ERRORS as exc:
            self.reachability.lost(exc)
            raise _storage_error(exc) from exc

    async def replace(self, conn: Any, exc: BaseException) -> Any:
        """Drops a broken connection, marks its idle siblings stale (after a restart they are
        all dead), and gives a fresh one; StorageUnavailable when none can be had."""
        assert self._pool is not None
        _LOG.debug("retrying on a fresh connection after %s", type(exc).__name__)
        await self._release(conn, broken=True)
        await self._pool.expire_connections()
        return await self._acquire()

    async def _release(self, conn: Any, *, broken: bool) -> None:
        assert self._pool is not None
        # asyncpg may have taken a connection that died back already: then both refuse.
        with suppress(Exception):
            if broken:
                conn.terminate()
        with suppress(Exception):
            await self._pool.release(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PostgresTx]:
        tx = _PostgresTx(self, await self._acquire(), retry=True)
        try:
            yield tx
        except _CONNECTION_ERRORS as exc:
            await self._release(tx.conn, broken=True)
            self.reachability.lost(exc)
            raise _storage_error(exc) from exc
        except Exception:
            await self._release(tx.conn, broken=False)
            raise
        except BaseException:
            # Cancelled (the caller left) possibly mid-statement: the connection's state is
            # unknown, so it is closed rather than handed to the next call.
            await self._release(tx.conn, broken=True)
            raise
        await self._release(tx.conn, broken=False)
        self.reachability.ok()

    scan = read

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PostgresTx]:
        conn, transaction = await self._begin()
        tx = _PostgresTx(self, conn, retry=False)
        try:
            yield tx
        except _CONNECTION_ERRORS as exc:
            # The connection died before COMMIT: the server rolled the transaction back.
            await self._release(conn, broken=True)
            self.reachability.lost(exc)
            raise _storage_error(exc) from exc
        except Exception as exc:
            broken = False
            try:
                await asyncio.wait_for(transaction.rollback(), budget(1.0))
            except BaseException:
                broken = True
            await self._release(conn, broken=broken)
            if isinstance(exc, asyncpg.UniqueViolationError):
                raise UniqueViolation(unique_rule(exc.table_name)) from exc
            if isinstance(exc, pg_errors.DiskFullError):
                raise StorageFull("the database disk is full") from exc
            raise
        except BaseException:
            # Cancelled mid-transaction: closing the connection makes the server roll back.
            await self._release(conn, broken=True)
            raise
        try:
            await asyncio.wait_for(transaction.commit(), budget(self.limits.statement_timeout))
        except asyncpg.UniqueViolationError as exc:  # a deferred check: nothing was written
            await self._release(conn, broken=False)
            raise UniqueViolation(unique_rule(exc.table_name)) from exc
        except _CONNECTION_ERRORS as exc:
            await self._release(conn, broken=True)
            self.reachability.lost(exc)
            raise _storage_error(exc, outcome_unknown=True) from exc
        await self._release(conn, broken=False)
        self.reachability.ok()

    async def _begin(self) -> tuple[Any, Any]:
        """A connection inside BEGIN; a dead pooled connection is replaced once (nothing of
        the transaction has reached the database yet)."""
        conn = await self._acquire()
        for attempt in (1, 2):
            transaction = conn.transaction()
            try:
                await asyncio.wait_for(transaction.start(), budget(self.limits.statement_timeout))
                return conn, transaction
            except _CONNECTION_ERRORS as exc:
                if attempt == 2:
                    await self._release(conn, broken=True)
                    self.reachability.lost(exc)
                    raise _storage_error(exc) from exc
                conn = await self.replace(conn, exc)
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        try:
            async with self.read() as tx:
                await tx.conn.fetchval("SELECT 1", timeout=budget(1.0))
        except (StorageUnavailable, StorageFull):
            return False
        return True

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5.0)
            except _CONNECTION_ERRORS:
                self._pool.terminate()
