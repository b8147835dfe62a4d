"""Text tables and the JSON file of a bench run; every service figure also as a ratio to echo."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from bench.stats import PointResult


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else math.nan


def _fmt(value: float, digits: int = 2) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Right-aligned columns (the first one left-aligned)."""
    body = [list(r) for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)])


def echo_ratios(point: PointResult, echo: PointResult | None) -> dict[str, float]:
    """throughput, CPU-per-call and p99 of a service point divided by the echo's."""
    if echo is None:
        return {"throughput": math.nan, "cpu_per_call": math.nan, "p99": math.nan}
    return {
        "throughput": _ratio(point.throughput, echo.throughput),
        "cpu_per_call": _ratio(point.server_cpu_per_call_us, echo.server_cpu_per_call_us),
        "p99": _ratio(point.p99_ms, echo.p99_ms),
    }


def _errors(point: PointResult) -> str:
    if not point.errors:
        return "0"
    return ",".join(f"{code}:{n}" for code, n in sorted(point.errors.items()))


LOAD_HEADERS = (
    "workload", "conc", "calls/s", "p50 ms", "p90 ms", "p99 ms", "errors",
    "srv CPU%", "srv µs/call", "cli µs/call", "thr/echo", "cpu/echo", "p99/echo",
)  # fmt: skip


def label(target: str, workload: str, security: str) -> str:
    """'get', 'get [mtls+jwt]', 'echo', 'echo [mTLS]' (the echo authenticates no caller)."""
    if security == "plaintext":
        return workload if target == "service" else "echo"
    return f"{workload} [{security}]" if target == "service" else "echo [mTLS]"


def load_row(point: PointResult, echo: PointResult | None) -> list[str]:
    r = echo_ratios(point, echo) if point.target == "service" else {}
    cpu_pct = 100.0 * point.server_cpu_s / point.window_s if point.window_s else math.nan
    return [
        label(point.target, point.workload, point.security)
        if point.target == "service" or point.security != "plaintext"
        else "echo (no interceptors)",
        str(point.concurrency),
        _fmt(point.throughput, 0),
        _fmt(point.p50_ms),
        _fmt(point.p90_ms),
        _fmt(point.p99_ms),
        _errors(point),
        _fmt(cpu_pct, 0),
        _fmt(point.server_cpu_per_call_us, 0),
        _fmt(point.client_cpu_per_call_us, 0),
        _fmt(r.get("throughput", math.nan)) if r else "1",
        _fmt(r.get("cpu_per_call", math.nan)) if r else "1",
        _fmt(r.get("p99", math.nan)) if r else "1",
    ]


def load_table(points: Sequence[PointResult]) -> str:
    """Every point; a service point's ratios are to the echo of the same security mode."""
    echoes = {(p.security, p.concurrency): p for p in points if p.target == "echo"}
    modes = list(dict.fromkeys(p.security for p in points))
    ordered = sorted(
        points, key=lambda p: (p.concurrency, modes.index(p.security), p.target != "echo")
    )
    return table(
        LOAD_HEADERS, (load_row(p, echoes.get((p.security, p.concurrency))) for p in ordered)
    )


