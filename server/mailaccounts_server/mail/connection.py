"""Socket and TLS plumbing shared by the IMAP and POP3 probes."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import cast

from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.types import ErrorCode, ProbeError

_LOG = logging.getLogger(__name__)


UNENCODABLE_CREDENTIALS = (
    "Authentication failed: the user name or password contains characters that cannot be sent"
)


def check_credentials(username: str, password: str) -> None:
    """Refuse credentials the protocols cannot carry, before any of it is sent.

    CR, LF and NUL would end (or inject) a command line and cannot be part of a SASL PLAIN
    credential either. The error names no character of the credentials.
    """
    if any(char in value for value in (username, password) for char in "\r\n\0"):
        raise ProbeError(ErrorCode.AUTH_FAILURE, UNENCODABLE_CREDENTIALS)


def build_tls_context(ca_file: str | None, verify_tls: bool = True) -> ssl.SSLContext:
    """Client TLS context: system CAs plus ``ca_file`` when given.

    ``verify_tls=False`` turns off certificate and host-name checks; it is a deployment-level
    switch for test installations, never a per-account option.
    """
    context = ssl.create_default_context(cafile=None)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if not verify_tls:
        _LOG.warning("TLS certificate verification is disabled for mail server probes")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class WatchedContext:
    """Stands in for an ``ssl.SSLContext`` in imaplib/poplib STARTTLS/STLS calls.

    The TLS socket is attached to the deadline *before* the handshake, so the watchdog can cut
    a handshake that a slow server stretches past the limit.
    """

    def __init__(self, context: ssl.SSLContext, deadline: Deadline) -> None:
        self._context = context
        self._deadline = deadline

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None) -> ssl.SSLSocket:
        """Wrap ``sock`` and run the handshake under the deadline's watchdog."""
        tls_sock = self._context.wrap_socket(
            sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        self._deadline.attach(tls_sock)
        tls_sock.do_handshake()
        return tls_sock

    def as_context(self) -> ssl.SSLContext:
        """This object typed as the SSLContext that imaplib/poplib expect (duck typing)."""
        return cast(ssl.SSLContext, self)


def open_socket(
    address: str,
    port: int,
    hostname: str,
    tls_context: ssl.SSLContext | None,
    deadline: Deadline,
) -> socket.socket:
    """Connect to ``address``; with a context, do the TLS handshake verifying ``hostname``.

    The socket is attached to the deadline before ``connect()``, so an abort can cut a
    connection attempt that is still waiting for the server's answer.
    """
    timeout = deadline.begin("connecting")
    # ``address`` is the IP literal the SSRF guard chose: a numeric lookup, no DNS.
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        deadline.attach(sock)
        sock.connect(sockaddr)
        deadline.begin("connecting")  # an abort during connect() may look like a success
        if tls_context is None:
            return sock
        deadline.apply("negotiating TLS", sock)
        return WatchedContext(tls_context, deadline).wrap_socket(sock, server_hostname=hostname)
    except BaseException:
        sock.close()
        raise


class FixedAddressSocket:
    """Mixin for ``imaplib.IMAP4`` and ``poplib.POP3``: their socket goes to the address the
    SSRF guard checked, while ``host`` stays the host name that TLS verifies."""

    host: str
    port: int

    def _use_address(
        self, address: str, tls_context: ssl.SSLContext | None, deadline: Deadline
    ) -> None:
        self._address = address
        self._tls_context = tls_context
        self._deadline = deadline

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = open_socket(self._address, self.port, self.host, self._tls_context, self._deadline)
        self._deadline.apply("waiting for the server greeting", sock)
        return sock
