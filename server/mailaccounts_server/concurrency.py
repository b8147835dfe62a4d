"""Runs blocking work (database, mail servers) on a thread pool from async code."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mailaccounts_server.storage.database import WouldBlock, nonblocking

T = TypeVar("T")


class ThreadRunner:
    """`await runner(fn, *args, **kwargs)` runs `fn` on this runner's own threads."""

    def __init__(self, threads: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def shutdown(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


class InlineRunner:
    """Runs the work right on the event loop: for reads that cannot block (SQLite in WAL mode
    never makes a reader wait), the thread hop costs more CPU than the read itself."""

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    def shutdown(self, *, wait: bool = True) -> None:
        """Nothing to stop."""


class InlineFirstRunner:
    """Runs SQLite writes on the event loop when the write lock is free at once, else on
    `fallback`'s threads.

    A thread hop costs a write more CPU than the write itself, and this process's writers are
    serialised anyway. Only waiting (for another process's write transaction) must stay off the
    loop: the transaction then raises WouldBlock at BEGIN, before doing anything, and the whole
    call is re-run on a thread, where it waits as usual.
    """

    def __init__(self, fallback: ThreadRunner) -> None:
        self._fallback = fallback

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        try:
            with nonblocking():
                return fn(*args, **kwargs)
        except WouldBlock:
            return await self._fallback(fn, *args, **kwargs)

    def shutdown(self, *, wait: bool = True) -> None:
        """The fallback runner is shut down by its owner."""


Runner = ThreadRunner | InlineRunner | InlineFirstRunner
