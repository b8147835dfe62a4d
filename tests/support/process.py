"""Runs the server as a real process (`python -m mailaccounts_server serve`), as users do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server process on a loopback port; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *extra: str,
        env: dict[str, str],
        health_target: str | None = None,
    ) -> None:
        """`health_target`: a plaintext address serving health (--health-listen) to wait on
        when the main listener needs TLS."""
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.health_target = health_target or self.target
        self.log_path = workdir / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailaccounts_server", "serve", "--listen", self.target,
             "--database-url", database_url, *extra],
            cwd=workdir,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_serving()

    def wait_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.health_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()
        return code
