"""total_size of an unfiltered list comes from per-owner counters: they must stay exact."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from alembic import command
from conftest import TEST_KEY
from mailaccounts_client import AccountClient
from mailaccounts_server.config import Settings
from mailaccounts_server.storage.migrate import alembic_config
from sqlalchemy import create_engine, text
from support.factories import account_fields


def test_total_size_follows_create_delete_and_undelete(client: AccountClient) -> None:
    ids = [client.create_account(**account_fields()).id for _ in range(4)]
    assert client.list_accounts(page_size=1).total_size == 4
    client.delete_account(ids[0])
    client.delete_account(ids[1])
    assert client.list_accounts(page_size=1).total_size == 2
    assert client.list_accounts(page_size=1, show_deleted=True).total_size == 4
    client.undelete_account(ids[0])
    page = client.list_accounts(page_size=10)
    assert page.total_size == page.count == 3


def test_refused_create_does_not_count(client: AccountClient) -> None:
    fields = account_fields()
    client.create_account(**fields)
    try:
        client.create_account(**{**fields, "email_address": fields["email_address"].upper()})
    except Exception:  # noqa: BLE001 - ALREADY_EXISTS is asserted elsewhere
        pass
    assert client.list_accounts().total_size == 1


def test_migration_backfills_counts_of_existing_accounts(database_url: str) -> None:
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0001")
    engine = create_engine(database_url)
    row = {
        "tenant_id": "t-old", "user_id": "u-old", "account_name": "n",
        "protocol": "imap", "hostname": "h", "port": 1,
        "encryption": "tls", "username": "u", "credential_id": "c", "is_sync_enabled": True,
        "sync_interval": 300, "is_syncing": False, "is_enabled": True, "created_at": 1,
        "updated_at": 1, "version": 1,
    }  # fmt: skip
    names = ["id", "email_address", "email_normalized", "deleted_at", *row]
    columns = ", ".join(names)
    values = ", ".join(f":{name}" for name in names)
    with engine.begin() as conn:
        for index, deleted_at in enumerate([None, None, None, 5]):
            conn.execute(
                text(f"INSERT INTO accounts ({columns}) VALUES ({values})"),
                {**row, "id": str(uuid.uuid4()), "email_address": f"a{index}@x.com",
                 "email_normalized": f"a{index}@x.com", "deleted_at": deleted_at},
            )  # fmt: skip
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        counts = conn.execute(text("SELECT tenant_id, user_id, live FROM account_counts")).all()
    engine.dispose()
    assert [tuple(c) for c in counts] == [("t-old", "u-old", 3)]


def test_recount_command_repairs_drifted_counters(
    client: AccountClient, settings: Settings, tmp_path: Path
) -> None:
    ids = [client.create_account(**account_fields()).id for _ in range(3)]
    client.delete_account(ids[0])
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:  # as replicas without counters would leave it
        conn.execute(text("UPDATE account_counts SET live = 999"))
    engine.dispose()
    assert client.list_accounts().total_size == 999
    done = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "recount", "--database-url",
         settings.database_url],
        env={**os.environ, "MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert client.list_accounts().total_size == 2
