"""A bounded pool of threads for blocking host-name lookups (``getaddrinfo`` cannot time out)."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_LOG = logging.getLogger(__name__)

DEFAULT_LOOKUP_THREADS = 8
# An idle thread ends after this long, so a prober that is no longer used holds no threads.
_IDLE_SECONDS = 30.0

_Job = tuple["Future[Any]", Callable[[], Any]]


class LookupPool:
    """Runs lookups on at most ``size`` daemon threads; callers wait with their own timeout.

    A lookup that outlives its caller's budget keeps its thread until the resolver returns,
    but never adds one: when every thread is busy new lookups queue, and a caller that gives
    up takes its lookup out of the queue. Daemon threads (unlike ThreadPoolExecutor's) do not
    hold up interpreter exit behind a resolver that never answers.
    """

    def __init__(self, size: int = DEFAULT_LOOKUP_THREADS) -> None:
        if size < 1:
            raise ValueError("a lookup pool needs at least one thread")
        self.size = size
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._threads = 0
        self._idle = 0

    @property
    def threads(self) -> int:
        """Threads currently alive in the pool (at most ``size``)."""
        with self._cond:
            return self._threads

    def submit(self, work: Callable[[], Any]) -> Future[Any]:
        """Queue ``work``; its outcome arrives through the returned future."""
        future: Future[Any] = Future()
        with self._cond:
            self._queue.append((future, work))
            if len(self._queue) > self._idle and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._serve, name="probe-dns", daemon=True).start()
            self._cond.notify()
        return future

    def withdraw(self, future: Future[Any]) -> None:
        """Give up on ``future``: drop it from the queue if it has not started."""
        if not future.cancel():
            return  # running: its thread is freed when the resolver returns
        with self._cond:
            for job in self._queue:
                if job[0] is future:
                    self._queue.remove(job)
                    break

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                has_work = self._cond.wait_for(lambda: self._queue, timeout=_IDLE_SECONDS)
                self._idle -= 1
                if not has_work:
                    self._threads -= 1
                    return
                future, work = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as exc:  # handed over to the waiting caller
                future.set_exception(exc)
