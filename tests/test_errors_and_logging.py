"""Unexpected failures surface as INTERNAL without internals; writes are logged without secrets."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import grpc
import pytest
from mailaccounts_client import AccountClient
from support.factories import PASSWORD, SQLITE_ONLY, account_fields, expect_error


@SQLITE_ONLY
def test_unexpected_failure_is_internal_without_sql_or_trace(
    client: AccountClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = client.create_account(**account_fields())
    with sqlite3.connect(tmp_path / "accounts.db") as conn:
        conn.execute("ALTER TABLE accounts RENAME TO accounts_gone")
    with caplog.at_level(logging.ERROR, logger="mailaccounts_server"):
        err = expect_error(grpc.StatusCode.INTERNAL, client.get_account, account.id)
    details = err.details()
    assert details.startswith("internal error (ref ")
    for leak in ("SELECT", "accounts", "Traceback", "sqlite", "File "):
        assert leak not in details
    ref = details.removeprefix("internal error (ref ").rstrip(")")
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "the failure must be logged with its ref"


@SQLITE_ONLY
def test_writes_are_logged_with_tenant_user_and_id_but_no_secret(
    client: AccountClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.caller is not None
    with caplog.at_level(logging.INFO, logger="mailaccounts_server"):
        account = client.create_account(**account_fields())
        client.update_account(account.id, port=143, password=PASSWORD + "-new")
        client.delete_account(account.id)
    lines = [r.getMessage() for r in caplog.records]
    for action in ("created", "updated", "deleted"):
        matching = [line for line in lines if f"account {action}" in line]
        assert matching, f"no log line for {action}"
        line = matching[0]
        assert client.caller.tenant_id in line
        assert client.caller.user_id in line
        assert account.id in line
    assert not any(PASSWORD in line for line in lines)
