"""`serve --workers N`: N server processes sharing one port, so reads use every core.

Python serves on one core at a time (the GIL); SO_REUSEPORT lets the kernel spread incoming
connections over N independent processes. The parent migrates once, starts the workers with
its own command line, forwards SIGTERM/SIGINT and exits 0 when all of them did.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import ConfigurationError

_LOG = logging.getLogger(__name__)
_POLL_S = 0.2


def run_workers(settings: Settings, argv: list[str], *, prepare: Callable[[], None]) -> int:
    """Starts `settings.workers` copies of this command; returns the exit code for the parent.

    `prepare()` (migrations, key file) runs once here so the workers do not race on it.
    """
    if settings.listen.rsplit(":", 1)[-1] == "0":
        raise ConfigurationError("--workers needs a fixed port: the workers must share it")
    prepare()
    procs: list[subprocess.Popen[bytes]] = []
    for index in range(settings.workers):
        env = {**os.environ, "MAILACCOUNTS_WORKER_INDEX": str(index)}
        procs.append(
            subprocess.Popen([sys.executable, "-m", "mailaccounts_server", *argv], env=env)
        )
    _LOG.info("started %d workers on %s: pids %s", len(procs), settings.listen,
              [p.pid for p in procs])  # fmt: skip

    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def forward_reload(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:  # SIGHUP: each worker reloads its policy; nobody stops
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    signal.signal(signal.SIGHUP, forward_reload)
    while any(p.poll() is None for p in procs):
        if not stopping and any(p.poll() is not None for p in procs):
            # A worker died on its own: stop the rest rather than serve at reduced capacity
            # unnoticed; the supervisor (systemd, Kubernetes) restarts the whole unit.
            _LOG.error("a worker exited unexpectedly; stopping the others")
            forward(signal.SIGTERM, None)
        time.sleep(_POLL_S)
    codes = [p.returncode for p in procs]
    _LOG.info("workers exited with %s", codes)
    return 0 if stopping and all(code == 0 for code in codes) else 1
