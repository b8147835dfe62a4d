"""Host-name lookups run on a bounded pool: a name server that never answers adds no threads."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from mailaccounts_server.mail import Encryption, ErrorCode, MailProber, ProbeTarget, Protocol
from mailaccounts_server.mail.lookup import LookupPool

POOL_SIZE = 8
CALLERS = 20
LOOKUPS = 200
# Room for a thread or two that pytest or the interpreter may start meanwhile.
SLACK = 2


def _threads_besides_watchdogs() -> int:
    # Each probe in flight has its deadline's watchdog timer (bounded by the probes running,
    # here the callers); what matters is the threads the lookups add.
    return sum(not isinstance(thread, threading.Timer) for thread in threading.enumerate())


def _lookup_threads() -> int:
    return sum(thread.name == "probe-dns" for thread in threading.enumerate())


def test_hung_resolver_never_adds_threads() -> None:
    """A resolver that sleeps 5 s stands in for a name server that never answers.

    200 probes with a 0.2 s budget run from 20 caller threads, started before the baseline is
    taken. The lookups may add the pool's 8 threads, where one thread per lookup would add
    about 200 (each lives 5 s, and the 200 probes take about 2 s).
    """
    release = threading.Event()
    calls: list[float] = []

    def hung(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        calls.append(time.monotonic())
        release.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    prober = MailProber(resolver=hung, dns_threads=POOL_SIZE)
    target = ProbeTarget("mail.example.test", 993, Protocol.IMAP, Encryption.TLS, "u", "pw", 0.2)
    outcomes: list[tuple[float, ErrorCode | None]] = []
    start = threading.Barrier(CALLERS + 1)

    def caller() -> None:
        start.wait()
        for _ in range(LOOKUPS // CALLERS):
            began = time.monotonic()
            result = prober.probe(target)
            outcomes.append((time.monotonic() - began, result.error_code))

    callers = [threading.Thread(target=caller, daemon=True) for _ in range(CALLERS)]
    for thread in callers:
        thread.start()
    baseline = _threads_besides_watchdogs()
    dns_before = _lookup_threads()  # idle ones of earlier tests' probers end after 30 s
    peak = peak_all = baseline
    try:
        start.wait()
        began = time.monotonic()
        while any(thread.is_alive() for thread in callers):
            peak = max(peak, _threads_besides_watchdogs())
            peak_all = max(peak_all, threading.active_count())
            time.sleep(0.005)
        elapsed = time.monotonic() - began
        dns_threads = _lookup_threads() - dns_before
    finally:
        release.set()
    print(
        f"threads: baseline {baseline}, peak {peak} ({peak_all} with watchdog timers), "
        f"probe-dns added {dns_threads}, resolver calls {len(calls)}, {elapsed:.2f}s"
    )
    assert len(outcomes) == LOOKUPS
    assert all(code is ErrorCode.TIMEOUT for _, code in outcomes)
    assert max(seconds for seconds, _ in outcomes) < 1.0
    assert elapsed < 5.0  # shorter than one hung lookup: nobody waited for the resolver
    assert dns_threads <= POOL_SIZE
    assert len(calls) <= POOL_SIZE  # queued lookups whose caller gave up never ran
    assert peak <= baseline + POOL_SIZE + SLACK, (baseline, peak)


def test_pool_serves_again_once_the_resolver_recovers() -> None:
    """A resolver that hangs until released, then answers, stands in for a recovering DNS."""
    release = threading.Event()

    def flaky(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        if host == "hung.test":
            release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.0.0.1", port))]

    prober = MailProber(resolver=flaky, dns_threads=2)
    hung = ProbeTarget("hung.test", 993, Protocol.IMAP, Encryption.TLS, "u", "pw-1", 0.2)
    for _ in range(4):
        assert prober.probe(hung).error_code is ErrorCode.TIMEOUT
    release.set()
    # 10.0.0.1 is internal: the answer arrived and was checked, without any connection.
    fine = ProbeTarget("fine.test", 993, Protocol.IMAP, Encryption.TLS, "u", "pw-1", 2)
    assert prober.probe(fine).error_code is ErrorCode.ADDRESS_BLOCKED


def test_lookup_pool_runs_at_most_its_size() -> None:
    pool = LookupPool(3)
    gate = threading.Event()
    running = threading.Semaphore(0)

    def work() -> int:
        running.release()
        gate.wait(5)
        return 1

    futures = [pool.submit(work) for _ in range(10)]
    for _ in range(3):
        assert running.acquire(timeout=2)
    assert not running.acquire(timeout=0.2)  # the other seven wait in the queue
    assert pool.threads == 3
    for future in futures[5:]:
        pool.withdraw(future)
    gate.set()
    assert [future.result(5) for future in futures[:5]] == [1] * 5
    assert all(future.cancelled() for future in futures[5:])


def test_lookup_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError):
        LookupPool(0)
