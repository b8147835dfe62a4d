"""The one execution policy: where database work and mail probes run. SQLite or PostgreSQL is
decided here, once; the servicer and the domain only say which kind of work they do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from mailaccounts_server.storage import Database, Limits, open_database

T = TypeVar("T")


class ExecutionPolicy:
    """Database work on the event loop (psycopg's asyncio pool for PostgreSQL; SQLite reads
    and writes inline, filtered scans on scan threads) and blocking mail probes on a pool of
    their own, one thread per allowed test, so a hung mail server never holds the loop."""

    def __init__(self, db: Database, *, probe_threads: int) -> None:
        self.db = db
        self._probes = ThreadPoolExecutor(probe_threads, thread_name_prefix="probe")

    @classmethod
    async def open(
        cls, database_url: str, *, limits: Limits, probe_threads: int
    ) -> ExecutionPolicy:
        """StorageUnavailable when the database cannot be reached now."""
        db = await open_database(database_url, limits=limits)
        return cls(db, probe_threads=probe_threads)

    @property
    def is_sqlite(self) -> bool:
        return self.db.is_sqlite

    def read(self) -> AbstractAsyncContextManager[Any]:
        """Short reads: a primary-key get, an unfiltered page."""
        return self.db.read()  # type: ignore[no-any-return]

    def write(self) -> AbstractAsyncContextManager[Any]:
        """One write transaction."""
        return self.db.write()  # type: ignore[no-any-return]

    def scan(self) -> AbstractAsyncContextManager[Any]:
        """Reads that may walk an owner's rows (filtered lists, tenant-wide lists)."""
        return self.db.scan()  # type: ignore[no-any-return]

    async def probe(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Blocking mail-server work, off the loop."""
        return await asyncio.get_running_loop().run_in_executor(self._probes, fn, *args)

    async def close(self) -> None:
        """Probes still running were cut by the prober's abort; then the database closes."""
        self._probes.shutdown(wait=False, cancel_futures=True)
        await self.db.close()
