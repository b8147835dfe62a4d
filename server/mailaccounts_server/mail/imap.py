"""IMAP probe built on ``imapclient``.

The connection goes to the already resolved (and SSRF-checked) address while the TLS
certificate is verified against the host name the account was configured with: the
``imaplib`` object keeps the host name as ``host`` (used as ``server_hostname`` for implicit
TLS and STARTTLS) and only the socket is opened to the address.
"""

from __future__ import annotations

import ast
import imaplib
import logging
import re
import ssl
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailaccounts_server.mail.connection import (
    UNENCODABLE_CREDENTIALS,
    FixedAddressSocket,
    WatchedContext,
    check_credentials,
)
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.folders import map_folders
from mailaccounts_server.mail.types import Encryption, ErrorCode, Folder, ProbeError, ProbeTarget

_LOG = logging.getLogger(__name__)


class _IMAP4(FixedAddressSocket, imaplib.IMAP4):
    """``imaplib.IMAP4`` whose socket goes to a fixed address; ``host`` stays the host name."""

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


class _IMAPClient(IMAPClient):  # type: ignore[misc]  # imapclient ships no type hints
    """``IMAPClient`` that connects through :class:`_IMAP4` and honours a :class:`Deadline`."""

    def __init__(
        self,
        hostname: str,
        address: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        deadline: Deadline,
    ) -> None:
        self._address = address
        self._implicit_context = tls_context
        self._deadline = deadline
        super().__init__(hostname, port, ssl=tls_context is not None, ssl_context=tls_context)

    def _create_IMAP4(self) -> imaplib.IMAP4:
        return _IMAP4(self.host, self._address, self.port, self._implicit_context, self._deadline)

    def _set_read_timeout(self) -> None:
        self._deadline.apply("waiting for the server greeting", self.socket())


def _server_text(exc: BaseException) -> str:
    """The server's words in an imaplib/imapclient error, without the ``b'...'`` wrapping."""
    text = str(exc).removeprefix("login failed: ").removeprefix("authenticate failed: ")
    if re.fullmatch(r"b(['\"]).*\1", text, flags=re.DOTALL):
        try:  # imaplib puts the reply's bytes into the error: undo the repr
            raw = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text[2:-1]
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace")
        return text[2:-1]
    return text


def _close(client: Any, deadline: Deadline) -> None:
    """Log out politely if there is time left, else just drop the connection."""
    try:
        budget = deadline.goodbye_budget()
        if budget is None:
            raise TimeoutError("no time left to log out")
        client.socket().settimeout(budget)
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            pass


def _offers_plain(client: Any) -> bool:
    """True if the server announces AUTH=PLAIN (or the capabilities cannot be read)."""
    try:
        return bool(client.has_capability("AUTH=PLAIN"))
    except Exception:
        return True


def _log_in(client: Any, username: str, password: str) -> None:
    """LOGIN for ASCII credentials, else ``AUTHENTICATE PLAIN`` with UTF-8 (RFC 4616).

    ``imaplib`` encodes LOGIN arguments as ASCII, so a non-ASCII password would fail with a
    UnicodeEncodeError whose text names one of its characters and its position.
    """
    check_credentials(username, password)
    plain = not (username.isascii() and password.isascii())
    try:
        if plain:
            client.plain_login(username, password)
        else:
            client.login(username, password)
    except LoginError as exc:
        detail = _server_text(exc)
        if plain and not _offers_plain(client):
            detail += " (non-ASCII credentials need AUTHENTICATE PLAIN, which the server "
            detail += "does not offer)"
        raise ProbeError(ErrorCode.AUTH_FAILURE, f"Authentication failed: {detail}") from None
    except UnicodeError:
        raise ProbeError(ErrorCode.AUTH_FAILURE, UNENCODABLE_CREDENTIALS) from None


def probe_imap(
    target: ProbeTarget,
    address: str,
    tls_context: ssl.SSLContext,
    deadline: Deadline,
) -> list[Folder]:
    """Connect, log in and list every folder; raise ProbeError or OSError/SSLError on failure."""
    implicit = tls_context if target.encryption is Encryption.TLS else None
    try:
        client = _IMAPClient(target.host, address, target.port, implicit, deadline)
    except imaplib.IMAP4.error as exc:
        raise ProbeError(
            ErrorCode.PROTOCOL_ERROR,
            f"Unexpected IMAP greeting from the server: {_server_text(exc)}",
        ) from exc
    try:
        if target.encryption is Encryption.STARTTLS:
            deadline.apply("negotiating STARTTLS", client.socket())
            if not client.has_capability("STARTTLS"):
                raise ProbeError(
                    ErrorCode.TLS_FAILURE,
                    "Server does not offer STARTTLS; refusing to send credentials unencrypted",
                )
            try:
                client.starttls(WatchedContext(tls_context, deadline).as_context())
            except imaplib.IMAP4.error as exc:
                raise ProbeError(
                    ErrorCode.TLS_FAILURE, f"STARTTLS failed: {_server_text(exc)}"
                ) from exc
        deadline.apply("logging in", client.socket())
        _log_in(client, target.username, target.password)
        deadline.apply("listing folders", client.socket())
        try:
            entries = client.list_folders()
        except imaplib.IMAP4.error as exc:
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR, f"Listing folders failed: {_server_text(exc)}"
            ) from exc
        folders = map_folders(entries)
        _LOG.debug("IMAP probe of %s:%d listed %d folders", target.host, target.port, len(folders))
        return folders
    except imaplib.IMAP4.error as exc:
        raise ProbeError(
            ErrorCode.PROTOCOL_ERROR, f"IMAP protocol error: {_server_text(exc)}"
        ) from exc
    finally:
        _close(client, deadline)
