"""The calls a server is serving, so that shutdown lets them finish instead of cutting them."""

from __future__ import annotations

import asyncio


class CallTracker:
    """Counts the calls in their handlers. After `refuse()` new calls are turned away with
    UNAVAILABLE (retryable, unlike the CANCELLED that grpc's stop gives them); after `cut()`
    the ones still running end with UNAVAILABLE too. Event-loop only, so no locks."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.refusing = False
        self.cutting = False

    def enter(self) -> asyncio.Task[object] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    def leave(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self._tasks.discard(task)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def refuse(self) -> None:
        self.refusing = True

    async def wait_idle(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for every call to finish; True when none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while self._tasks and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self._tasks

    def cut(self) -> None:
        """Ends the calls still running (their handlers answer UNAVAILABLE)."""
        self.cutting = True
        for task in list(self._tasks):
            task.cancel()
