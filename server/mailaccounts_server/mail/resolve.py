"""Host resolution with an SSRF guard (addresses and ports a probe may reach).

The probe connects to the address chosen here (no second DNS lookup, so a rebinding answer
cannot slip in between the check and the connect) while TLS still verifies the certificate
against the original host name.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from mailaccounts_server.mail.deadline import Deadline
from mailaccounts_server.mail.lookup import LookupPool
from mailaccounts_server.mail.types import ErrorCode, ProbeError

_LOG = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddrInfo = list[tuple[Any, Any, Any, Any, Any]]
Resolver = Callable[..., AddrInfo]


# Ports a probe may connect to unless the operator allows more: IMAP, IMAPS, POP3, POP3S, and
# for SMTP once it is tested 25, 465, 587 and 2525. Any port would make TestConnection a port
# scanner that reports which services answer on a host.
MAIL_PORTS = frozenset({143, 993, 110, 995, 25, 465, 587, 2525})

# Special ranges Python's is_global still calls global: the 6to4 relay anycast prefix
# (RFC 7526 deprecated it; relays forward to whatever the embedded address names).
_ALSO_BLOCKED: tuple[IPNetwork, ...] = (ipaddress.ip_network("192.88.99.0/24"),)


def allowed_ports(extra: Sequence[int] = ()) -> frozenset[int]:
    """The mail ports plus ``extra``; raises ValueError for a number that is not a TCP port."""
    for port in extra:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port!r}")
    return MAIL_PORTS | frozenset(extra)


def check_port(port: int, allowed: frozenset[int]) -> None:
    """Refuse, before any lookup or connection, a port that is not an allowed mail port."""
    if port not in allowed:
        _LOG.info("refused probe of port %d: not an allowed mail port", port)
        # Names the standard ports only: the operator's extra ones are not the caller's business.
        listed = ", ".join(str(p) for p in sorted(MAIL_PORTS))
        raise ProbeError(
            ErrorCode.ADDRESS_BLOCKED,
            f"Port {port} may not be probed: only mail server ports are allowed ({listed})",
        )


def parse_networks(cidrs: Sequence[str]) -> list[IPNetwork]:
    """Parse allow-list entries such as ``"127.0.0.0/8"``; raises ValueError on bad input."""
    return [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs]


def _embedded_ipv4(addr: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses reachable through an IPv6 form (mapped, 6to4, Teredo)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.append(addr.teredo[1])
    return found


def _is_special(addr: IPAddress) -> bool:
    # fec0::/10 (deprecated IPv6 site-local) is still routed inside some networks, yet Python
    # 3.11 calls it global.
    site_local = isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local
    return (
        site_local
        or addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_unspecified
        or addr.is_reserved
        or not addr.is_global
        or any(addr in net for net in _ALSO_BLOCKED)
    )


def is_blocked(addr: IPAddress, allow_networks: Sequence[IPNetwork] = ()) -> bool:
    """True if ``addr`` is not a public unicast address and no allow-listed network covers it."""
    candidates: list[IPAddress] = [addr, *_embedded_ipv4(addr)]
    if any(cand in net for cand in candidates for net in allow_networks):
        return False
    return any(_is_special(cand) for cand in candidates)


def _lookup(
    host: str, port: int, deadline: Deadline, resolver: Resolver, pool: LookupPool
) -> AddrInfo:
    """Run ``resolver`` on ``pool`` and wait no longer than the remaining budget."""
    budget = deadline.begin("resolving the host name")
    done = threading.Event()
    deadline.wake_on_abort(done)
    future = pool.submit(lambda: resolver(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP))
    future.add_done_callback(lambda _: done.set())
    finished = done.wait(budget)
    if not future.done():
        pool.withdraw(future)
    if deadline.aborted:
        raise deadline.abort_error()
    if not finished:
        raise deadline.timeout_error()
    result: AddrInfo = future.result()
    return result


def resolve_target(
    host: str,
    port: int,
    *,
    allow_networks: Sequence[IPNetwork],
    deadline: Deadline,
    pool: LookupPool,
    resolver: Resolver = socket.getaddrinfo,
) -> str:
    """Resolve ``host`` (on a thread of ``pool``) and return the IP address to connect to.

    The first resolved address that is allowed wins. Raises ProbeError with DNS_FAILURE when
    the name does not resolve, ADDRESS_BLOCKED when every address is internal and not
    allow-listed, TIMEOUT when resolution outlasts the budget.
    """
    if not 0 < port < 65536:
        raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"Invalid port {port}")
    if not host or len(host) > 253:
        raise ProbeError(ErrorCode.DNS_FAILURE, "Invalid host name")
    try:
        infos = _lookup(host, port, deadline, resolver, pool)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProbeError(ErrorCode.DNS_FAILURE, f"Could not resolve host {host!r}: {exc}") from exc
    addresses: list[tuple[str, IPAddress]] = []
    for info in infos:
        raw = str(info[4][0])
        try:
            addresses.append((raw, ipaddress.ip_address(raw.split("%", 1)[0])))
        except ValueError:
            continue
    if not addresses:
        raise ProbeError(ErrorCode.DNS_FAILURE, f"Host {host!r} has no usable address")
    for raw, addr in addresses:
        if not is_blocked(addr, allow_networks):
            return raw
    _LOG.info("refused probe of %r: resolves only to internal addresses", host)
    raise ProbeError(
        ErrorCode.ADDRESS_BLOCKED,
        f"Host {host!r} resolves to {addresses[0][1]}, an internal address that may not be probed",
    )
