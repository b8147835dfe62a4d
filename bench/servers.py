"""Starts, watches and stops the server processes under test (service and echo baseline)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE_NAME = "mailaccounts.v1.AccountService"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class ServerProcess:
    """One server child process, its port and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def _spawn(
    name: str, argv: list[str], workdir: Path, env: dict[str, str], port: int
) -> ServerProcess:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            # Own session: a Ctrl-C reaches only the bench, which then stops the servers itself.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return ServerProcess(name, proc, port, log_path)


def generate_key() -> str:
    """A fresh credential key from the server's own `generate-key` command."""
    out = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "generate-key"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def start_echo(
    workdir: Path, *, name: str = "echo", extra_args: Sequence[str] = ()
) -> ServerProcess:
    """The echo baseline; `extra_args` are echo_server flags (e.g. its TLS files)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.echo_server", "--port", str(port), *extra_args]
    env = {**os.environ, "PYTHONPATH": _repo_root()}
    return _spawn(name, argv, workdir, env, port)


def start_service(
    workdir: Path,
    database_url: str,
    *,
    log_level: str,
    allow_network: str,
    max_tests_per_tenant: int,
    workers: int = 1,
    name: str = "service",
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    """The service; `extra_args` are more `serve` flags (e.g. TLS and auth)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "mailaccounts_server", "serve",
        "--listen", f"127.0.0.1:{port}",
        "--database-url", database_url,
        "--log-level", log_level,
        "--allow-network", allow_network,
        # The isolation workload's silent mail server listens on a random high port.
        "--allow-port", "1024-65535",
        "--workers", str(workers),
        # The load generator is one tenant doing thousands of calls a second: limits far
        # above that, so the bench measures the limiter's cost without being refused by it.
        "--rate-reads-per-second", "1000000", "--rate-reads-burst", "1000000",
        "--rate-writes-per-second", "1000000", "--rate-writes-burst", "1000000",
        "--rate-tests-per-second", "1000000", "--rate-tests-burst", "1000000",
        *extra_args,
    ]  # fmt: skip
    env = {
        **os.environ,
        "MAILACCOUNTS_CREDENTIAL_KEYS": generate_key(),
        "MAILACCOUNTS_KEY_FILE": str(workdir / f"{name}.key"),
        "MAILACCOUNTS_LOG_LEVEL": log_level,
        "MAILACCOUNTS_MAX_TESTS_PER_TENANT": str(max_tests_per_tenant),
        "MAILACCOUNTS_GRACE_SECONDS": "1",
    }
    return _spawn(name, argv, workdir, env, port)


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def wait_serving(
    server: ServerProcess,
    service: str = "",
    timeout: float = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> float:
    """Polls grpc.health.v1 Check until SERVING; returns the seconds it took.

    With `credentials` the check goes over (m)TLS, so a server whose certificates the client
    does not accept never counts as up. Raises RuntimeError (with the server's log tail) if the
    process exits or time runs out.
    """
    start = time.monotonic()
    deadline = start + timeout
    channel = (
        grpc.insecure_channel(server.target)
        if credentials is None
        else grpc.secure_channel(server.target, credentials)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} server exited with {server.proc.returncode}:\n"
                    + server.log_tail()
                )
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - start
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} server not SERVING after {timeout:.0f}s:\n" + server.log_tail()
    )
