"""The load generator: a closed loop of N in-flight grpc.aio calls, run in its own process.

The loop itself is `bench.closed_loop.run_closed_loop`. `LoadGenerator` is the parent's handle on
the process: each command (seed, point, list latency, isolation) runs as one `asyncio.run` in the
child and sends its result back over a pipe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import traceback
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench import workloads
from bench.closed_loop import run_closed_loop
from bench.isolation import run_isolation
from bench.security import ClientTls
from bench.stats import PointResult
from bench.workloads import CallFn, Fixture, Identity

# Separate channels get separate TCP connections only with their own subchannel pool.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]


def open_channel(target: str, tls: ClientTls | None = None) -> grpc.aio.Channel:
    """A plaintext channel, or an mTLS one presenting the client certificate of `tls`."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(target, tls.credentials(), options=CHANNEL_OPTIONS)


def open_channels(target: str, count: int, tls: ClientTls | None = None) -> list[grpc.aio.Channel]:
    return [open_channel(target, tls) for _ in range(count)]


# -- commands run inside the load generator process ----------------------------------------------


async def cmd_seed(
    target: str, reader: Identity, writer: Identity, count: int, tls: ClientTls | None = None
) -> Fixture:
    async with open_channel(target, tls) as channel:
        ids = await workloads.seed_accounts(channel, reader, count)
        await workloads.seed_accounts(channel, writer, 1)
    return Fixture(reader=reader, writer=writer, account_ids=tuple(ids))


async def cmd_point(
    *,
    target: str,
    kind: str,
    workload: str,
    fixture: Fixture,
    concurrency: int,
    server_pid: int,
    warmup_s: float,
    duration_s: float,
    call_timeout_s: float,
    channels: int,
    security: str = "plaintext",
    tls: ClientTls | None = None,
) -> PointResult:
    """One workload at one concurrency against the service (kind "service") or the echo.

    `security` only labels the result; `tls` (client certificate and CA) makes the channels
    mTLS, and the fixture's identities carry the bearer token if the mode has one.
    """
    chans = open_channels(target, channels, tls)
    try:
        calls: list[CallFn] = []
        for i in range(concurrency):
            channel = chans[i % len(chans)]
            if kind == "echo":
                calls.append(workloads.echo_call(channel, fixture.reader, timeout=call_timeout_s))
            else:
                calls.append(
                    workloads.service_call(
                        workload, channel, fixture, timeout=call_timeout_s, seed=i
                    )
                )
        result = await run_closed_loop(
            calls,
            workload=workload,
            target=kind,
            server_pid=server_pid,
            warmup_s=warmup_s,
            duration_s=duration_s,
        )
        result.security = security
        return result
    finally:
        for channel in chans:
            await channel.close(None)


async def cmd_list_latency(
    *, target: str, who: Identity, calls: int, server_pid: int, warmup_s: float, max_s: float
) -> tuple[PointResult, int]:
    """`calls` sequential first-page ListAccounts (page 50); also returns the total_size seen."""
    from mailaccounts.v1 import account_service_pb2 as pb
    from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.AccountServiceStub(channel)
        first = await stub.ListAccounts(
            pb.ListAccountsRequest(page_size=workloads.LIST_PAGE_SIZE), metadata=who.metadata
        )

        async def list_page() -> str:
            request = pb.ListAccountsRequest(page_size=workloads.LIST_PAGE_SIZE)
            await stub.ListAccounts(request, metadata=who.metadata, timeout=30)
            return "ListAccounts"

        result = await run_closed_loop(
            [list_page],
            workload="list-first-page",
            target="service",
            server_pid=server_pid,
            warmup_s=warmup_s,
            duration_s=max_s,
            max_calls=calls,
        )
    return result, first.total_size


async def cmd_isolation(**kwargs: Any) -> dict[str, Any]:
    return await run_isolation(**kwargs)


COMMANDS: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {
    "seed": cmd_seed,
    "point": cmd_point,
    "list_latency": cmd_list_latency,
    "isolation": cmd_isolation,
}


def worker_main(conn: Connection) -> None:
    """Entry point of the load generator process: runs commands until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    while True:
        try:
            name, kwargs = conn.recv()
        except EOFError:
            return
        if name == "stop":
            return
        try:
            conn.send(("ok", asyncio.run(COMMANDS[name](**kwargs))))
        except BaseException:  # noqa: BLE001 - reported to the parent, which decides
            conn.send(("error", traceback.format_exc()))


class LoadGenerator:
    """The parent's handle on the load generator process (spawned, so no forked gRPC state)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=worker_main, args=(child,), name="bench-loadgen")
        self._proc.daemon = True
        self._proc.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def run(self, command: str, *, timeout: float, **kwargs: Any) -> Any:
        """Runs one command in the child; raises TimeoutError or RuntimeError (child's trace)."""
        self._conn.send((command, kwargs))
        if not self._conn.poll(timeout):
            raise TimeoutError(f"load generator command {command!r} took more than {timeout:.0f}s")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"load generator command {command!r} failed:\n{value}")
        return value

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("stop", {}))
            except OSError:
                pass
            self._proc.join(3)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(3)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(3)
        self._conn.close()
