"""POP3 probe built on ``poplib``.

Same approach as the IMAP probe: the socket goes to the resolved address, ``host`` stays the
configured host name so implicit TLS and STLS verify the certificate against it.
"""

from __future__ import annotations

import logging
import poplib
import ssl

from mailaccounts_server.mail.connection import FixedAddressSocket, WatchedContext
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.types import Encryption, ErrorCode, ProbeError, ProbeTarget

_LOG = logging.getLogger(__name__)


class _POP3(FixedAddressSocket, poplib.POP3):
    """``poplib.POP3`` whose socket goes to a fixed address; ``host`` stays the host name."""

    def __init__(
        self,
        hostname: str,
        address: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        deadline: Deadline,
    ) -> None:
        self._use_address(address, tls_context, deadline)
        super().__init__(hostname, port, timeout=deadline.remaining())


def _server_text(exc: poplib.error_proto) -> str:
    """The server's reply carried by a poplib error, as text."""
    arg = exc.args[0] if exc.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.removeprefix("-ERR").strip()


def _close(client: poplib.POP3, deadline: Deadline) -> None:
    """Say QUIT if there is time left, then close the connection."""
    try:
        budget = deadline.goodbye_budget()
        if budget is None:
            raise TimeoutError("no time left to quit")
        client.sock.settimeout(budget)
        client.quit()
    except Exception:
        try:
            client.close()
        except Exception:
            pass


def _start_tls(client: poplib.POP3, context: ssl.SSLContext, deadline: Deadline) -> None:
    deadline.apply("negotiating STLS", client.sock)
    try:
        capabilities = client.capa()
    except poplib.error_proto:
        capabilities = {}
    if "STLS" not in capabilities:
        raise ProbeError(
            ErrorCode.TLS_FAILURE,
            "Server does not offer STLS; refusing to send credentials unencrypted",
        )
    try:
        client.stls(WatchedContext(context, deadline).as_context())
    except poplib.error_proto as exc:
        raise ProbeError(ErrorCode.TLS_FAILURE, f"STLS failed: {_server_text(exc)}") from exc


def probe_pop3(
    target: ProbeTarget,
    address: str,
    tls_context: ssl.SSLContext,
    deadline: Deadline,
) -> tuple[int, int]:
    """Connect, log in and return ``(message_count, mailbox_size_bytes)`` from STAT."""
    implicit = tls_context if target.encryption is Encryption.TLS else None
    try:
        client = _POP3(target.host, address, target.port, implicit, deadline)
    except poplib.error_proto as exc:
        raise ProbeError(
            ErrorCode.PROTOCOL_ERROR, f"Unexpected POP3 greeting: {_server_text(exc)}"
        ) from exc
    try:
        if target.encryption is Encryption.STARTTLS:
            _start_tls(client, tls_context, deadline)
        deadline.apply("logging in", client.sock)
        try:
            client.user(target.username)
            client.pass_(target.password)
        except poplib.error_proto as exc:
            detail = _server_text(exc)
            raise ProbeError(ErrorCode.AUTH_FAILURE, f"Authentication failed: {detail}") from exc
        deadline.apply("reading mailbox statistics", client.sock)
        try:
            count, size = client.stat()
        except (poplib.error_proto, ValueError) as exc:
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"STAT failed: {exc}") from exc
        _LOG.debug("POP3 probe of %s:%d: %d messages", target.host, target.port, count)
        return count, size
    except poplib.error_proto as exc:
        raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"POP3 protocol error: {exc}") from exc
    finally:
        _close(client, deadline)
