"""Throw-away PostgreSQL server and per-test databases for the test suite."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support.services import require_service

_LOG = logging.getLogger(__name__)

SKIP_MESSAGE = "PostgreSQL is not installed (run scripts/install-system-deps.sh as root)"
_OS_USER = "postgres"
_DB_USER = "postgres"
_HOST = "127.0.0.1"
_START_TIMEOUT_S = 30
_STOP_TIMEOUT_S = 30
# Unix socket paths are limited to ~107 bytes and PostgreSQL appends "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 80
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Settings that trade durability for speed: the data is thrown away after the session.
# shared_buffers stays small because several engineers' suites may run on one machine at once.
_TEST_SETTINGS = {
    "listen_addresses": f"'{_HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_min_duration_statement": "-1",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries were found on this machine."""


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: sort "9.6" < "15" < "16" numerically, not lexically.
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_bindir() -> Path | None:
    """Locate a PostgreSQL bin directory holding initdb, pg_ctl and postgres (highest version)."""
    needed = ("initdb", "pg_ctl", "postgres")

    def usable(candidate: Path) -> bool:
        return all(os.access(candidate / name, os.X_OK) for name in needed)

    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if usable(p)]
    if debian:
        return max(debian, key=_version_key)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out and usable(Path(out)):
                return Path(out)
    initdb = shutil.which("initdb")
    if initdb and usable(Path(initdb).parent):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_server_user(argv: Sequence[str]) -> list[str]:
    # initdb and postgres refuse to run as root, so drop to the postgres OS account.
    if _running_as_root():
        return ["runuser", "-u", _OS_USER, "--", *argv]
    return list(argv)


