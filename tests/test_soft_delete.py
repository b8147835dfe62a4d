"""Soft delete: hidden but restorable within the retention window, then purged for good."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
from conftest import TEST_KEY
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from mailaccounts_server import app
from mailaccounts_server.config import Settings
from sqlalchemy import Engine, text
from support.factories import account_fields, expect_error, new_caller
from support.grpc_server import ServerThread

NOT_FOUND = grpc.StatusCode.NOT_FOUND


def credential_exists(engine: Engine, credential_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM credentials WHERE id = :id"), {"id": credential_id}
        ).scalar_one()
    return bool(found)


def account_row_exists(engine: Engine, account_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM accounts WHERE id = :id"), {"id": account_id}
        ).scalar_one()
    return bool(found)


def purge(settings: Settings, *, deleted_until_us: int) -> int:
    """Runs the purge as if `retention` had passed since `deleted_until_us` (no sleeping)."""
    return app.purge_once(settings, at_us=deleted_until_us + settings.retention_us)


def delete_time_us(client: AccountClient, account_id: str) -> int:
    return client.delete_account(account_id).delete_time.ToMicroseconds()


# -- hidden after delete --------------------------------------------------------------------


def test_deleted_account_is_not_found_by_get(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    expect_error(NOT_FOUND, client.get_account, account.id)


def test_deleted_account_is_not_listed(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    page = client.list_accounts()
    assert list(page.accounts) == []
    assert page.total_size == 0


def test_deleted_account_cannot_be_updated(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    expect_error(NOT_FOUND, client.update_account, account.id, account_name="ghost")


def test_show_deleted_lists_it_with_delete_time(client: AccountClient, account: pb.Account) -> None:
    live = client.create_account(**account_fields())
    response = client.delete_account(account.id)
    page = client.list_accounts(show_deleted=True)
    by_id = {a.id: a for a in page.accounts}
    assert set(by_id) == {account.id, live.id}
    assert page.total_size == 2
    assert by_id[account.id].HasField("delete_time")
    assert by_id[account.id].delete_time == response.delete_time
    assert not by_id[live.id].HasField("delete_time")


def test_delete_reports_when_restore_expires(
    client: AccountClient, account: pb.Account, settings: Settings
) -> None:
    response = client.delete_account(account.id)
    window = response.expire_time.ToMicroseconds() - response.delete_time.ToMicroseconds()
    assert window == settings.retention_us


# -- undelete -------------------------------------------------------------------------------


def test_undelete_restores_the_account(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    restored = client.undelete_account(account.id)
    assert not restored.HasField("delete_time")
    assert restored.etag != account.etag
    assert restored.account_name == account.account_name
    assert restored.credential_id == account.credential_id
    assert client.get_account(account.id) == restored
    assert [a.id for a in client.list_accounts().accounts] == [account.id]


def test_undelete_of_a_live_account_is_failed_precondition(
    client: AccountClient, account: pb.Account
) -> None:
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, client.undelete_account, account.id)
    assert client.get_account(account.id) == account


def test_undelete_of_another_tenants_account_is_denied(
    client: AccountClient, account: pb.Account
) -> None:
    client.delete_account(account.id)
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        client.as_caller(new_caller()).undelete_account,
        account.id,
    )
    expect_error(NOT_FOUND, client.get_account, account.id)


def test_undelete_past_retention_is_not_found(make_server: Callable[..., ServerThread]) -> None:
    # A zero-length window: every deleted account is already past it, without waiting.
    server = make_server(retention_days=0)
    with AccountClient(server.target, new_caller()) as client:
        account = client.create_account(**account_fields())
        client.delete_account(account.id)
        expect_error(NOT_FOUND, client.undelete_account, account.id)
        assert list(client.list_accounts(show_deleted=True).accounts) == []


# -- purge ----------------------------------------------------------------------------------


def test_purge_removes_expired_accounts_and_their_credentials(
    client: AccountClient, account: pb.Account, settings: Settings, engine: Engine
) -> None:
    deleted_at = delete_time_us(client, account.id)
    assert purge(settings, deleted_until_us=deleted_at) == 1
    assert not account_row_exists(engine, account.id)
    assert not credential_exists(engine, account.credential_id)
    expect_error(NOT_FOUND, client.undelete_account, account.id)


def test_purge_keeps_deleted_accounts_still_inside_retention(
    client: AccountClient, settings: Settings, engine: Engine
) -> None:
    older = client.create_account(**account_fields())
    newer = client.create_account(**account_fields())
    older_deleted = delete_time_us(client, older.id)
    newer_deleted = delete_time_us(client, newer.id)
    assert newer_deleted > older_deleted
    assert purge(settings, deleted_until_us=older_deleted) == 1
    assert not account_row_exists(engine, older.id)
    assert credential_exists(engine, newer.credential_id)
    restored = client.undelete_account(newer.id)
    assert restored.credential_id == newer.credential_id


def test_purge_keeps_a_credential_another_live_account_uses(
    client: AccountClient, account: pb.Account, settings: Settings, engine: Engine
) -> None:
    sharer = client.create_account(
        **account_fields(password=None, credential_id=account.credential_id)
    )
    assert sharer.credential_id == account.credential_id
    deleted_at = delete_time_us(client, account.id)
    assert purge(settings, deleted_until_us=deleted_at) == 1
    assert credential_exists(engine, account.credential_id)
    assert client.get_account(sharer.id) == sharer


def test_purge_command_exits_0_and_purges(
    client: AccountClient, account: pb.Account, settings: Settings, tmp_path: Path
) -> None:
    client.delete_account(account.id)
    env = {
        **os.environ,
        "MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY,
        # Zero retention: the account just deleted is already expired.
        "MAILACCOUNTS_RETENTION_DAYS": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "purge",
         "--database-url", settings.database_url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "purged 1 accounts" in done.stderr
    expect_error(NOT_FOUND, client.undelete_account, account.id)
