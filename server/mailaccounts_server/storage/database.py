"""Connections and transactions, on the event loop: SQLite (sqlite.py) or PostgreSQL through
asyncpg (postgres.py). `read()`, `write()` and `scan()` are the only ways code gets a
connection; the data functions take the Tx they yield and never commit. Losing the database
is StorageUnavailable (UNAVAILABLE to callers), logged once per outage by `Reachability`."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from mailaccounts_server.domain.ports import call_deadline

_LOG = logging.getLogger(__name__)
# Time kept back from the caller's deadline so that an UNAVAILABLE answer still reaches them.
_DEADLINE_MARGIN_S = 0.2


@dataclass(frozen=True)
class Limits:
    """How long database work may wait, whatever the caller's deadline allows."""

    connect_timeout: float = 5.0
    statement_timeout: float = 10.0
    pool_size: int = 10


def budget(limit: float) -> float:
    """Seconds the current database step may take: `limit`, or less when the call being
    served must be answered sooner."""
    deadline = call_deadline.get()
    if deadline is None:
        return limit
    left = deadline - asyncio.get_running_loop().time() - _DEADLINE_MARGIN_S
    return max(0.01, min(limit, left))


class Reachability:
    """Whether the database answers, with one log line per transition (not one per call)."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self._failed = 0

    def ok(self) -> None:
        if self.down_since is None:
            return
        _LOG.warning(
            "database reachable again after %.1fs; %d database operations failed meanwhile",
            time.monotonic() - self.down_since, self._failed,
        )  # fmt: skip
        self.down_since, self._failed = None, 0

    def lost(self, exc: BaseException) -> None:
        self._failed += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            _LOG.warning(
                "database unreachable (%s: %s); calls answer UNAVAILABLE until it is back",
                type(exc).__name__, str(exc)[:200],
            )  # fmt: skip

    def down_for(self) -> float:
        """Seconds since the database was last reachable (0 while it is)."""
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since


class Database(Protocol):
    """Transactions on one database, whichever it is."""

    url: str
    is_sqlite: bool
    reachability: Reachability

    def read(self) -> Any:
        """`async with db.read() as tx`: reads that cannot wait on a lock."""
        ...

    def write(self) -> Any:
        """`async with db.write() as tx`: one transaction, committed on success."""
        ...

    def scan(self) -> Any:
        """`async with db.scan() as tx`: reads that may walk many rows (filtered lists)."""
        ...

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now (health checks during outages)."""
        ...

    async def close(self) -> None: ...
