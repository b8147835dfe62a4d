"""Tests for the mail-server adapter layer: probes against a real Dovecot, SSRF guard, folders."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import poplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mailaccounts_server.mail import (
    Encryption,
    ErrorCode,
    Folder,
    FolderKind,
    MailProber,
    ProbeError,
    ProbeResult,
    ProbeTarget,
    Protocol,
)
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.folders import display_name, folder_kind, is_selectable, make_folder
from mailaccounts_server.mail.lookup import LookupPool
from mailaccounts_server.mail.prober import classify
from mailaccounts_server.mail.resolve import is_blocked, parse_networks, resolve_target
from support.dovecot import (
    EXTRA_FOLDERS,
    INBOX_MESSAGES,
    DovecotServer,
)
from support.factories import LOOPBACK

WRONG_PASSWORD = "not-the-Right-one-42"
# A third Dovecot user with a non-ASCII password, added at run time by the ``carol`` fixture.
CAROL = "carol@example.com"
CAROL_PASSWORD = "sécret-pässword"
WRONG_UTF8_PASSWORD = "wrönges-pässwort"
ABORTED = "aborted: server shutting down"

_PORTS = {
    (Protocol.IMAP, Encryption.TLS): "imaps",
    (Protocol.IMAP, Encryption.STARTTLS): "imap",
    (Protocol.IMAP, Encryption.NONE): "imap",
    (Protocol.POP3, Encryption.TLS): "pop3s",
    (Protocol.POP3, Encryption.STARTTLS): "pop3",
    (Protocol.POP3, Encryption.NONE): "pop3",
}
ALL_MODES = list(_PORTS)
# For resolve_target called directly (a prober owns its own pool).
_LOOKUPS = LookupPool()


def _target(
    server: DovecotServer,
    protocol: Protocol,
    encryption: Encryption,
    *,
    host: str = "localhost",
    port: int | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> ProbeTarget:
    return ProbeTarget(
        host=host,
        port=port if port is not None else server.ports[_PORTS[(protocol, encryption)]],
        protocol=protocol,
        encryption=encryption,
        username=server.user,
        password=server.password if password is None else password,
        timeout=timeout,
    )


def _probe(prober: MailProber, target: ProbeTarget) -> ProbeResult:
    """Run a probe and check the invariants every result must satisfy."""
    result = prober.probe(target)
    assert (result.error_code is None) == result.success
    assert target.password not in result.message
    return result


def _static_resolver(address: str) -> Callable[..., list[tuple[Any, ...]]]:
    def resolve(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    return resolve


def _ports(dovecot: DovecotServer) -> list[int]:
    """Dovecot's ports: random free ones, which the port policy only permits when listed."""
    return list(dovecot.ports.values())


@pytest.fixture
def prober(dovecot: DovecotServer) -> MailProber:
    return MailProber(ca_file=dovecot.ca_file, allow_networks=LOOPBACK, allow_ports=_ports(dovecot))


# --- successful probes ---------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "encryption"), ALL_MODES)
def test_every_mode_succeeds(
    dovecot: DovecotServer, prober: MailProber, protocol: Protocol, encryption: Encryption
) -> None:
    result = _probe(prober, _target(dovecot, protocol, encryption))
    assert result.success, result.message
    assert result.message == "Connection successful"
    if protocol is Protocol.IMAP:
        assert "INBOX" in {folder.name for folder in result.folders}
        assert result.message_count == 0
    else:
        assert result.folders == []
        assert result.message_count == INBOX_MESSAGES
        assert result.mailbox_size_bytes > 500


def test_ip_literal_host_verifies_against_ip_san(
    dovecot: DovecotServer, prober: MailProber
) -> None:
    result = _probe(prober, _target(dovecot, Protocol.IMAP, Encryption.TLS, host="127.0.0.1"))
    assert result.success, result.message


def test_second_user_has_own_login(dovecot: DovecotServer, prober: MailProber) -> None:
    target = _target(dovecot, Protocol.POP3, Encryption.TLS)
    bob = dataclasses.replace(target, username=dovecot.other_user, password=dovecot.other_password)
    assert _probe(prober, bob).success
    crossed = dataclasses.replace(bob, password=dovecot.password)
    assert _probe(prober, crossed).error_code is ErrorCode.AUTH_FAILURE


