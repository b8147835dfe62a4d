"""One overall time budget for a probe (DNS, connect, TLS, login, listing together).

Before every blocking step the caller names the step and applies the remaining time to the
socket (``settimeout``), so a silent server times out at the limit. A watchdog timer shuts the
attached socket down shortly after the limit as a backstop against servers that drip bytes
slowly enough to keep every single read under its timeout.

``abort()`` (used when the server shuts down) cuts the attached socket at once, wakes a pending
DNS wait and makes every later step fail with :data:`ABORT_MESSAGE`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

from mailaccounts_server.mail.types import ErrorCode, ProbeError

_LOG = logging.getLogger(__name__)

# How long after the limit the watchdog forcibly shuts the socket down.
_WATCHDOG_GRACE = 0.5

ABORT_MESSAGE = "aborted: server shutting down"


class Deadline:
    """Tracks the remaining budget, the current step, and the socket in use."""

    def __init__(self, limit: float) -> None:
        if limit <= 0:
            raise ValueError("timeout must be positive")
        self.limit = limit
        self.step = "starting"
        self._expires_at = time.monotonic() + limit
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._fired = False
        self._aborted = False
        self._wakeups: list[threading.Event] = []
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        """Seconds left (may be zero or negative once expired)."""
        return self._expires_at - time.monotonic()

    def begin(self, step: str) -> float:
        """Start ``step``; return the remaining budget or raise a TIMEOUT ProbeError.

        After :meth:`abort` every step fails at once with the abort error instead.
        """
        if self._aborted:
            raise self.abort_error()
        if self._fired:  # report the step the watchdog interrupted
            raise self.timeout_error()
        self.step = step
        left = self.remaining()
        if left <= 0:
            raise self.timeout_error()
        return left

    def goodbye_budget(self) -> float | None:
        """Timeout for a polite LOGOUT/QUIT (at most 1 s, never past the limit), or None."""
        left = min(self.remaining(), 1.0)
        return left if left > 0.05 and not (self._fired or self._aborted) else None

    def timeout_error(self) -> ProbeError:
        """The error reported when the budget runs out during the current step."""
        return ProbeError(ErrorCode.TIMEOUT, f"Timed out after {self.limit:g}s while {self.step}")

    @staticmethod
    def abort_error() -> ProbeError:
        """The error reported for a probe cut by :meth:`abort`."""
        return ProbeError(ErrorCode.CONNECTION_REFUSED, ABORT_MESSAGE)

    @property
    def fired(self) -> bool:
        """True once the watchdog had to shut the socket down."""
        return self._fired

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` was called."""
        return self._aborted

    def attach(self, sock: socket.socket) -> None:
        """Make ``sock`` the socket the watchdog shuts down (call again after a TLS wrap).

        After :meth:`abort` the socket is shut down right away, so a connection that was being
        opened while the abort happened cannot outlive it.
        """
        with self._lock:
            self._sock = sock
            if self._aborted:
                _cut(sock)

    def wake_on_abort(self, event: threading.Event) -> None:
        """Set ``event`` when the probe is aborted (lets a waiter without a socket return)."""
        with self._lock:
            self._wakeups.append(event)
            if self._aborted:
                event.set()

    def abort(self) -> None:
        """Cut the probe now: shut its socket down and fail every later step.

        Only ``shutdown()`` is called here: the probing thread's blocked read or connect then
        returns with an error and that thread closes the socket itself. Closing it from this
        thread could free the descriptor number while the probing thread still uses it (or
        while OpenSSL is inside a read on it).
        """
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            if self._sock is not None:
                _LOG.debug("probe aborted while %s", self.step)
                _cut(self._sock)
            wakeups = list(self._wakeups)
        for event in wakeups:
            event.set()

    def apply(self, step: str, sock: socket.socket) -> None:
        """Start ``step`` and give ``sock`` the remaining budget as its timeout."""
        sock.settimeout(self.begin(step))
        self.attach(sock)

    def __enter__(self) -> Deadline:
        self._timer = threading.Timer(max(self.remaining(), 0) + _WATCHDOG_GRACE, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._sock = None
            self._wakeups.clear()

    def _fire(self) -> None:
        with self._lock:
            sock = self._sock
            if sock is None:
                return
            self._fired = True
            _LOG.debug("probe watchdog fired while %s", self.step)
            _cut(sock)


def _cut(sock: socket.socket) -> None:
    """Shut ``sock`` down so a read, write or connect blocked on it in another thread returns."""
    try:
        # Base-class call: shut the descriptor down without touching the TLS state that the
        # probing thread may be using right now; its blocked call then returns.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
