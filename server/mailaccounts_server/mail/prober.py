"""Blocking connection test of one mail account (the gRPC layer runs it in a thread pool).

``MailProber.probe`` never raises for mail-server problems: DNS, network, TLS, login and
protocol failures all come back as an unsuccessful :class:`ProbeResult` with an error code and
a message that is safe to show (no form of the password, see :mod:`.redaction`). One deadline
covers DNS, connect, TLS, login and listing together, and :mod:`.limits` caps what is read.
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import re
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Sequence

from mailaccounts_server.mail.connection import UNENCODABLE_CREDENTIALS, build_tls_context
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.imap import probe_imap
from mailaccounts_server.mail.listing import Listing
from mailaccounts_server.mail.lookup import DEFAULT_LOOKUP_THREADS, LookupPool
from mailaccounts_server.mail.pop3 import probe_pop3
from mailaccounts_server.mail.redaction import Redactor
from mailaccounts_server.mail.resolve import (
    Resolver,
    allowed_ports,
    check_port,
    parse_networks,
    resolve_target,
)
from mailaccounts_server.mail.types import (
    ErrorCode,
    ProbeError,
    ProbeResult,
    ProbeTarget,
    Protocol,
)

_LOG = logging.getLogger(__name__)

SUCCESS_MESSAGE = "Connection successful"
MAX_MESSAGE_LENGTH = 500
# C0 controls and DEL: NUL is refused by PostgreSQL text columns, CR/LF would forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _listing_message(listing: Listing) -> str:
    if listing.stopped is not None:
        return (
            f"{SUCCESS_MESSAGE}; the folder list was cut off after {len(listing.folders)} "
            f"folders (the server sent {listing.stopped})"
        )
    if listing.truncated:
        return (
            f"{SUCCESS_MESSAGE}; showing the first {len(listing.folders)} of "
            f"{listing.total} folders"
        )
    return SUCCESS_MESSAGE


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def classify(exc: BaseException, deadline: Deadline, address: str | None, port: int) -> ProbeError:
    """Turn an exception raised while probing into an error code and a readable message.

    Exception texts that could carry credentials (encoding errors, anything unexpected) never
    reach the message or the log; only their type and the probe step do.
    """
    if deadline.aborted:  # abort_all() cut the connection
        return deadline.abort_error()
    if deadline.fired:  # the watchdog cut the connection: whatever broke, it was the clock
        return deadline.timeout_error()
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, TimeoutError):
        return deadline.timeout_error()
    if isinstance(exc, UnicodeError):  # its text quotes the character it could not handle
        if deadline.step == "logging in":
            return ProbeError(ErrorCode.AUTH_FAILURE, UNENCODABLE_CREDENTIALS)
        return ProbeError(ErrorCode.PROTOCOL_ERROR, f"Text encoding error while {deadline.step}")
    where = _endpoint(address, port) if address else f"port {port}"
    if isinstance(exc, socket.gaierror):
        return ProbeError(ErrorCode.DNS_FAILURE, f"Could not resolve host: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return ProbeError(ErrorCode.TLS_FAILURE, f"TLS certificate verification failed: {detail}")
    if isinstance(exc, ssl.SSLError):
        detail = exc.reason or str(exc)
        if detail == "WRONG_VERSION_NUMBER":
            detail += " (the port does not seem to speak implicit TLS; try STARTTLS)"
        return ProbeError(ErrorCode.TLS_FAILURE, f"TLS handshake with {where} failed: {detail}")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError(ErrorCode.CONNECTION_REFUSED, f"Connection refused by {where}")
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc) or type(exc).__name__
        if deadline.step == "connecting":
            return ProbeError(
                ErrorCode.CONNECTION_REFUSED, f"Could not connect to {where}: {detail}"
            )
        return ProbeError(
            ErrorCode.PROTOCOL_ERROR, f"Connection to {where} lost while {deadline.step}: {detail}"
        )
    if isinstance(exc, imaplib.IMAP4.error | poplib.error_proto):
        return ProbeError(ErrorCode.PROTOCOL_ERROR, f"Protocol error while {deadline.step}: {exc}")
    # No exc_info: the exception's text might quote what was being sent (the password), so
    # log its type and where it was raised only.
    frames = " <- ".join(
        f"{frame.filename}:{frame.lineno} in {frame.name}"
        for frame in reversed(traceback.extract_tb(exc.__traceback__))
    )
    _LOG.error(
        "unexpected %s while %s (message withheld) at %s",
        type(exc).__name__,
        deadline.step,
        frames or "?",
    )
    return ProbeError(
        ErrorCode.PROTOCOL_ERROR, f"Unexpected {type(exc).__name__} while {deadline.step}"
    )


def strip_controls(text: str) -> str:
    """``text`` with every control character (NUL, CR, LF, ESC, DEL ...) replaced by a space."""
    return _CONTROL.sub(" ", text)


def safe_message(message: str, redact: Redactor) -> str:
    """A result message fit to store and log: redacted, no control characters, bounded length.

    Server replies end up in these messages, and a hostile server may send anything. Redacted
    again after the control characters go, as they could split a form of the password.
    """
    cleaned = redact(strip_controls(redact(message)))
    if len(cleaned) > MAX_MESSAGE_LENGTH:
        cleaned = cleaned[: MAX_MESSAGE_LENGTH - 3] + "..."
    return cleaned


class MailProber:
    """Tests IMAP/POP3 accounts: resolve with SSRF guard, connect, TLS, log in, list/stat.

    ``allow_ports`` adds ports to the mail ports a probe may connect to (``MAIL_PORTS``);
    ``dns_threads`` caps the threads that run host-name lookups for all probes together.
    """

    def __init__(
        self,
        ca_file: str | None = None,
        verify_tls: bool = True,
        allow_networks: Sequence[str] = (),
        *,
        allow_ports: Sequence[int] = (),
        dns_threads: int = DEFAULT_LOOKUP_THREADS,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self._tls_context = build_tls_context(ca_file, verify_tls)
        self._allow_networks = parse_networks(allow_networks)
        self._allowed_ports = allowed_ports(allow_ports)
        self._lookups = LookupPool(dns_threads)
        self._resolver = resolver
        self._lock = threading.Lock()
        self._active: set[Deadline] = set()
        self._aborted = False

    def abort_all(self) -> None:
        """Cut every probe in progress; for server shutdown.

        Their sockets are shut down at once, so the probing threads return within moments
        with a CONNECTION_REFUSED result saying ``aborted: server shutting down``. Probes that
        start afterwards fail the same way without connecting: the prober stays aborted.
        """
        with self._lock:
            self._aborted = True
            active = list(self._active)
        if active:
            _LOG.info("aborting %d mail server probe(s) in progress", len(active))
        for deadline in active:
            deadline.abort()

    def _register(self, deadline: Deadline) -> None:
        with self._lock:
            self._active.add(deadline)
            aborted = self._aborted
        if aborted:
            deadline.abort()

    def _unregister(self, deadline: Deadline) -> None:
        with self._lock:
            self._active.discard(deadline)

    def probe(self, target: ProbeTarget) -> ProbeResult:
        """Run the connection test; blocking, bounded by ``target.timeout``."""
        if not target.timeout > 0:
            raise ValueError("ProbeTarget.timeout must be positive")
        started = time.monotonic()
        address: str | None = None
        redact = Redactor(target.username, target.password)
        with Deadline(target.timeout) as deadline:
            self._register(deadline)
            try:
                check_port(target.port, self._allowed_ports)
                address = resolve_target(
                    target.host,
                    target.port,
                    allow_networks=self._allow_networks,
                    deadline=deadline,
                    pool=self._lookups,
                    resolver=self._resolver,
                )
                result = self._probe_address(target, address, deadline, redact)
            except Exception as exc:
                error = classify(exc, deadline, address, target.port)
                result = ProbeResult(
                    success=False,
                    message=safe_message(error.message, redact),
                    error_code=error.code,
                )
            finally:
                self._unregister(deadline)
        _LOG.info(
            "probe %s %s:%d (%s) -> %s in %.2fs",
            target.protocol.value,
            strip_controls(target.host),
            target.port,
            target.encryption.value,
            result.error_code.name if result.error_code else "OK",
            time.monotonic() - started,
        )
        return result

    def _probe_address(
        self, target: ProbeTarget, address: str, deadline: Deadline, redact: Redactor
    ) -> ProbeResult:
        if target.protocol is Protocol.IMAP:
            listing = probe_imap(target, address, self._tls_context, deadline, redact)
            return ProbeResult(
                success=True,
                message=_listing_message(listing),
                folders=listing.folders,
                folders_total=listing.total,
                folders_truncated=listing.truncated,
            )
        count, size = probe_pop3(target, address, self._tls_context, deadline)
        return ProbeResult(
            success=True,
            message=SUCCESS_MESSAGE,
            message_count=count,
            mailbox_size_bytes=size,
        )
