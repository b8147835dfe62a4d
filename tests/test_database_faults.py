"""Database faults: a PostgreSQL restart or freeze looks retryable (UNAVAILABLE, never
INTERNAL) and loses no acknowledged write; start-up waits for a database that is down; a full
SQLite disk is RESOURCE_EXHAUSTED and corrupts nothing. Real PostgreSQL, real tmpfs."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import TEST_KEY
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mailaccounts_client import AccountClient
from mailaccounts_server.config import Settings
from support.factories import SQLITE_ONLY, account_fields, clean_env, new_caller
from support.grpc_server import ServerThread
from support.postgres import SKIP_MESSAGE, PostgresServer, find_bindir, start_postgres
from support.process import free_port
from support.services import require_service

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, to restart and freeze without disturbing others."""
    require_service(find_bindir() is not None, SKIP_MESSAGE)
    server = start_postgres(tmp_path / "pg")
    try:
        yield server
    finally:
        for pid in server.processes() if (server.data_dir / "postmaster.pid").exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.stop()


def _settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        credential_keys=TEST_KEY,
        key_file=tmp_path / "unused.key",
        db_pool_size=5,
        db_connect_timeout_seconds=1.0,
        db_statement_timeout_seconds=2.0,
        **overrides,
    )


@pytest.fixture
def fault_server(own_postgres: PostgresServer, tmp_path: Path) -> Iterator[ServerThread]:
    server = ServerThread(_settings(own_postgres.create_database("faults"), tmp_path))
    yield server
    server.stop()