def _chown_to_server_user(path: Path) -> None:
    if _running_as_root():
        entry = pwd.getpwnam(_OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _server_user_can_write(path: Path) -> bool:
    if not _running_as_root():
        return True
    probe = subprocess.run(
        ["runuser", "-u", _OS_USER, "--", "test", "-w", str(path), "-a", "-x", str(path)],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


def _run(argv: Sequence[str], *, cwd: Path, what: str) -> None:
    result = subprocess.run(
        _as_server_user(argv),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL cluster reachable on loopback TCP with trust auth."""

    host: str
    port: int
    user: str
    bindir: Path
    data_dir: Path
    socket_dir: Path
    log_file: Path
    _owned_base: Path | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin_url(self) -> str:
        """SQLAlchemy URL of the maintenance database ``postgres``."""
        return self.url("postgres")

    def _admin_connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        _check_db_name(name)
        with self._admin_connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any client a test forgot to close."""
        _check_db_name(name)
        with self._admin_connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def shut_down(self) -> None:
        """Stops the server as an operator's restart does (fast shutdown: sessions are cut),
        keeping its data for `start_again`."""
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w"]
            + ["-t", str(_STOP_TIMEOUT_S), "stop"],
            cwd=self.data_dir.parent,
            what="pg_ctl stop",
        )

    def start_again(self) -> None:
        """Starts the server shut down by `shut_down`, on the same port and data."""
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file)]
            + ["-w", "-t", str(_START_TIMEOUT_S), "start"],
            cwd=self.data_dir.parent,
            what="pg_ctl start",
        )
        _wait_until_accepting(self)

    def processes(self) -> list[int]:
        """The postmaster and every backend of this cluster (for SIGSTOP / SIGCONT)."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == postmaster:
                        pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove directories this helper created."""
        if self._stopped:
            return
        self._stopped = True
        if (self.data_dir / "postmaster.pid").exists():
            pg_ctl = str(self.bindir / "pg_ctl")
            try:
                _run(
                    [pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w"]
                    + ["-t", str(_STOP_TIMEOUT_S), "stop"],
                    cwd=self.data_dir.parent,
                    what="pg_ctl stop",
                )
            except (RuntimeError, subprocess.TimeoutExpired):
                _LOG.warning("fast shutdown failed; forcing immediate shutdown", exc_info=True)
                _run(
                    [pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                    cwd=self.data_dir.parent,
                    what="pg_ctl stop -m immediate",
                )
        if self._owned_base is not None:
            shutil.rmtree(self._owned_base, ignore_errors=True)


def _check_db_name(name: str) -> None:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"unsupported test database name {name!r}")


def _prepare_base(workdir: Path) -> tuple[Path, Path | None]:
    """Return (base directory for the cluster, directory to delete on stop or None)."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / "pg"
    base.mkdir(exist_ok=True)
    _chown_to_server_user(base)
    socket_dir_len = len(str(base / "sock"))
    if socket_dir_len <= _MAX_SOCKET_DIR_LEN and _server_user_can_write(base):
        return base, None
    # pytest's temp root is 0700 root-owned, so the postgres account cannot reach it when we
    # run as root (and long paths break the Unix socket): use a private dir in the system tmp.
    owned = Path(tempfile.mkdtemp(prefix="mailaccounts-pg-"))
    _chown_to_server_user(owned)
    _LOG.info("PostgreSQL test cluster lives in %s (workdir %s is unsuitable)", owned, workdir)
    return owned, owned


def _write_settings(data_dir: Path, socket_dir: Path, port: int) -> None:
    settings = {**_TEST_SETTINGS, "port": str(port), "unix_socket_directories": f"'{socket_dir}'"}
    text = "".join(f"{name} = {value}\n" for name, value in settings.items())
    # postgresql.auto.conf is read last, so these override anything initdb wrote.
    auto_conf = data_dir / "postgresql.auto.conf"
    auto_conf.write_text("# written by tests/support/postgres.py\n" + text)
    _chown_to_server_user(auto_conf)


def _wait_until_accepting(server: PostgresServer) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with server._admin_connect() as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_postgres(workdir: Path) -> PostgresServer:
    """initdb and start a PostgreSQL cluster under ``workdir`` on a free loopback port."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(SKIP_MESSAGE)
    base, owned = _prepare_base(workdir)
    data_dir = base / "data"
    socket_dir = base / "sock"
    log_file = base / "postgres.log"
    try:
        socket_dir.mkdir(exist_ok=True)
        _chown_to_server_user(socket_dir)
        _run(
            [str(bindir / "initdb"), "-D", str(data_dir), "-U", _DB_USER]
            + ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            cwd=base,
            what="initdb",
        )
        last_error: Exception | None = None
        # The free port can be taken by someone else between probe and bind: retry a few times.
        for _attempt in range(3):
            port = _free_port()
            _write_settings(data_dir, socket_dir, port)
            server = PostgresServer(
                host=_HOST,
                port=port,
                user=_DB_USER,
                bindir=bindir,
                data_dir=data_dir,
                socket_dir=socket_dir,
                log_file=log_file,
                _owned_base=owned,
            )
            try:
                _run(
                    [str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w"]
                    + ["-t", str(_START_TIMEOUT_S), "start"],
                    cwd=base,
                    what="pg_ctl start",
                )
                _wait_until_accepting(server)
            except (RuntimeError, subprocess.TimeoutExpired, psycopg.OperationalError) as exc:
                last_error = exc
                # Stop whatever may have half-started, but keep the dirs for the next attempt.
                server._owned_base = None
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    server.stop()
                continue
            # Safety net for interpreter exits that skip fixture teardown; stop() is idempotent.
            atexit.register(server.stop)
            _LOG.info("PostgreSQL test server on %s:%d (data %s)", _HOST, port, data_dir)
            return server
        log_tail = log_file.read_text(errors="replace")[-4000:] if log_file.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {last_error}\n{log_tail}")
    except BaseException:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (skipped if PostgreSQL is absent)."""
    require_service(find_bindir() is not None, SKIP_MESSAGE)
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


def _database_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{slug}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database that only the current test uses; dropped afterwards."""
    name = _database_name(request.node.name)
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
