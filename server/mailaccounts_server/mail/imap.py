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
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from imapclient import IMAPClient

from mailaccounts_server.mail.connection import (
    UNENCODABLE_CREDENTIALS,
    FixedAddressSocket,
    WatchedContext,
    check_credentials,
)
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.limits import MAX_LINE_BYTES, ReadBudget
from mailaccounts_server.mail.listing import FolderCollector, Listing, list_folders
from mailaccounts_server.mail.types import Encryption, ErrorCode, ProbeError, ProbeTarget

_LOG = logging.getLogger(__name__)

NOT_IMAP = "The server did not answer like an IMAP server"
IMAP_REFUSED = "The IMAP server refused the connection (it greeted with BYE)"


class _IMAP4(FixedAddressSocket, imaplib.IMAP4):
    """``imaplib.IMAP4`` whose socket goes to a fixed address; ``host`` stays the host name.

    Every read goes through the probe's :class:`ReadBudget`, and while a LIST command runs its
    entries go to a :class:`FolderCollector` instead of piling up in ``untagged_responses``.
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
        self.listing: FolderCollector | None = None
        super().__init__(hostname, port, timeout=deadline.remaining())

    def readline(self) -> bytes:
        """One line of at most ``MAX_LINE_BYTES`` (imaplib's own limit is 1 MB)."""
        self._budget.check()
        line = self._reader().readline(MAX_LINE_BYTES + 1)
        self._budget.take_line(len(line))
        return line

    def read(self, size: int) -> bytes:
        """A literal, refused before reading when the server announces too many bytes."""
        self._budget.allow(size)
        data = self._reader().read(size)
        self._budget.take(len(data))
        return data

    def _reader(self) -> BinaryIO:
        return cast(BinaryIO, self.file)

    def _append_untagged(self, typ: str, dat: Any) -> None:
        if typ == "LIST" and self.listing is not None:
            self.listing.feed(dat)
            return
        self._budget.keep()
        super()._append_untagged(typ, dat)  # type: ignore[misc]  # private, not in typeshed


class _IMAPClient(IMAPClient):  # type: ignore[misc]  # imapclient ships no type hints
    """``IMAPClient`` that connects through :class:`_IMAP4` and honours a :class:`Deadline`."""

    def __init__(
        self,
        hostname: str,
        address: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        deadline: Deadline,
        budget: ReadBudget,
    ) -> None:
        self._address = address
        self._implicit_context = tls_context
        self._deadline = deadline
        self._budget = budget
        super().__init__(hostname, port, ssl=tls_context is not None, ssl_context=tls_context)
        # imapclient switches imaplib's trace on (every line to a DEBUG logger); a hostile
        # server may echo the credentials in any reply after they were sent.
        self._imap.debug = 0

    def _create_IMAP4(self) -> imaplib.IMAP4:
        return _IMAP4(
            self.host,
            self._address,
            self.port,
            self._implicit_context,
            self._deadline,
            self._budget,
        )

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


def _greeting_error(exc: imaplib.IMAP4.error) -> ProbeError:
    """A fixed message: what a non-IMAP service says (SSH, HTTP, Redis ...) is never quoted."""
    said = exc.args[0] if exc.args else b""
    if isinstance(said, bytes) and said[:6].upper() == b"* BYE ":
        return ProbeError(ErrorCode.PROTOCOL_ERROR, IMAP_REFUSED)
    return ProbeError(ErrorCode.PROTOCOL_ERROR, NOT_IMAP)


def _close(client: Any, deadline: Deadline, budget: ReadBudget) -> None:
    """Log out politely if there is time left, else just drop the connection.

    imaplib is called directly: imapclient's ``logout`` logs a reply it cannot decode, and
    after the login that reply may quote the credentials. A connection that sent too much is
    dropped at once: its stream is out of step and reading on would only read more.
    """
    try:
        budget.check()
        left = deadline.goodbye_budget()
        if left is None:
            raise TimeoutError("no time left to log out")
        client.socket().settimeout(left)
        client._imap.logout()
    except Exception:
        try:
            client._imap.shutdown()
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
    UnicodeEncodeError whose text names one of its characters and its position. imaplib is
    called directly (not imapclient's login) because imapclient logs a failure reply it
    cannot decode as ASCII, and that reply may echo the credentials.
    """
    check_credentials(username, password)
    plain = not (username.isascii() and password.isascii())
    try:
        if plain:
            # Asked before the credentials go out: afterwards the server could answer anything.
            offered = _offers_plain(client)
            message = b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")
            client._imap.authenticate("PLAIN", lambda _challenge: message)
        else:
            offered = True
            client._imap.login(username, password)
    except imaplib.IMAP4.error as exc:
        detail = _server_text(exc)
        if not offered:
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
    clean: Callable[[str], str],
) -> Listing:
    """Connect, log in and list the folders; raise ProbeError or OSError/SSLError on failure.

    ``clean`` removes the credentials from folder names: after the login a hostile server
    could name a folder after the password it was sent.
    """
    implicit = tls_context if target.encryption is Encryption.TLS else None
    budget = ReadBudget(deadline)
    try:
        client = _IMAPClient(target.host, address, target.port, implicit, deadline, budget)
    except imaplib.IMAP4.error as exc:
        raise _greeting_error(exc) from None
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
            listing = list_folders(client._imap, clean)
        except imaplib.IMAP4.error as exc:
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR, f"Listing folders failed: {_server_text(exc)}"
            ) from exc
        _LOG.debug(
            "IMAP probe of %r:%d listed %d folders (total %s)",
            target.host,
            target.port,
            len(listing.folders),
            listing.total,
        )
        return listing
    except imaplib.IMAP4.error as exc:
        raise ProbeError(
            ErrorCode.PROTOCOL_ERROR, f"IMAP protocol error: {_server_text(exc)}"
        ) from exc
    finally:
        _close(client, deadline, budget)