class Load:
    """Clients creating (with requestIds, retried after UNAVAILABLE) and reading accounts,
    recording every status they see."""

    def __init__(self, target: str, clients: int = 4) -> None:
        self.target = target
        self.codes: Counter[grpc.StatusCode] = Counter()
        self.acknowledged: dict[str, str] = {}  # address -> account id
        # address -> (caller, request) of creates that answered UNAVAILABLE or timed out
        self.unanswered: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.callers = [new_caller() for _ in range(clients)]
        self._threads = [threading.Thread(target=self._run, args=(c,)) for c in self.callers]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _record(self, code: grpc.StatusCode) -> None:
        with self._lock:
            self.codes[code] += 1

    def _run(self, caller: Any) -> None:
        with AccountClient(self.target, caller, timeout=3) as client:
            mine: list[str] = []
            while not self.stop.is_set():
                fields = account_fields(request_id=str(uuid.uuid4()))
                try:
                    created = client.create_account(**fields)
                    mine.append(created.id)
                    with self._lock:
                        self.acknowledged[fields["email_address"]] = created.id
                    self._record(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    self._record(exc.code())
                    if exc.code() in RETRYABLE:
                        with self._lock:
                            self.unanswered[fields["email_address"]] = (caller, fields)
                if mine:
                    try:
                        client.get_account(mine[-1])
                        self._record(grpc.StatusCode.OK)
                    except grpc.RpcError as exc:
                        self._record(exc.code())
                time.sleep(0.01)


def _owned_accounts(target: str, callers: list[Any]) -> dict[str, list[str]]:
    """address -> ids of live accounts, over every caller."""
    found: dict[str, list[str]] = {}
    for caller in callers:
        with AccountClient(target, caller) as client:
            for account in client.iter_accounts(page_size=500):
                found.setdefault(account.email_address, []).append(account.id)
    return found


def test_postgres_restart_under_load_is_retryable_and_loses_nothing(
    fault_server: ServerThread, own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mailaccounts_server")
    with Load(fault_server.target) as load:
        time.sleep(1.5)
        own_postgres.shut_down()
        time.sleep(2.0)
        own_postgres.start_again()
        time.sleep(2.5)
    assert load.codes[grpc.StatusCode.OK] > 20
    assert load.codes[grpc.StatusCode.UNAVAILABLE] > 0, f"the outage went unseen: {load.codes}"
    assert set(load.codes) <= {grpc.StatusCode.OK, *RETRYABLE}, load.codes
    # Every write that answered UNAVAILABLE is safe to retry with its requestId: afterwards it
    # exists exactly once; every acknowledged write is there.
    for address, (caller, fields) in load.unanswered.items():
        with AccountClient(fault_server.target, caller) as client:
            retried = client.create_account(**fields)  # a replay, or the first real create
        assert retried.email_address == address
    found = _owned_accounts(fault_server.target, load.callers)
    for address, account_id in load.acknowledged.items():
        assert found.get(address) == [account_id]
    assert all(len(ids) == 1 for ids in found.values())
    # One log line per outage transition, no trace per failed call.
    lost = [r for r in caplog.records if "database unreachable" in r.getMessage()]
    assert 1 <= len(lost) <= 3 < load.codes[grpc.StatusCode.UNAVAILABLE] + 3
    assert not [r for r in caplog.records if r.exc_info]


def test_frozen_database_answers_within_the_deadline_and_recovers(
    fault_server: ServerThread, own_postgres: PostgresServer
) -> None:
    with AccountClient(fault_server.target, new_caller()) as client:
        account = client.create_account(**account_fields())
        pids = own_postgres.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                client.get_account(account.id, timeout=1.5)
            assert info.value.code() in RETRYABLE
            assert time.monotonic() - started < 2.5
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while True:
            try:
                assert client.get_account(account.id, timeout=3).id == account.id
                break
            except grpc.RpcError as exc:
                assert exc.code() in RETRYABLE, exc
                assert time.monotonic() < deadline, "no recovery after the database thawed"
                time.sleep(0.2)


def _serve(database_url: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailaccounts_server", "serve", "--listen",
         f"127.0.0.1:{free_port()}", "--database-url", database_url],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        env={**clean_env(), "MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY, **env},
    )  # fmt: skip


def test_start_up_with_the_database_down_retries_then_exits_non_zero(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    proc = _serve(url, tmp_path, MAILACCOUNTS_DB_STARTUP_TIMEOUT_SECONDS="2")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert "database not reachable yet (attempt 1" in stderr
    assert "database unreachable at start-up after" in stderr
    assert "Traceback" not in stderr


def test_start_up_waits_for_a_database_that_comes_back(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.create_database("late")
    own_postgres.shut_down()
    proc = _serve(url, tmp_path, MAILACCOUNTS_DB_STARTUP_TIMEOUT_SECONDS="30")
    try:
        time.sleep(2)
        assert proc.poll() is None
        own_postgres.start_again()
        deadline = time.monotonic() + 30
        while "listening on" not in (line := proc.stderr.readline() if proc.stderr else ""):
            assert line or proc.poll() is None, "server exited"
            assert time.monotonic() < deadline
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mailaccounts.v1.AccountService"), timeout=2
        )
        return int(reply.status)


def _wait_for(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_health_reports_not_serving_after_the_configured_outage(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.create_database("health")
    server = ServerThread(_settings(url, tmp_path, db_unhealthy_after_seconds=1.0))
    try:
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert _health(server.target) == serving
        own_postgres.shut_down()
        _wait_for(lambda: _health(server.target) == not_serving, 10)
        own_postgres.start_again()
        _wait_for(lambda: _health(server.target) == serving, 15)
    finally:
        server.stop()


def test_default_health_stays_serving_through_an_outage(
    fault_server: ServerThread, own_postgres: PostgresServer
) -> None:
    own_postgres.shut_down()
    with AccountClient(fault_server.target, new_caller()) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.list_accounts()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        time.sleep(1.5)
    assert _health(fault_server.target) == health_pb2.HealthCheckResponse.SERVING
    own_postgres.start_again()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that can really fill up (needs root, as CI runs)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    require_service(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_full_sqlite_disk_is_resource_exhausted_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    db_file = small_disk / "accounts.db"
    server = ServerThread(_settings(f"sqlite:///{db_file}", tmp_path))
    try:
        with AccountClient(server.target, new_caller()) as client:
            kept = [client.create_account(**account_fields()).id for _ in range(5)]
            filler = _fill(small_disk)
            codes = Counter()
            for _ in range(30):
                try:
                    client.create_account(**account_fields(account_name="x" * 200))
                    codes[grpc.StatusCode.OK] += 1
                except grpc.RpcError as exc:
                    codes[exc.code()] += 1
            assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] > 0, codes
            assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
            for account_id in kept:
                assert client.get_account(account_id).id == account_id
            filler.unlink()
            after = client.create_account(**account_fields())
            listed = {a.id for a in client.iter_accounts()}
            assert set(kept) | {after.id} <= listed
    finally:
        server.stop()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@SQLITE_ONLY  # the file lock of SQLite; PostgreSQL has no such lock
def test_sqlite_locked_past_the_deadline_is_unavailable(
    client: AccountClient, settings: Settings
) -> None:
    path = settings.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(grpc.RpcError) as info:
            client.create_account(**account_fields(), timeout=1.5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert client.create_account(**account_fields()).id
