"""Value types of the mail-server adapter layer (no gRPC or protobuf types here).

``Protocol`` and ``Encryption`` live in :mod:`mailaccounts_server.domain.enums` and are
re-exported here so callers of the mail layer need a single import.
"""

from __future__ import annotations

import dataclasses
import enum

from mailaccounts_server.domain.enums import Encryption, Protocol

__all__ = [
    "Encryption",
    "ErrorCode",
    "Folder",
    "FolderKind",
    "ProbeError",
    "ProbeResult",
    "ProbeTarget",
    "Protocol",
]


class ErrorCode(enum.Enum):
    """Why a connection test failed."""

    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    TIMEOUT = "timeout"
    TLS_FAILURE = "tls_failure"
    AUTH_FAILURE = "auth_failure"
    PROTOCOL_ERROR = "protocol_error"
    ADDRESS_BLOCKED = "address_blocked"


class FolderKind(enum.Enum):
    """Role of a mailbox, from RFC 6154 special-use flags or well-known names."""

    INBOX = "inbox"
    SENT = "sent"
    DRAFTS = "drafts"
    TRASH = "trash"
    JUNK = "junk"
    ARCHIVE = "archive"
    ALL = "all"
    FLAGGED = "flagged"
    OTHER = "other"


@dataclasses.dataclass(frozen=True)
class ProbeTarget:
    """Everything needed to test one mail account; ``timeout`` (seconds) covers the whole probe."""

    host: str
    port: int
    protocol: Protocol
    encryption: Encryption
    username: str
    password: str = dataclasses.field(repr=False)
    timeout: float = 10.0


@dataclasses.dataclass(frozen=True)
class Folder:
    """One mailbox as reported by an IMAP server.

    ``name`` is the full (decoded) path, ``display_name`` its last segment.
    """

    name: str
    display_name: str
    kind: FolderKind
    selectable: bool


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """Outcome of a connection test; ``error_code`` is ``None`` exactly when ``success``.

    ``folders`` holds at most ``limits.MAX_FOLDERS`` entries. ``folders_total`` is the number
    of folders the server listed when its whole LIST reply was read (else ``None``), and
    ``folders_truncated`` says that ``folders`` is not the complete list.
    """

    success: bool
    message: str
    error_code: ErrorCode | None = None
    folders: list[Folder] = dataclasses.field(default_factory=list)
    message_count: int = 0
    mailbox_size_bytes: int = 0
    folders_total: int | None = None
    folders_truncated: bool = False


class ProbeError(Exception):
    """A classified probe failure; ``message`` is safe to show to the account owner."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
