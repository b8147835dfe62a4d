"""Alembic migrations: they build exactly the models' schema, and re-running them is harmless."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from conftest import TEST_KEY
from mailaccounts_client import AccountClient, Credentials
from mailaccounts_server.storage.migrate import alembic_config, pending_changes
from sqlalchemy import Engine, create_engine, text
from support.grpc_server import ServerThread


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    yield eng
    eng.dispose()


def head_revision(database_url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None
    return head


def stored_revisions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def run_migrate(database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "migrate", "--database-url", database_url],
        cwd=cwd, env={**os.environ, "MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_started_server_leaves_nothing_for_autogenerate(
    server: ServerThread, engine: Engine
) -> None:
    assert pending_changes(engine) == []


def test_started_server_stores_the_head_revision(
    server: ServerThread, engine: Engine, database_url: str
) -> None:
    assert stored_revisions(engine) == [head_revision(database_url)]


def test_migrate_command_is_idempotent(database_url: str, engine: Engine, tmp_path: Path) -> None:
    for _ in range(2):
        done = run_migrate(database_url, tmp_path)
        assert done.returncode == 0, done.stderr
    assert stored_revisions(engine) == [head_revision(database_url)]
    assert pending_changes(engine) == []


def test_alembic_upgrade_by_url_commits(database_url: str, engine: Engine) -> None:
    """The Alembic command API (and CLI) path of env.py, which opens its own connection."""
    command.upgrade(alembic_config(database_url), "head")
    assert stored_revisions(engine) == [head_revision(database_url)]
    assert pending_changes(engine) == []


def test_upgrade_from_0001_makes_existing_names_searchable_case_insensitively(
    database_url: str, engine: Engine, make_server: Callable[..., ServerThread]
) -> None:
    command.upgrade(alembic_config(database_url), "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (id, tenant_id, user_id, account_name, email_address,"
                " email_normalized, protocol, hostname, port, encryption, username,"
                " credential_id, is_sync_enabled, sync_interval, is_syncing, is_enabled,"
                " created_at, updated_at, version) VALUES (:id, 't-old', 'u-old', 'ÉCOLE Mail',"
                " 'old@example.com', 'old@example.com', 'imap', 'imap.example.com', 993, 'tls',"
                " 'old', 'cred', true, 300, false, true, 1, 1, 1)"
            ),
            {"id": "00000000-0000-4000-8000-000000000001"},
        )
    server = make_server()  # migrates to head on start
    with AccountClient(server.target, Credentials("t-old", "u-old")) as client:
        found = client.list_accounts(query="école mail")
    assert [a.id for a in found.accounts] == ["00000000-0000-4000-8000-000000000001"]
