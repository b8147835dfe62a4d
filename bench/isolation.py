"""Isolation: GetAccount p99 with and without many TestConnection calls stuck on a blackhole.

The blackhole is a loopback TCP server in the load generator process that accepts connections
and never sends a byte, so each TestConnection waits for an IMAP greeting until its own timeout.
The accounts tested point at it (127.0.0.1 is allowed by the server's `--allow-network`), and
the tests are spread over several tenants so a per-tenant cap does not refuse them.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import grpc
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc

from bench import workloads
from bench.closed_loop import run_closed_loop
from bench.workloads import Fixture, Identity


class Blackhole:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts what is open."""

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        self._writers.add(writer)
        try:
            while await reader.read(4096):  # swallow whatever comes, answer nothing
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0)


async def _close_blackhole(hole: Blackhole) -> None:
    try:
        await asyncio.wait_for(hole.close(), 5)
    except TimeoutError:
        pass


async def run_isolation(
    *,
    target: str,
    server_pid: int,
    fixture: Fixture,
    concurrency: int,
    tests_in_flight: int,
    tenants: int,
    warmup_s: float,
    duration_s: float,
    call_timeout_s: float,
) -> dict[str, Any]:
    """Returns {"status": "ok"|"skipped", "reason", "baseline", "loaded", ...}."""
    hole = Blackhole()
    port = await hole.start()
    channel = grpc.aio.insecure_channel(target)
    stub = pb_grpc.AccountServiceStub(channel)
    background: list[asyncio.Task[None]] = []
    try:
        # One plain-IMAP account per tenant, pointing at the blackhole.
        testers: list[tuple[Identity, str]] = []
        for i in range(tenants):
            who = Identity(f"{fixture.reader.tenant_id}-iso{i}", "tester")
            request = workloads.create_request(hostname="127.0.0.1", port=port, plain=True)
            reply = await stub.CreateAccount(request, metadata=who.metadata, timeout=30)
            testers.append((who, reply.id))

        probe_who, probe_id = testers[0]
        try:
            probe = await stub.TestConnection(
                pb.TestConnectionRequest(id=probe_id, timeout_seconds=1),
                metadata=probe_who.metadata,
                timeout=15,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return {"status": "skipped", "reason": "TestConnection unimplemented"}
            return {"status": "skipped", "reason": f"TestConnection probe: {exc.code().name}"}
        probe_code = pb.ConnectionErrorCode.Name(probe.error_code)
        if probe.error_code == pb.CONNECTION_ERROR_CODE_ADDRESS_BLOCKED:
            return {"status": "skipped", "reason": f"SSRF guard blocked 127.0.0.1 ({probe_code})"}

        def get_calls() -> list[workloads.CallFn]:
            return [
                workloads.service_call("get", channel, fixture, timeout=call_timeout_s, seed=i)
                for i in range(concurrency)
            ]

        baseline = await run_closed_loop(
            get_calls(), workload="get-isolated", target="service", server_pid=server_pid,
            warmup_s=warmup_s, duration_s=duration_s,
        )  # fmt: skip

        # Long enough to outlive the window; cancelled at the end.
        test_seconds = min(120, math.ceil(warmup_s + duration_s + 20))
        outcomes: Counter[str] = Counter()

        async def keep_testing(who: Identity, account_id: str) -> None:
            request = pb.TestConnectionRequest(id=account_id, timeout_seconds=test_seconds)
            while True:
                try:
                    reply = await stub.TestConnection(
                        request, metadata=who.metadata, timeout=test_seconds + 10
                    )
                    outcomes[pb.ConnectionErrorCode.Name(reply.error_code)] += 1
                except grpc.aio.AioRpcError as exc:
                    outcomes[exc.code().name] += 1
                    await asyncio.sleep(0.05)

        for i in range(tests_in_flight):
            who, account_id = testers[i % len(testers)]
            background.append(asyncio.create_task(keep_testing(who, account_id)))
        for _ in range(100):  # up to 5 s for the tests to reach the blackhole
            if hole.open >= tests_in_flight:
                break
            await asyncio.sleep(0.05)
        open_before = hole.open
        loaded = await run_closed_loop(
            get_calls(), workload="get-with-tests", target="service", server_pid=server_pid,
            warmup_s=warmup_s, duration_s=duration_s,
        )  # fmt: skip
        open_after = hole.open
        return {
            "status": "ok",
            "probe_error_code": probe_code,
            "tests_requested": tests_in_flight,
            "tenants": tenants,
            "blackhole_open_before": open_before,
            "blackhole_open_after": open_after,
            "blackhole_accepted": hole.accepted,
            "test_outcomes_during_run": dict(outcomes),
            "baseline": baseline,
            "loaded": loaded,
            "p99_ratio": loaded.p99_ms / baseline.p99_ms if baseline.p99_ms else math.nan,
            "throughput_ratio": loaded.throughput / baseline.throughput
            if baseline.throughput
            else math.nan,
        }
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await channel.close(None)
        await _close_blackhole(hole)
