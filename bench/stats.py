"""Result of one measured point and the arithmetic behind it (percentiles, per-call CPU)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond latencies, in milliseconds (NaN if empty)."""
    if not sorted_ns:
        return float("nan")
    rank = max(1, min(len(sorted_ns), math.ceil(q / 100.0 * len(sorted_ns))))
    return sorted_ns[rank - 1] / 1e6


@dataclass
class PointResult:
    """One workload at one concurrency: client-side latency, throughput, errors, server CPU."""

    workload: str
    target: str  # "service" or "echo"
    concurrency: int
    calls: int  # successful calls completed inside the measured window
    errors: dict[str, int]  # status code name -> count, inside the window
    window_s: float
    throughput: float  # successful calls per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    server_cpu_s: float
    server_cpu_per_call_us: float
    client_cpu_per_call_us: float
    per_method: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    security: str = "plaintext"  # transport and caller authentication: plaintext or mtls+jwt

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(
    *,
    workload: str,
    target: str,
    concurrency: int,
    latencies_ns: dict[str, list[int]],
    errors: dict[str, int],
    window_s: float,
    server_cpu_s: float,
    client_cpu_s: float,
) -> PointResult:
    """Builds a PointResult from raw samples (latencies keyed by RPC method name)."""
    merged = sorted(ns for values in latencies_ns.values() for ns in values)
    calls = len(merged)
    per_call = 1e6 / calls if calls else float("nan")
    per_method: dict[str, dict[str, float]] = {}
    if len(latencies_ns) > 1:
        for method, values in sorted(latencies_ns.items()):
            ordered = sorted(values)
            per_method[method] = {
                "calls": float(len(ordered)),
                "p50_ms": percentile(ordered, 50),
                "p99_ms": percentile(ordered, 99),
            }
    return PointResult(
        workload=workload,
        target=target,
        concurrency=concurrency,
        calls=calls,
        errors=dict(errors),
        window_s=window_s,
        throughput=calls / window_s if window_s > 0 else float("nan"),
        p50_ms=percentile(merged, 50),
        p90_ms=percentile(merged, 90),
        p99_ms=percentile(merged, 99),
        mean_ms=(sum(merged) / calls / 1e6) if calls else float("nan"),
        max_ms=(merged[-1] / 1e6) if calls else float("nan"),
        server_cpu_s=server_cpu_s,
        server_cpu_per_call_us=server_cpu_s * per_call,
        client_cpu_per_call_us=client_cpu_s * per_call,
        per_method=per_method,
    )