def security_rows(
    points: Sequence[PointResult], baseline: str = "plaintext"
) -> list[dict[str, Any]]:
    """Each secure service point against the plaintext one at the same workload and concurrency.

    The echo runs in both modes too, so echo_cpu_ratio is what TLS itself costs a bare server;
    auth_overhead_beyond_tls = service_cpu_ratio / echo_cpu_ratio is what the service adds on
    top of that (authentication, policy, token cache), 1.0 meaning nothing.
    """
    by_key = {(p.target, p.workload, p.security, p.concurrency): p for p in points}
    rows: list[dict[str, Any]] = []
    for p in points:
        if p.target != "service" or p.security == baseline:
            continue
        plain = by_key.get(("service", p.workload, baseline, p.concurrency))
        echo_plain = by_key.get(("echo", "echo", baseline, p.concurrency))
        echo_sec = by_key.get(("echo", "echo", p.security, p.concurrency))
        if plain is None or echo_plain is None or echo_sec is None:
            continue

        def pair(a: float, b: float, mode: str = p.security) -> dict[str, float]:
            return {baseline: a, mode: b}

        svc_ratio = _ratio(p.server_cpu_per_call_us, plain.server_cpu_per_call_us)
        echo_ratio = _ratio(echo_sec.server_cpu_per_call_us, echo_plain.server_cpu_per_call_us)
        rows.append(
            {
                "workload": p.workload,
                "concurrency": p.concurrency,
                "security": p.security,
                "service_cpu_per_call_us": pair(
                    plain.server_cpu_per_call_us, p.server_cpu_per_call_us
                ),
                "echo_cpu_per_call_us": pair(
                    echo_plain.server_cpu_per_call_us, echo_sec.server_cpu_per_call_us
                ),
                "service_cpu_ratio": svc_ratio,
                "echo_cpu_ratio": echo_ratio,
                "auth_overhead_beyond_tls": _ratio(svc_ratio, echo_ratio),
                "throughput": pair(plain.throughput, p.throughput),
                "echo_throughput": pair(echo_plain.throughput, echo_sec.throughput),
                "throughput_vs_echo": pair(
                    _ratio(plain.throughput, echo_plain.throughput),
                    _ratio(p.throughput, echo_sec.throughput),
                ),
                "p99_ms": pair(plain.p99_ms, p.p99_ms),
            }
        )
    rows.sort(key=lambda r: (r["workload"], r["security"], r["concurrency"]))
    return rows


SECURITY_HEADERS = (
    "workload", "conc", "mode", "svc µs plain", "svc µs sec", "svc x", "echo µs plain",
    "echo µs TLS", "echo x", "auth beyond TLS", "thr/echo plain", "thr/echo sec",
)  # fmt: skip


def security_table(rows: Sequence[dict[str, Any]]) -> str:
    def cells(r: dict[str, Any]) -> list[str]:
        plain, sec = "plaintext", r["security"]
        return [
            r["workload"], str(r["concurrency"]), sec,
            _fmt(r["service_cpu_per_call_us"][plain], 0),
            _fmt(r["service_cpu_per_call_us"][sec], 0), _fmt(r["service_cpu_ratio"]),
            _fmt(r["echo_cpu_per_call_us"][plain], 0), _fmt(r["echo_cpu_per_call_us"][sec], 0),
            _fmt(r["echo_cpu_ratio"]), _fmt(r["auth_overhead_beyond_tls"]),
            _fmt(r["throughput_vs_echo"][plain]), _fmt(r["throughput_vs_echo"][sec]),
        ]  # fmt: skip

    return table(SECURITY_HEADERS, (cells(r) for r in rows))


def list_scaling_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ("accounts", "total_size", "calls", "p50 ms", "p90 ms", "p99 ms", "srv µs/call",
               "x smallest p50", "seed s")  # fmt: skip
    base = rows[0]["result"].p50_ms if rows else math.nan
    return table(
        headers,
        (
            [
                str(r["accounts"]),
                str(r["total_size"]),
                str(r["result"].calls),
                _fmt(r["result"].p50_ms),
                _fmt(r["result"].p90_ms),
                _fmt(r["result"].p99_ms),
                _fmt(r["result"].server_cpu_per_call_us, 0),
                _fmt(_ratio(r["result"].p50_ms, base)),
                _fmt(r["seed_s"], 1),
            ]
            for r in rows
        ),
    )


def isolation_table(result: dict[str, Any]) -> str:
    headers = ("GetAccount", "conc", "calls/s", "p50 ms", "p99 ms", "errors", "srv µs/call")
    rows = []
    for label, key in (("alone", "baseline"), ("+ TestConnection in flight", "loaded")):
        p: PointResult = result[key]
        rows.append([
            label, str(p.concurrency), _fmt(p.throughput, 0), _fmt(p.p50_ms), _fmt(p.p99_ms),
            _errors(p), _fmt(p.server_cpu_per_call_us, 0),
        ])  # fmt: skip
    return table(headers, rows)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(document), indent=2, ensure_ascii=False) + "\n")
