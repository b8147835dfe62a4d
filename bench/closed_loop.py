"""The closed-loop driver: N workers each keeping one call in flight, measured over a window."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import grpc

from bench.procstat import cpu_seconds, self_cpu_seconds
from bench.stats import PointResult, summarize
from bench.workloads import CallFn


async def run_closed_loop(
    calls: list[CallFn],
    *,
    workload: str,
    target: str,
    server_pid: int,
    warmup_s: float,
    duration_s: float,
    max_calls: int | None = None,
    drain_timeout_s: float = 15.0,
) -> PointResult:
    """Runs len(calls) workers (worker i loops on calls[i]) and measures one window.

    Each worker issues one call after another. After `warmup_s` the server's CPU time
    (/proc/<pid>/stat) is sampled and recording starts; calls that complete inside the window
    count, with their latency from `time.perf_counter_ns`. At the end of the window (or after
    `max_calls` recorded calls) the CPU time is sampled again.
    """
    latencies: dict[str, list[int]] = defaultdict(list)
    errors: Counter[str] = Counter()
    state = {"recording": False, "stopping": False, "recorded": 0}
    enough = asyncio.Event()

    async def worker(call: CallFn) -> None:
        while not state["stopping"]:
            method = ""
            t0 = time.perf_counter_ns()
            try:
                method = await call()
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            except Exception as exc:  # noqa: BLE001 - any failure is an error of the point
                code = type(exc).__name__
            t1 = time.perf_counter_ns()
            if state["recording"]:
                if method:
                    latencies[method].append(t1 - t0)
                else:
                    errors[code] += 1
                state["recorded"] += 1
                if max_calls is not None and state["recorded"] >= max_calls:
                    enough.set()
            if not method:
                await asyncio.sleep(0.001)  # a failing server must not turn this into a spin

    tasks = [asyncio.create_task(worker(call)) for call in calls]
    try:
        await asyncio.sleep(warmup_s)
        server0, client0, t0 = cpu_seconds(server_pid), self_cpu_seconds(), time.perf_counter()
        state["recording"] = True
        try:
            await asyncio.wait_for(enough.wait(), duration_s)
        except TimeoutError:
            pass
        # Same event-loop step as the flag change: no completion can slip in between.
        server1, client1, t1 = cpu_seconds(server_pid), self_cpu_seconds(), time.perf_counter()
        state["recording"] = False
        state["stopping"] = True
    finally:
        state["stopping"] = True
        _, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result = summarize(
        workload=workload,
        target=target,
        concurrency=len(calls),
        latencies_ns=latencies,
        errors=errors,
        window_s=t1 - t0,
        server_cpu_s=server1 - server0,
        client_cpu_s=client1 - client0,
    )
    if pending:
        result.notes.append(f"{len(pending)} calls still running after the window were cancelled")
    return result
