"""POP3 probe built on ``poplib``.

Same approach as the IMAP probe: the socket goes to the resolved address, ``host`` stays the
configured host name so implicit TLS and STLS verify the certificate against it.
"""

from __future__ import annotations

import logging
import poplib
import ssl
from typing import cast

from mailaccounts_server.mail.connection import (
    UNENCODABLE_CREDENTIALS,
    FixedAddressSocket,
    WatchedContext,
    check_credentials,
)
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.limits import ReadBudget
from mailaccounts_server.mail.types import Encryption, ErrorCode, ProbeError, ProbeTarget

_LOG = logging.getLogger(__name__)

MAX_MESSAGE_COUNT = 2**31 - 1  # int32 message_count in the API
MAX_MAILBOX_SIZE = 2**63 - 1  # int64 mailbox_size_bytes

NOT_POP3 = "The server did not answer like a POP3 server"
POP3_REFUSED = "The POP3 server refused the connection (it greeted with -ERR)"


class _POP3(FixedAddressSocket, poplib.POP3):
    """``poplib.POP3`` whose socket goes to a fixed address; ``host`` stays the host name.

    Every line goes through the probe's :class:`ReadBudget` (poplib bounds a line, but not
    how many lines a multi-line reply such as CAPA may have).
    """

    def __init__(
        self,
        hostname: str,
        address: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        deadline: Deadline,
        budget: ReadBudget,
    ) -> None:
        self._use_address(address, tls_context, deadline)
        self._budget = budget
        try:
            super().__init__(hostname, port, timeout=deadline.remaining())
        except BaseException:
            # poplib leaves its socket open when the greeting is refused.
            self._drop()
            raise
        if not self.welcome.startswith(b"+OK"):
            self._drop()
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, NOT_POP3)

    def _getline(self) -> tuple[bytes, int]:
        self._budget.check()
        line, octets = super()._getline()  # type: ignore[misc]  # private, not in typeshed
        self._budget.take_line(octets)
        self._budget.keep()
        return cast(tuple[bytes, int], (line, octets))

    def _drop(self) -> None:
        for name in ("file", "sock"):
            closable = getattr(self, name, None)
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass


def _server_text(exc: poplib.error_proto) -> str:
    """The server's reply carried by a poplib error, as text."""
    arg = exc.args[0] if exc.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.removeprefix("-ERR").strip()


def _greeting_error(exc: poplib.error_proto) -> ProbeError:
    """A fixed message: what a non-POP3 service says (SSH, HTTP, Redis ...) is never quoted."""
    said = exc.args[0] if exc.args else b""
    if isinstance(said, bytes) and said.startswith(b"-ERR"):
        return ProbeError(ErrorCode.PROTOCOL_ERROR, POP3_REFUSED)
    return ProbeError(ErrorCode.PROTOCOL_ERROR, NOT_POP3)


def _close(client: poplib.POP3, deadline: Deadline) -> None:
    """Say QUIT if there is time left, then close the connection.

    After a reply over the read caps QUIT fails at once (the budget refuses every read) and
    the connection is just closed.
    """
    try:
        left = deadline.goodbye_budget()
        if left is None:
            raise TimeoutError("no time left to quit")
        client.sock.settimeout(left)
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


def _log_in(client: poplib.POP3, username: str, password: str) -> None:
    """USER/PASS; poplib sends them UTF-8 encoded, as RFC 6856 servers expect."""
    check_credentials(username, password)
    try:
        client.user(username)
        client.pass_(password)
    except poplib.error_proto as exc:
        detail = _server_text(exc)
        raise ProbeError(ErrorCode.AUTH_FAILURE, f"Authentication failed: {detail}") from None
    except UnicodeError:  # e.g. a lone surrogate; the error text would quote the character
        raise ProbeError(ErrorCode.AUTH_FAILURE, UNENCODABLE_CREDENTIALS) from None


def probe_pop3(
    target: ProbeTarget,
    address: str,
    tls_context: ssl.SSLContext,
    deadline: Deadline,
) -> tuple[int, int]:
    """Connect, log in and return ``(message_count, mailbox_size_bytes)`` from STAT."""
    implicit = tls_context if target.encryption is Encryption.TLS else None
    budget = ReadBudget(deadline)
    try:
        client = _POP3(target.host, address, target.port, implicit, deadline, budget)
    except poplib.error_proto as exc:
        raise _greeting_error(exc) from None
    try:
        if target.encryption is Encryption.STARTTLS:
            _start_tls(client, tls_context, deadline)
        deadline.apply("logging in", client.sock)
        _log_in(client, target.username, target.password)
        deadline.apply("reading mailbox statistics", client.sock)
        try:
            count, size = client.stat()
        except poplib.error_proto as exc:
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"STAT failed: {_server_text(exc)}") from exc
        except (ValueError, IndexError) as exc:
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, "STAT failed: malformed reply") from exc
        # A hostile server may report any number; keep within the API's int32/int64 fields.
        count = min(max(count, 0), MAX_MESSAGE_COUNT)
        size = min(max(size, 0), MAX_MAILBOX_SIZE)
        _LOG.debug("POP3 probe of %r:%d: %d messages", target.host, target.port, count)
        return count, size
    except poplib.error_proto as exc:
        raise ProbeError(
            ErrorCode.PROTOCOL_ERROR, f"POP3 protocol error: {_server_text(exc)}"
        ) from exc
    finally:
        _close(client, deadline)
