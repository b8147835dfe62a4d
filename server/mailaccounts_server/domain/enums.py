"""Enumerations shared by the domain, storage and mail layers (no gRPC types here)."""

import enum


class Protocol(enum.Enum):
    """Mail access protocol of an account."""

    IMAP = "imap"
    POP3 = "pop3"


class Encryption(enum.Enum):
    """Transport security used to reach the mail server."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"
