"""TestConnection is no port scanner or banner grabber: mail ports only, foreign text unquoted."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mailaccounts_server.mail import (
    Encryption,
    ErrorCode,
    MailProber,
    ProbeError,
    ProbeTarget,
    Protocol,
)
from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.lookup import LookupPool
from mailaccounts_server.mail.resolve import MAIL_PORTS, resolve_target

LOOPBACK = ["127.0.0.0/8"]


@contextlib.contextmanager
def _banner_server(banner: bytes, wait: float = 2) -> Iterator[tuple[int, threading.Event]]:
    """Says ``banner`` to a client connecting to 127.0.0.1 within ``wait`` s.

    Yields (port, connected).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(wait)
    connected = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            connected.set()
            with conn:
                conn.sendall(banner)
                conn.settimeout(2)
                while conn.recv(4096):  # until the probe hangs up
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], connected
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_other_port_is_refused_before_any_lookup_or_connection(protocol: Protocol) -> None:
    """A scripted server stands in for some non-mail service on a port that is not allowed."""
    lookups: list[str] = []

    def resolver(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    with _banner_server(b"SSH-2.0-OpenSSH_9.6\r\n", wait=0.5) as (port, connected):
        prober = MailProber(allow_networks=LOOPBACK, resolver=resolver)
        target = ProbeTarget("svc.test", port, protocol, Encryption.NONE, "u", "pw-1", 5)
        result = prober.probe(target)
        assert not connected.wait(0.3)
    assert result.error_code is ErrorCode.ADDRESS_BLOCKED
    assert result.message == (
        f"Port {port} may not be probed: only mail server ports are allowed "
        "(25, 110, 143, 465, 587, 993, 995, 2525)"
    )
    assert lookups == []


def test_allow_ports_adds_a_port() -> None:
    """A scripted server stands in for a POP3 server on a port the operator allowed."""
    with _banner_server(b"+OK ready\r\n-ERR no such user\r\n+OK bye\r\n") as (port, connected):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        result = prober.probe(
            ProbeTarget("127.0.0.1", port, Protocol.POP3, Encryption.NONE, "u", "pw-1", 5)
        )
        assert connected.is_set()
    assert result.error_code is ErrorCode.AUTH_FAILURE


def test_mail_ports_are_the_default() -> None:
    assert MAIL_PORTS == {143, 993, 110, 995, 25, 465, 587, 2525}


@pytest.mark.parametrize("bad", [0, 65536, -1, True])
def test_allow_ports_must_be_tcp_ports(bad: int) -> None:
    with pytest.raises(ValueError):
        MailProber(allow_ports=[bad])


BANNERS = {
    "ssh": b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n",
    "http": b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.25.3\r\nContent-Length: 0\r\n\r\n",
    "redis": b"-ERR unknown command 'secret-key-material', with args beginning with:\r\n",
    "smtp": b"220 internal-relay.corp ESMTP Postfix\r\n",
    "imap-like": b"* 5 EXISTS internal-token-123\r\n",
}
# Words of the banners that must not reach the caller.
TELLTALES = ["OpenSSH", "Ubuntu", "nginx", "400", "secret-key", "unknown command", "Postfix"]
TELLTALES += ["internal", "220", "EXISTS"]


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
@pytest.mark.parametrize("service", sorted(BANNERS))
def test_banner_of_a_non_mail_service_is_not_quoted(protocol: Protocol, service: str) -> None:
    """A scripted server stands in for a non-mail service (SSH, HTTP, Redis, SMTP ...)."""
    with _banner_server(BANNERS[service]) as (port, _connected):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        result = prober.probe(
            ProbeTarget("127.0.0.1", port, protocol, Encryption.NONE, "u", "pw-1", 5)
        )
    assert result.error_code is ErrorCode.PROTOCOL_ERROR, result.message
    expected = {
        Protocol.IMAP: {"The server did not answer like an IMAP server"},
        Protocol.POP3: {
            "The server did not answer like a POP3 server",
            "The POP3 server refused the connection (it greeted with -ERR)",
        },
    }
    assert result.message in expected[protocol]
    for word in TELLTALES:
        assert word not in result.message


@pytest.mark.parametrize(
    ("protocol", "greeting", "message"),
    [
        (Protocol.IMAP, b"* BYE too busy, internal-node-7\r\n", "refused the connection"),
        (Protocol.POP3, b"-ERR too busy, internal-node-7\r\n", "refused the connection"),
        (Protocol.POP3, b"+PONG internal-node-7\r\n", "did not answer like a POP3 server"),
    ],
)
def test_refusing_greeting_is_reported_without_its_text(
    protocol: Protocol, greeting: bytes, message: str
) -> None:
    """A scripted server stands in for a mail server that turns the probe away at once."""
    with _banner_server(greeting) as (port, _connected):
        prober = MailProber(allow_networks=LOOPBACK, allow_ports=[port])
        result = prober.probe(
            ProbeTarget("127.0.0.1", port, protocol, Encryption.NONE, "u", "pw-1", 5)
        )
    assert result.error_code is ErrorCode.PROTOCOL_ERROR
    assert message in result.message
    assert "internal" not in result.message


@pytest.mark.parametrize("host", ["192.88.99.1", "192.88.99.254", "2002:c058:6301::1"])
def test_6to4_relay_anycast_is_blocked(host: str) -> None:
    with pytest.raises(ProbeError) as info:
        resolve_target(host, 993, allow_networks=[], deadline=Deadline(5), pool=LookupPool(1))
    assert info.value.code is ErrorCode.ADDRESS_BLOCKED
