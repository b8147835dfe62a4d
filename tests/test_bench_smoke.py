"""`make bench` keeps working: a --quick run of the harness completes with every section."""

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
