"""`make bench` keeps working: a --quick run completes every section, and the mtls+jwt mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_run_measures_every_workload_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["errors"] == []
    measured = {(p["workload"], p["concurrency"]) for p in results["points"]}
    for workload in ("echo", "get", "create", "update", "list", "mixed"):
        for concurrency in (1, 50):
            assert (workload, concurrency) in measured
    for point in results["points"]:
        assert point["calls"] > 0 and point["errors"] == {}, point
        assert point["server_cpu_per_call_us"] > 0
    assert all(row["result"]["calls"] > 0 for row in results["list_scaling"]["rows"])
    assert results["isolation"]["status"] == "ok"


def test_bench_quick_run_compares_plaintext_with_mtls_jwt(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--workloads", "get",
         "--security", "plaintext,mtls+jwt", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["errors"] == []
    measured = {(p["target"], p["security"], p["concurrency"]) for p in results["points"]}
    for target in ("service", "echo"):
        for security in ("plaintext", "mtls+jwt"):
            for concurrency in (1, 50):
                assert (target, security, concurrency) in measured
    for point in results["points"]:
        assert point["calls"] > 0 and point["errors"] == {}, point
    section = results["security"]
    assert section["modes"] == ["plaintext", "mtls+jwt"]
    assert {(r["workload"], r["concurrency"]) for r in section["rows"]} == {("get", 1), ("get", 50)}
    for row in section["rows"]:
        for key in ("service_cpu_per_call_us", "echo_cpu_per_call_us", "throughput_vs_echo"):
            assert set(row[key]) == {"plaintext", "mtls+jwt"}, row
            assert all(value > 0 for value in row[key].values()), row
        for key in ("service_cpu_ratio", "echo_cpu_ratio", "auth_overhead_beyond_tls"):
            assert row[key] > 0, row
    assert section["target"]["concurrency"] == 50 and section["target"]["measured"] > 0
