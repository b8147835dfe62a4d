"""Process CPU accounting from /proc and a description of the machine the bench ran on."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode()
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[1]) == pid:  # field 4 of proc(5): ppid
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` and of its live child processes (the workers of
    `serve --workers N`), in seconds, from /proc/<pid>/stat.

    The resolution is one clock tick (usually 10 ms), fine over windows of a second or more.
    """
    total = 0
    for each in (pid, *_children(pid)):
        try:
            fields = _stat_fields(each)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total / _CLK_TCK


def self_cpu_seconds() -> float:
    """CPU time of the calling process (all threads)."""
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class MachineInfo:
    """What the numbers were measured on."""

    date: str
    hostname: str
    nproc: int
    cpu_model: str
    loadavg: str
    python: str
    grpcio: str
    protobuf: str
    sqlalchemy: str
    kernel: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def machine_info() -> MachineInfo:
    return MachineInfo(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        hostname=platform.node(),
        nproc=len(os.sched_getaffinity(0)),
        cpu_model=_cpu_model(),
        loadavg=_loadavg(),
        python=sys.version.split()[0],
        grpcio=_version("grpcio"),
        protobuf=_version("protobuf"),
        sqlalchemy=_version("SQLAlchemy"),
        kernel=platform.release(),
    )
