"""SQLite writes run on the event loop only while nobody else holds the write lock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from mailaccounts_client import AccountClient
from support.factories import SQLITE_ONLY, account_fields
from support.grpc_server import ServerThread


@SQLITE_ONLY
def test_write_waits_off_the_loop_while_another_process_holds_the_lock(
    server: ServerThread, client: AccountClient, tmp_path: Path
) -> None:
    existing = client.create_account(**account_fields())
    holder = sqlite3.connect(tmp_path / "accounts.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as a second server or the purge command would
    outcome: dict[str, Any] = {}
    started = threading.Event()

    def create() -> None:
        started.set()
        try:
            outcome["account"] = client.create_account(**account_fields(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcome["error"] = exc

    worker = threading.Thread(target=create)
    worker.start()
    started.wait(5)
    try:
        # The waiting write must not stall the server: reads and the health of the loop go on.
        for _ in range(20):
            assert client.get_account(existing.id, timeout=5).id == existing.id
        assert worker.is_alive(), "the write did not wait for the lock"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    worker.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert client.get_account(outcome["account"].id) == outcome["account"]


@SQLITE_ONLY
def test_concurrent_writes_all_land(client: AccountClient) -> None:
    results: list[str] = []
    errors: list[Exception] = []

    def create() -> None:
        try:
            results.append(client.create_account(**account_fields()).id)
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(set(results)) == 20
    assert client.list_accounts(page_size=100).total_size == 20
