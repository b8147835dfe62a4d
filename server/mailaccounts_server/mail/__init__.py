"""Mail-server adapter layer: IMAP/POP3 connection tests with an SSRF guard.

Domain-level only (no gRPC or protobuf imports). The entry point is :class:`MailProber`.
"""

from mailaccounts_server.mail.prober import MailProber
from mailaccounts_server.mail.types import (
    Encryption,
    ErrorCode,
    Folder,
    FolderKind,
    ProbeError,
    ProbeResult,
    ProbeTarget,
    Protocol,
)

__all__ = [
    "Encryption",
    "ErrorCode",
    "Folder",
    "FolderKind",
    "MailProber",
    "ProbeError",
    "ProbeResult",
    "ProbeTarget",
    "Protocol",
]
