"""Optional py-spy sampling of the server during a workload, and a summary of where CPU goes.

py-spy is not a project dependency: `--py-spy get,create` uses it when `py-spy` is on PATH or in
the virtualenv (`.venv/bin/pip install py-spy`). Profiled runs are extra points, kept out of the
main table because sampling slows the server a little.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# A sample's category is that of the deepest frame (leaf first) matching a needle; generic
# interpreter frames (native mode) match nothing and are skipped over.
_DRIVER_FUNCS = ("do_execute", "do_executemany", "do_commit", "do_rollback", "do_close")
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DB driver (sqlite3/psycopg, C)", ("psycopg", "sqlite3", "libsqlite")),
    ("SQLAlchemy (Python)", ("sqlalchemy/", "sqlalchemy.")),
    ("protobuf", ("google/protobuf", "_pb2", "upb_", "_message.")),
    (
        "thread pool hop (futures, loop wake-up)",
        (
            "concurrent/futures",
            "threading.py",
            "queue.py",
            "_write_to_self",
            "_read_from_self",
            "call_soon_threadsafe",
            "run_in_executor",
            "mailaccounts_server/concurrency",
        ),
    ),
    ("grpc (cygrpc/core)", ("grpc/", "grpc_", "cygrpc", "libgrpc", "grpc_core")),
    ("logging", ("logging/",)),
    ("cryptography (AES-GCM)", ("cryptography/", "libcrypto", "_rust.")),
    ("service code (mailaccounts_server)", ("mailaccounts_server/", "mailaccounts/")),
    (
        "stdlib uuid/hmac/hashlib/enum/dataclasses",
        (
            "uuid.py",
            "hmac.py",
            "enum.py",
            "dataclasses",
            "contextlib.py",
            "contextvars",
        ),
    ),
    ("asyncio loop (incl. Cython callbacks py-spy cannot see)", ("asyncio/", "selectors.py")),
    ("syscalls/libc", ("libc.so", "epoll_wait", "__GI_", "syscall")),
)
MODES = ("gil", "all", "native")


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(
    py_spy: str, pid: int, seconds: float, output: Path, *, mode: str = "gil", rate: int = 250
) -> subprocess.Popen[bytes]:
    """py-spy record in collapsed ("raw") format for `seconds`.

    mode "gil": only the thread holding the GIL (the server's serial bottleneck), no pauses;
    "all": every thread py-spy thinks is active (it counts some waits, e.g. an executor thread
    blocked in queue.get); "native": GIL holder with C frames (pauses the process: slower).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(rate), "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    if mode in ("gil", "native"):
        argv.append("--gil")
    argv.append("--native" if mode == "native" else "--nonblocking")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_category(frame: str) -> str | None:
    func = frame.split(" (", 1)[0]
    if "sqlalchemy/" in frame and func in _DRIVER_FUNCS:
        return _CATEGORIES[0][0]
    for name, needles in _CATEGORIES:
        if any(n in frame for n in needles):
            return name
    return None


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        found = _frame_category(frame)
        if found is not None:
            return found
    return "other"


def _short(frame: str) -> str:
    """'func (/long/path/pkg/mod.py:12)' -> 'func (pkg/mod.py:12)'."""
    if " (" not in frame:
        return frame
    func, where = frame.split(" (", 1)
    parts = where.rstrip(")").split("/")
    return f"{func} ({'/'.join(parts[-2:])})"


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Self-time by category and frame, and inclusive time by function, from collapsed stacks."""
    by_category: Counter[str] = Counter()
    self_frames: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_category[_category(frames)] += count
        self_frames[_short(frames[-1])] += count
        for frame in {_short(f).rsplit(":", 1)[0] for f in frames}:  # function, not line
            inclusive[frame] += count

    def pct(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return (
            [(k, round(100.0 * v / total, 1)) for k, v in counter.most_common(n)] if total else []
        )

    return {
        "samples": total,
        "self_by_category_pct": dict(pct(by_category, len(by_category))),
        "top_self_frames_pct": pct(self_frames, top),
        "top_inclusive_functions_pct": pct(inclusive, top * 2),
    }


def format_summary(name: str, summary: dict[str, Any], top: int = 12) -> str:
    lines = [f"-- {name}: {summary['samples']} samples (self time by category) --"]
    lines += [f"  {pct:5.1f}%  {cat}" for cat, pct in summary["self_by_category_pct"].items()]
    lines.append("  top self frames:")
    lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in summary["top_self_frames_pct"][:top]]
    return "\n".join(lines)
