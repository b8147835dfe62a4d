"""One overall time budget for a probe (DNS, connect, TLS, login, listing together).

Before every blocking step the caller names the step and applies the remaining time to the
socket (``settimeout``), so a silent server times out at the limit. A watchdog timer shuts the
attached socket down shortly after the limit as a backstop against servers that drip bytes
slowly enough to keep every single read under its timeout.
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
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        """Seconds left (may be zero or negative once expired)."""
        return self._expires_at - time.monotonic()

    def begin(self, step: str) -> float:
        """Start ``step``; return the remaining budget or raise a TIMEOUT ProbeError."""
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
        return left if left > 0.05 and not self._fired else None

    def timeout_error(self) -> ProbeError:
        """The error reported when the budget runs out during the current step."""
        return ProbeError(ErrorCode.TIMEOUT, f"Timed out after {self.limit:g}s while {self.step}")

    @property
    def fired(self) -> bool:
        """True once the watchdog had to shut the socket down."""
        return self._fired

    def attach(self, sock: socket.socket) -> None:
        """Make ``sock`` the socket the watchdog shuts down (call again after a TLS wrap)."""
        with self._lock:
            self._sock = sock

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

    def _fire(self) -> None:
        with self._lock:
            sock = self._sock
            if sock is None:
                return
            self._fired = True
            _LOG.debug("probe watchdog fired while %s", self.step)
            try:
                # Base-class call: shut the descriptor down without touching the TLS state that
                # the probing thread may be using right now; its blocked read then returns.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