def test_imap_folders_are_mapped(dovecot: DovecotServer, prober: MailProber) -> None:
    result = _probe(prober, _target(dovecot, Protocol.IMAP, Encryption.TLS))
    by_name = {folder.name: folder for folder in result.folders}
    kinds = {name: folder.kind for name, folder in by_name.items()}
    assert kinds["INBOX"] is FolderKind.INBOX
    assert kinds["Sent"] is FolderKind.SENT
    assert kinds["Drafts"] is FolderKind.DRAFTS
    assert kinds["Trash"] is FolderKind.TRASH
    assert kinds["Junk"] is FolderKind.JUNK
    assert kinds["Archive"] is FolderKind.ARCHIVE
    for name in EXTRA_FOLDERS:
        assert name in by_name, sorted(by_name)
    nested = by_name["Projects/2026"]
    assert nested == Folder("Projects/2026", "2026", FolderKind.OTHER, True)
    cafe = by_name["Café"]  # stored on disk as modified UTF-7 ".Caf&AOk-"
    assert (cafe.display_name, cafe.kind, cafe.selectable) == ("Café", FolderKind.OTHER, True)
    parent = by_name["Projects"]  # only exists as the parent of Projects/2026
    assert parent.selectable is False
    assert parent.display_name == "Projects"
    assert all(f.selectable for f in result.folders if f.name != "Projects")
    assert len(result.folders) == 9


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "encryption"),
    [
        (Protocol.IMAP, Encryption.TLS),
        (Protocol.IMAP, Encryption.NONE),
        (Protocol.POP3, Encryption.TLS),
        (Protocol.POP3, Encryption.STARTTLS),
    ],
)
def test_wrong_password_is_auth_failure(
    dovecot: DovecotServer, prober: MailProber, protocol: Protocol, encryption: Encryption
) -> None:
    target = _target(dovecot, protocol, encryption, password=WRONG_PASSWORD)
    result = _probe(prober, target)
    assert result.error_code is ErrorCode.AUTH_FAILURE
    assert result.message.startswith("Authentication failed: ")
    assert "b'" not in result.message  # server text, not a bytes repr
    assert dovecot.password not in result.message
    assert result.folders == [] and result.message_count == 0


