"""Caps on what one probe reads from a mail server, so a hostile server cannot exhaust memory."""

from __future__ import annotations

import logging

from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.types import ErrorCode, ProbeError

_LOG = logging.getLogger(__name__)

# Longest line (or IMAP literal) accepted; real servers stay far below (RFC 3501 advises
# clients to accept ~8 KB command lines, replies are of the same order).
MAX_LINE_BYTES = 64 * 1024
# Everything one probe may read from the server, the folder list included.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Replies kept in memory outside the folder list (IMAP untagged responses, POP3 lines): each
# costs a Python object on top of its bytes, so many tiny lines would otherwise cost more
# than MAX_RESPONSE_BYTES suggests.
MAX_KEPT_REPLIES = 10_000
# Folders returned by one probe; the rest of the LIST reply is only counted.
MAX_FOLDERS = 1_000
# UTF-8 bytes of the folder names (and display names) returned by one probe: keeps the
# TestConnection answer far below gRPC's default 4 MiB receive limit even for long names.
MAX_FOLDER_TEXT_BYTES = 1024 * 1024


class ReplyTooLarge(ProbeError):
    """The server sent more than a cap allows; the connection can no longer be used."""

    def __init__(self, reason: str, step: str) -> None:
        super().__init__(ErrorCode.PROTOCOL_ERROR, f"Reply too large while {step}: {reason}")
        self.reason = reason


class ReadBudget:
    """Counts what one probe has read; once a cap is exceeded every later read fails too."""

    def __init__(self, deadline: Deadline, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._read = 0
        self._kept = 0
        self._exceeded: str | None = None

    @property
    def exceeded(self) -> str | None:
        """Why reading stopped (a readable reason), or None while within the caps."""
        return self._exceeded

    def check(self) -> None:
        """Refuse any further read once a cap has been exceeded (the stream is out of sync)."""
        if self._exceeded is not None:
            raise ReplyTooLarge(self._exceeded, self._deadline.step)

    def allow(self, size: int) -> None:
        """Refuse a read of ``size`` bytes (an announced literal) that would exceed a cap."""
        self.check()
        if size > MAX_LINE_BYTES:
            self._trip(f"a literal of {size} bytes (at most {MAX_LINE_BYTES} accepted)")
        if self._read + size > self._max_bytes:
            self._trip(f"more than {self._max_bytes} bytes in all")

    def take_line(self, size: int) -> None:
        """Account for a line of ``size`` bytes read with a limit of ``MAX_LINE_BYTES + 1``."""
        self._read += size
        if size > MAX_LINE_BYTES:
            self._trip(f"a line longer than {MAX_LINE_BYTES} bytes")
        if self._read > self._max_bytes:
            self._trip(f"more than {self._max_bytes} bytes in all")

    def take(self, size: int) -> None:
        """Account for ``size`` bytes read after :meth:`allow` agreed to them."""
        self._read += size

    def keep(self) -> None:
        """Account for one reply held in memory beyond the folder list."""
        self._kept += 1
        if self._kept > MAX_KEPT_REPLIES:
            self._trip(f"more than {MAX_KEPT_REPLIES} replies")

    def _trip(self, reason: str) -> None:
        self._exceeded = reason
        _LOG.info("stopped reading from the mail server while %s: %s", self._deadline.step, reason)
        raise ReplyTooLarge(reason, self._deadline.step)