def test_password_never_logged(
    dovecot: DovecotServer, prober: MailProber, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for protocol, encryption in [
        (Protocol.IMAP, Encryption.STARTTLS),
        (Protocol.POP3, Encryption.NONE),
    ]:
        assert _probe(prober, _target(dovecot, protocol, encryption)).success
        _probe(prober, _target(dovecot, protocol, encryption, password=WRONG_PASSWORD))
    assert caplog.records, "the probe is expected to log something"
    assert dovecot.password not in caplog.text
    assert WRONG_PASSWORD not in caplog.text
    assert dovecot.password not in repr(_target(dovecot, Protocol.IMAP, Encryption.TLS))


def test_unknown_host_is_dns_failure() -> None:
    def no_such_host(*args: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    prober = MailProber(resolver=no_such_host)
    target = ProbeTarget("no-such-host.invalid", 993, Protocol.IMAP, Encryption.TLS, "u", "pw-123")
    result = _probe(prober, target)
    assert result.error_code is ErrorCode.DNS_FAILURE
    assert "no-such-host.invalid" in result.message


def test_slow_dns_counts_against_the_one_deadline(blackhole_port: int) -> None:
    def slow(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        time.sleep(1.2)
        return _static_resolver("127.0.0.1")(host, port)

    prober = MailProber(allow_networks=LOOPBACK, allow_ports=[blackhole_port], resolver=slow)
    target = ProbeTarget("mail.test", blackhole_port, Protocol.IMAP, Encryption.NONE, "u", "p", 2)
    started = time.monotonic()
    result = _probe(prober, target)
    elapsed = time.monotonic() - started
    assert result.error_code is ErrorCode.TIMEOUT
    assert 2.0 <= elapsed < 3.0, elapsed  # DNS time was not granted on top of the limit


def test_hung_dns_times_out() -> None:
    release = threading.Event()

    def hung(*args: Any) -> list[tuple[Any, ...]]:
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")

    prober = MailProber(resolver=hung)
    target = ProbeTarget("mail.test", 993, Protocol.POP3, Encryption.TLS, "u", "p", 0.5)
    started = time.monotonic()
    result = _probe(prober, target)
    release.set()
    assert result.error_code is ErrorCode.TIMEOUT
    assert "resolving" in result.message
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_closed_port_is_connection_refused(
    dovecot: DovecotServer, closed_port: int, protocol: Protocol
) -> None:
    prober = MailProber(ca_file=dovecot.ca_file, allow_networks=LOOPBACK, allow_ports=[closed_port])
    target = _target(dovecot, protocol, Encryption.TLS, host="127.0.0.1", port=closed_port)
    result = _probe(prober, target)
    assert result.error_code is ErrorCode.CONNECTION_REFUSED
    assert result.message == f"Connection refused by 127.0.0.1:{closed_port}"


@pytest.mark.parametrize(
    ("protocol", "encryption", "step"),
    [
        (Protocol.IMAP, Encryption.TLS, "negotiating TLS"),
        (Protocol.POP3, Encryption.STARTTLS, "waiting for the server greeting"),
    ],
)
def test_silent_server_times_out_at_the_limit(
    blackhole_port: int, protocol: Protocol, encryption: Encryption, step: str
) -> None:
    prober = MailProber(allow_networks=LOOPBACK, allow_ports=[blackhole_port])
    target = ProbeTarget("127.0.0.1", blackhole_port, protocol, encryption, "u", "secret-pw", 2)
    started = time.monotonic()
    result = _probe(prober, target)
    elapsed = time.monotonic() - started
    assert result.error_code is ErrorCode.TIMEOUT
    assert result.message == f"Timed out after 2s while {step}"
    assert 2.0 <= elapsed < 3.0, elapsed


@pytest.mark.parametrize(
    ("protocol", "encryption"),
    [
        (Protocol.IMAP, Encryption.TLS),
        (Protocol.IMAP, Encryption.STARTTLS),
        (Protocol.POP3, Encryption.TLS),
        (Protocol.POP3, Encryption.STARTTLS),
    ],
)
def test_certificate_from_other_ca_is_tls_failure(
    dovecot: DovecotServer, protocol: Protocol, encryption: Encryption
) -> None:
    prober = MailProber(
        ca_file=dovecot.other_ca_file, allow_networks=LOOPBACK, allow_ports=_ports(dovecot)
    )
    result = _probe(prober, _target(dovecot, protocol, encryption))
    assert result.error_code is ErrorCode.TLS_FAILURE
    assert result.message.startswith("TLS certificate verification failed: ")
    assert "issuer" in result.message


@pytest.mark.parametrize(("protocol", "port"), [(Protocol.IMAP, "imap"), (Protocol.POP3, "pop3")])
def test_implicit_tls_on_plain_port_is_tls_failure(
    dovecot: DovecotServer, prober: MailProber, protocol: Protocol, port: str
) -> None:
    target = _target(dovecot, protocol, Encryption.TLS, port=dovecot.ports[port])
    result = _probe(prober, target)
    assert result.error_code is ErrorCode.TLS_FAILURE
    assert "try STARTTLS" in result.message


def test_certificate_is_checked_against_host_name_not_address(dovecot: DovecotServer) -> None:
    # mail.example.test resolves to 127.0.0.1, but the certificate only names localhost/127.0.0.1.
    prober = MailProber(
        ca_file=dovecot.ca_file,
        allow_networks=LOOPBACK,
        allow_ports=_ports(dovecot),
        resolver=_static_resolver("127.0.0.1"),
    )
    result = _probe(
        prober, _target(dovecot, Protocol.IMAP, Encryption.TLS, host="mail.example.test")
    )
    assert result.error_code is ErrorCode.TLS_FAILURE
    assert "mail.example.test" in result.message
    ok = _probe(prober, _target(dovecot, Protocol.POP3, Encryption.TLS, host="localhost"))
    assert ok.success, ok.message


def test_verify_tls_false_accepts_unknown_ca(dovecot: DovecotServer) -> None:
    prober = MailProber(
        ca_file=dovecot.other_ca_file,
        verify_tls=False,
        allow_networks=LOOPBACK,
        allow_ports=_ports(dovecot),
    )
    result = _probe(prober, _target(dovecot, Protocol.IMAP, Encryption.STARTTLS))
    assert result.success, result.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_blocked_without_allow_list(dovecot: DovecotServer, host: str) -> None:
    prober = MailProber(ca_file=dovecot.ca_file, allow_ports=_ports(dovecot))
    result = _probe(prober, _target(dovecot, Protocol.IMAP, Encryption.TLS, host=host))
    assert result.error_code is ErrorCode.ADDRESS_BLOCKED
    assert "internal address" in result.message


# --- non-ASCII credentials ----------------------------------------------------------------


@pytest.fixture(scope="module")
def carol(dovecot: DovecotServer) -> tuple[str, str]:
    """Add a user with a non-ASCII password to the running Dovecot.

    Dovecot re-reads its passwd-file when it changes, at most once a second: wait until a plain
    poplib login (UTF-8) works.
    """
    users = dovecot.workdir / "users"
    if CAROL not in users.read_text(encoding="utf-8"):
        with users.open("a", encoding="utf-8") as out:
            out.write(f"{CAROL}:{{PLAIN}}{CAROL_PASSWORD}::::::nodelay=y\n")
    give_up = time.monotonic() + 10
    while True:
        client = poplib.POP3(dovecot.host, dovecot.pop3, timeout=5)
        try:
            client.user(CAROL)
            client.pass_(CAROL_PASSWORD)
            break
        except poplib.error_proto:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)
        finally:
            client.close()
    return CAROL, CAROL_PASSWORD


def _assert_not_logged(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    texts = [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    texts.append(caplog.text)
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


@pytest.mark.parametrize(
    ("protocol", "encryption"),
    [
        (Protocol.IMAP, Encryption.TLS),
        (Protocol.IMAP, Encryption.STARTTLS),
        (Protocol.IMAP, Encryption.NONE),
        (Protocol.POP3, Encryption.TLS),
        (Protocol.POP3, Encryption.NONE),
    ],
)
def test_non_ascii_password(
    dovecot: DovecotServer,
    prober: MailProber,
    carol: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    protocol: Protocol,
    encryption: Encryption,
) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = carol
    target = dataclasses.replace(
        _target(dovecot, protocol, encryption), username=user, password=password
    )
    result = _probe(prober, target)
    assert result.success, result.message
    wrong = _probe(prober, dataclasses.replace(target, password=WRONG_UTF8_PASSWORD))
    assert wrong.error_code is ErrorCode.AUTH_FAILURE, wrong.message
    assert wrong.message.startswith("Authentication failed: ")
    # alice's ASCII password is refused when sent in UTF-8 with a non-ASCII one of hers
    alice = _probe(prober, _target(dovecot, protocol, encryption, password=WRONG_UTF8_PASSWORD))
    assert alice.error_code is ErrorCode.AUTH_FAILURE, alice.message
    _assert_not_logged(caplog, password, WRONG_UTF8_PASSWORD, "é", "ä", "ö")


def test_unicode_error_is_reported_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    deadline = Deadline(5)
    deadline.begin("logging in")
    try:
        "sécret-pw".encode("ascii")
    except UnicodeEncodeError as exc:
        error = classify(exc, deadline, "127.0.0.1", 143)
    assert error.code is ErrorCode.AUTH_FAILURE
    assert "é" not in error.message and "position" not in error.message
    deadline.begin("listing folders")
    error = classify(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), deadline, None, 143)
    assert error.message == "Text encoding error while listing folders"
    # Unexpected exceptions are logged by type and place only: their text may quote a secret.
    secret = "sécret-pw"
    try:
        raise RuntimeError(f"{secret} leaked")
    except RuntimeError as exc:
        error = classify(exc, deadline, None, 143)
    assert error.message == "Unexpected RuntimeError while listing folders"
    assert "test_unicode_error_is_reported_without_its_text" in caplog.text  # where, at least
    _assert_not_logged(caplog, "sécret", "é")


# --- fake servers for misbehaviour Dovecot will not show ------------------------------------


class _Recorder:
    """Socket wrapper that records every line the client sends."""

    def __init__(self, conn: socket.socket, received: list[bytes]) -> None:
        self._file = conn.makefile("rwb")
        self._received = received

    def sendall(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def recv_line(self) -> bytes:
        line = self._file.readline()
        self._received.append(line)
        return line

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


@contextlib.contextmanager
def _fake_server(script: Callable[[_Recorder], None]) -> Iterator[tuple[int, list[bytes]]]:
    """Serve one connection on loopback with ``script``; yields (port, received lines)."""
    received: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                recorder = _Recorder(conn, received)
                try:
                    script(recorder)
                finally:
                    recorder.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        thread.join(5)
        listener.close()


def _imap_without_starttls(conn: _Recorder) -> None:
    conn.sendall(b"* OK fake IMAP ready\r\n")
    while line := conn.recv_line():
        tag, _, command = line.strip().partition(b" ")
        if command.upper().startswith(b"CAPABILITY"):
            conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        elif command.upper().startswith(b"LOGOUT"):
            conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return
        else:
            conn.sendall(tag + b" BAD unexpected\r\n")


def _pop3_without_stls(conn: _Recorder) -> None:
    conn.sendall(b"+OK fake POP3 ready\r\n")
    while line := conn.recv_line():
        if line.upper().startswith(b"CAPA"):
            conn.sendall(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
        elif line.upper().startswith(b"QUIT"):
            conn.sendall(b"+OK bye\r\n")
            return
        else:
            conn.sendall(b"-ERR unexpected\r\n")


@pytest.mark.parametrize(
    ("protocol", "script"),
    [(Protocol.IMAP, _imap_without_starttls), (Protocol.POP3, _pop3_without_stls)],
)
def test_missing_starttls_refuses_to_log_in(
    protocol: Protocol, script: Callable[[_Recorder], None]
) -> None:
    with _fake_server(script) as (port, received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, protocol, Encryption.STARTTLS, "u", "pw-999", 5)
        result = _probe(prober, target)
    assert result.error_code is ErrorCode.TLS_FAILURE
    assert "refusing to send credentials" in result.message
    sent = b"".join(received).upper()
    assert b"LOGIN" not in sent and b"USER" not in sent and b"PW-999" not in sent


def test_non_mail_server_is_protocol_error() -> None:
    def http(conn: _Recorder) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with _fake_server(http) as (port, _received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, Protocol.POP3, Encryption.NONE, "u", "p", 5)
        result = _probe(prober, target)
    assert result.error_code is ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_slow_drip_server_cannot_stretch_the_deadline(protocol: Protocol) -> None:
    stop = threading.Event()

    def drip(conn: _Recorder) -> None:
        # Every single read gets a byte well within its socket timeout; the line never ends.
        greeting = b"* OK " if protocol is Protocol.IMAP else b"+OK "
        conn.sendall(greeting)
        while not stop.wait(0.1):
            conn.sendall(b".")

    with _fake_server(drip) as (port, _received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, protocol, Encryption.NONE, "u", "p", 1.5)
        started = time.monotonic()
        result = _probe(prober, target)
        elapsed = time.monotonic() - started
        stop.set()
    assert result.error_code is ErrorCode.TIMEOUT
    assert result.message == "Timed out after 1.5s while waiting for the server greeting"
    assert 1.5 <= elapsed < 2.5, elapsed


def test_slow_drip_tls_handshake_cannot_stretch_the_deadline() -> None:
    stop = threading.Event()

    def drip(conn: _Recorder) -> None:
        conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB TLS handshake record ... slowly
        while not stop.wait(0.1):
            conn.sendall(b"\x02")

    with _fake_server(drip) as (port, _received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, Protocol.IMAP, Encryption.TLS, "u", "p", 1.5)
        started = time.monotonic()
        result = _probe(prober, target)
        elapsed = time.monotonic() - started
        stop.set()
    assert result.error_code is ErrorCode.TIMEOUT
    assert result.message == "Timed out after 1.5s while negotiating TLS"
    assert 1.5 <= elapsed < 2.5, elapsed


def _pop3_script(
    pass_reply: bytes, stat_reply: bytes = b"+OK 0 0\r\n"
) -> Callable[[_Recorder], None]:
    """A POP3 server that accepts USER and answers PASS and STAT with the given lines."""

    def script(conn: _Recorder) -> None:
        conn.sendall(b"+OK fake POP3 ready\r\n")
        while line := conn.recv_line():
            command = line.upper()
            if command.startswith(b"USER"):
                conn.sendall(b"+OK send PASS\r\n")
            elif command.startswith(b"PASS"):
                conn.sendall(pass_reply)
            elif command.startswith(b"STAT"):
                conn.sendall(stat_reply)
            elif command.startswith(b"QUIT"):
                conn.sendall(b"+OK bye\r\n")
                return
            else:
                conn.sendall(b"-ERR unexpected\r\n")

    return script


def _pop3_probe(script: Callable[[_Recorder], None], password: str = "pw-1") -> ProbeResult:
    with _fake_server(script) as (port, _received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, Protocol.POP3, Encryption.NONE, "u", password, 5)
        return _probe(prober, target)


def _assert_clean(message: str) -> None:
    assert not any(ord(char) < 0x20 or ord(char) == 0x7F for char in message), repr(message)
    assert len(message) <= 500


def test_hostile_stat_numbers_are_clamped() -> None:
    stat = b"+OK 99999999999 99999999999999999999999\r\n"
    result = _pop3_probe(_pop3_script(b"+OK logged in\r\n", stat))
    assert result.success, result.message
    assert result.message_count == 2**31 - 1
    assert result.mailbox_size_bytes == 2**63 - 1
    negative = _pop3_probe(_pop3_script(b"+OK logged in\r\n", b"+OK -5 -7\r\n"))
    assert (negative.message_count, negative.mailbox_size_bytes) == (0, 0)


@pytest.mark.parametrize("stat", [b"+OK\r\n", b"+OK many lots\r\n"])
def test_malformed_stat_is_protocol_error(stat: bytes) -> None:
    result = _pop3_probe(_pop3_script(b"+OK logged in\r\n", stat))
    assert result.error_code is ErrorCode.PROTOCOL_ERROR
    assert result.message == "STAT failed: malformed reply"


@pytest.mark.parametrize(
    "reply",
    [
        b"-ERR bad\x00pass\r\n",
        b"-ERR bad\x1b[31mpass\x07\x7f\rFAKE LOG LINE\r\n",
        b"-ERR " + b"x" * 1500 + b"\r\n",
    ],
)
def test_hostile_server_text_is_sanitised(reply: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mailaccounts_server")
    result = _pop3_probe(_pop3_script(reply))
    assert result.error_code is ErrorCode.AUTH_FAILURE
    assert result.message.startswith("Authentication failed: ")
    _assert_clean(result.message)
    for record in caplog.records:
        _assert_clean(record.getMessage())


def test_hostile_imap_text_is_sanitised() -> None:
    def script(conn: _Recorder) -> None:
        conn.sendall(b"* OK fake IMAP ready\r\n")
        while line := conn.recv_line():
            tag, _, command = line.strip().partition(b" ")
            if command.upper().startswith(b"CAPABILITY"):
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif command.upper().startswith(b"LOGIN"):
                conn.sendall(tag + b" NO go\x00away\x1b[2J\x08\x08 now\r\n")
            else:
                conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return

    with _fake_server(script) as (port, _received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, Protocol.IMAP, Encryption.NONE, "u", "pw-1", 5)
        result = _probe(prober, target)
    assert result.error_code is ErrorCode.AUTH_FAILURE
    assert result.message.startswith("Authentication failed: go away")
    _assert_clean(result.message)


def test_non_ascii_credentials_use_authenticate_plain_in_utf8() -> None:
    sent: list[bytes] = []

    def script(conn: _Recorder) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake IMAP ready\r\n")
        while line := conn.recv_line():
            tag, _, command = line.strip().partition(b" ")
            if command.upper() == b"AUTHENTICATE PLAIN":
                conn.sendall(b"+ \r\n")
                sent.append(base64.b64decode(conn.recv_line().strip()))
                conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
            elif command.upper().startswith(b"CAPABILITY"):
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            else:
                conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return

    with _fake_server(script) as (port, received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget(
            "127.0.0.1", port, Protocol.IMAP, Encryption.NONE, "jürgen", CAROL_PASSWORD, 5
        )
        result = _probe(prober, target)
    assert result.error_code is ErrorCode.AUTH_FAILURE
    assert result.message == "Authentication failed: [AUTHENTICATIONFAILED] Authentication failed."
    assert sent == [b"\0" + "jürgen".encode() + b"\0" + CAROL_PASSWORD.encode()]
    assert not any(b"LOGIN" in line.upper() for line in received)


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
@pytest.mark.parametrize("password", ["pw\r\nDELE 1", "pw\nx", "pw\0x"])
def test_credentials_with_line_breaks_are_never_sent(protocol: Protocol, password: str) -> None:
    script = _imap_without_starttls if protocol is Protocol.IMAP else _pop3_script(b"+OK\r\n")
    with _fake_server(script) as (port, received):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, protocol, Encryption.NONE, "u", password, 5)
        result = _probe(prober, target)
    assert result.error_code is ErrorCode.AUTH_FAILURE
    assert "cannot be sent" in result.message
    sent = b"".join(received).upper()
    assert b"LOGIN" not in sent and b"PASS" not in sent and b"DELE" not in sent


# --- abort_all (server shutdown) -----------------------------------------------------------


@contextlib.contextmanager
def _silent_server() -> Iterator[tuple[int, threading.Event]]:
    """Accepts one connection and never says a word; yields (port, accepted)."""
    accepted = threading.Event()
    stop = threading.Event()

    def script(conn: _Recorder) -> None:
        accepted.set()
        stop.wait(10)

    try:
        with _fake_server(script) as (port, _received):
            yield port, accepted
            stop.set()
    finally:
        stop.set()


def _run_in_thread(prober: MailProber, target: ProbeTarget) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(prober.probe(target)), daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize(
    ("protocol", "encryption"),
    [
        (Protocol.IMAP, Encryption.TLS),  # stuck in the TLS handshake
        (Protocol.IMAP, Encryption.NONE),  # stuck waiting for the greeting
        (Protocol.POP3, Encryption.STARTTLS),
    ],
)
def test_abort_all_cuts_probes_in_progress(protocol: Protocol, encryption: Encryption) -> None:
    with _silent_server() as (port, accepted):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, protocol, encryption, "u", "pw-1", 30)
        thread, box = _run_in_thread(prober, target)
        assert accepted.wait(5)
        time.sleep(0.2)  # let the probe block in its read
        started = time.monotonic()
        prober.abort_all()
        thread.join(2)
        elapsed = time.monotonic() - started
    assert not thread.is_alive(), "probe still running 2 s after abort_all()"
    assert elapsed < 2.0
    [result] = box
    assert result.error_code is ErrorCode.CONNECTION_REFUSED
    assert result.message == ABORTED
    # A probe that starts after abort_all() (a queued one) fails at once without connecting.
    started = time.monotonic()
    late = _probe(prober, ProbeTarget("127.0.0.1", port, protocol, encryption, "u", "p", 30))
    assert late.message == ABORTED
    assert time.monotonic() - started < 0.5


def test_abort_all_cuts_a_probe_in_blackhole(blackhole_port: int) -> None:
    prober = MailProber(allow_networks=LOOPBACK, allow_ports=[blackhole_port])
    target = ProbeTarget("127.0.0.1", blackhole_port, Protocol.IMAP, Encryption.TLS, "u", "p", 30)
    thread, box = _run_in_thread(prober, target)
    time.sleep(0.5)  # the kernel completes the connect at once; the probe waits for TLS
    prober.abort_all()
    thread.join(2)
    assert not thread.is_alive()
    assert box[0].message == ABORTED


def test_abort_all_cuts_a_hung_dns_lookup() -> None:
    release = threading.Event()
    entered = threading.Event()

    def hung(*args: Any) -> list[tuple[Any, ...]]:
        entered.set()
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")

    prober = MailProber(resolver=hung)
    target = ProbeTarget("mail.test", 993, Protocol.IMAP, Encryption.TLS, "u", "p", 30)
    thread, box = _run_in_thread(prober, target)
    assert entered.wait(5)
    prober.abort_all()
    thread.join(2)
    release.set()
    assert not thread.is_alive()
    assert box[0].message == ABORTED


def test_abort_all_cuts_a_pending_connect() -> None:
    # A listener whose backlog is full leaves further connects in SYN_SENT (SYNs are dropped).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("the kernel accepted a connection beyond the backlog")
        except TimeoutError:
            pass
        finally:
            probe.close()
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, Protocol.POP3, Encryption.TLS, "u", "p", 30)
        thread, box = _run_in_thread(prober, target)
        time.sleep(0.3)
        prober.abort_all()
        thread.join(2)
        assert not thread.is_alive()
        assert box[0].message == ABORTED
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --- SSRF guard (no network traffic: literals and /etc/hosts only) ---------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.1.1",
        "fe80::1",
        "fc00::1",
        "fec0::1",  # deprecated site-local: Python 3.11 calls it global
        "fefe:1::2",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
    ],
)
def test_resolve_refuses_internal_addresses(host: str) -> None:
    with pytest.raises(ProbeError) as info:
        resolve_target(host, 993, allow_networks=[], deadline=Deadline(5), pool=_LOOKUPS)
    assert info.value.code is ErrorCode.ADDRESS_BLOCKED


@pytest.mark.parametrize("host", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_resolve_accepts_public_addresses(host: str) -> None:
    assert resolve_target(host, 993, allow_networks=[], deadline=Deadline(5), pool=_LOOKUPS) == host


def test_allow_list_permits_only_its_networks() -> None:
    allow = parse_networks(["127.0.0.0/8", "fd00::/8"])
    assert resolve_target(
        "127.0.0.1", 143, allow_networks=allow, deadline=Deadline(5), pool=_LOOKUPS
    ) == ("127.0.0.1")
    assert resolve_target(
        "localhost", 143, allow_networks=allow, deadline=Deadline(5), pool=_LOOKUPS
    ) == ("127.0.0.1")
    assert not is_blocked(parse_networks(["::ffff:127.0.0.1/128"])[0][0], allow)
    assert not is_blocked(parse_networks(["fd00::5/128"])[0][0], allow)
    for host in ("10.1.2.3", "::1", "169.254.1.1"):
        with pytest.raises(ProbeError) as info:
            resolve_target(host, 143, allow_networks=allow, deadline=Deadline(5), pool=_LOOKUPS)
        assert info.value.code is ErrorCode.ADDRESS_BLOCKED


def test_resolve_picks_first_allowed_address() -> None:
    def mixed(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        inet = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*inet, ("10.0.0.7", port)), (*inet, ("93.184.216.34", port))]

    chosen = resolve_target(
        "x.test", 993, allow_networks=[], deadline=Deadline(5), pool=_LOOKUPS, resolver=mixed
    )
    assert chosen == "93.184.216.34"


def test_resolve_rejects_bad_port() -> None:
    with pytest.raises(ProbeError):
        resolve_target("93.184.216.34", 0, allow_networks=[], deadline=Deadline(5), pool=_LOOKUPS)


# --- folder mapping (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "name", "delimiter", "kind"),
    [
        ((b"\\HasNoChildren", b"\\Sent"), "Outgoing", b"/", FolderKind.SENT),
        ((b"\\Trash",), "Sent", b"/", FolderKind.TRASH),  # the flag wins over the name
        (("\\junk",), "Bulk", "/", FolderKind.JUNK),  # flags are case-insensitive, str accepted
        ((b"\\All",), "Everything", b"/", FolderKind.ALL),
        ((b"\\Flagged",), "Important", b"/", FolderKind.FLAGGED),
        ((b"\\Archive",), "Old", b".", FolderKind.ARCHIVE),
        ((b"\\Drafts",), "Unfinished", b".", FolderKind.DRAFTS),
        ((), "inbox", b"/", FolderKind.INBOX),
        ((b"\\HasChildren",), "INBOX", b".", FolderKind.INBOX),
        ((), "INBOX.Sent", b".", FolderKind.SENT),
        ((), "INBOX.Sent Items", b".", FolderKind.SENT),
        ((), "Sent Messages", b"/", FolderKind.SENT),
        ((), "Gesendet", b"/", FolderKind.SENT),
        ((), "Envoyés", b"/", FolderKind.SENT),
        ((), "Envoye\u0301s", b"/", FolderKind.SENT),  # decomposed accent
        ((), "Entwürfe", b"/", FolderKind.DRAFTS),
        ((), "DRAFTS", b"/", FolderKind.DRAFTS),
        ((), "Deleted Items", b"/", FolderKind.TRASH),
        ((), "Deleted Messages", b"/", FolderKind.TRASH),
        ((), "Papierkorb", b"/", FolderKind.TRASH),
        ((), "Spam", b"/", FolderKind.JUNK),
        ((), "Junk E-mail", b"/", FolderKind.JUNK),
        ((), "Archive", b"/", FolderKind.ARCHIVE),
        ((), "[Gmail]/All Mail", b"/", FolderKind.ALL),
        ((), "[Gmail]/Sent Mail", b"/", FolderKind.SENT),
        ((), "[Gmail]/Spam", b"/", FolderKind.JUNK),
        ((), "[Gmail]/Starred", b"/", FolderKind.FLAGGED),
        ((), "[Gmail]/Trash", b"/", FolderKind.TRASH),
        ((b"\\Noselect", b"\\HasChildren"), "[Gmail]", b"/", FolderKind.OTHER),
        ((), "Projects/Sent", b".", FolderKind.OTHER),  # "/" is not this server's delimiter
        ((), "Sentimental", b"/", FolderKind.OTHER),
        ((), "Inbox/Old", b"/", FolderKind.OTHER),
    ],
)
def test_folder_kind(
    flags: tuple[bytes | str, ...], name: str, delimiter: bytes | str, kind: FolderKind
) -> None:
    assert folder_kind(flags, name, delimiter) is kind


@pytest.mark.parametrize(
    ("name", "delimiter", "expected"),
    [
        ("Projects/2026", b"/", "2026"),
        ("INBOX.Projects.2026", b".", "2026"),
        ("INBOX.Projects.2026", "/", "INBOX.Projects.2026"),
        ("a/b", None, "a/b"),  # NIL delimiter: flat namespace
        ("Café", b"/", "Café"),
        ("Trailing/", b"/", "Trailing"),
    ],
)
def test_display_name(name: str, delimiter: bytes | str | None, expected: str) -> None:
    assert display_name(name, delimiter) == expected


def test_selectable_flags() -> None:
    assert is_selectable([b"\\HasNoChildren"])
    assert is_selectable([])
    assert not is_selectable([b"\\Noselect", b"\\HasChildren"])
    assert not is_selectable([b"\\NOSELECT"])
    assert not is_selectable(["\\NonExistent"])


def test_make_folder() -> None:
    folder = make_folder((b"\\HasNoChildren", b"\\Sent"), b"/", "[Gmail]/Sent Mail")
    assert folder == Folder("[Gmail]/Sent Mail", "Sent Mail", FolderKind.SENT, True)
