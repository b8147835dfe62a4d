"""Stored credentials over gRPC: create and share, replace on update, never leak, key rotation."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import (
    ConfigurationError,
    generate_key,
    key_id_for,
    parse_keys,
)
from support.dovecot import DovecotServer
from support.factories import (
    LOOPBACK,
    SQLITE_ONLY,
    account_fields,
    bad_request_fields,
    expect_error,
    new_caller,
)
from support.grpc_server import ServerThread

INVALID = grpc.StatusCode.INVALID_ARGUMENT
AUTH_FAILURE = pb.CONNECTION_ERROR_CODE_AUTH_FAILURE


def unique_password() -> str:
    return f"Uniq-{uuid.uuid4().hex}-pw"


def credential_rows(database_url: str) -> dict[str, tuple[str, str, str]]:
    """credential id -> (tenant_id, user_id, ciphertext), read straight from the table."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, tenant_id, user_id, ciphertext FROM credentials")
            ).all()
    finally:
        engine.dispose()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def dovecot_account(client: AccountClient, dovecot: DovecotServer, **overrides: Any) -> pb.Account:
    """A POP3 (plain) account of Dovecot's first user; the right password unless overridden."""
    fields: dict[str, Any] = {
        "protocol": pb.PROTOCOL_POP3,
        "encryption": pb.ENCRYPTION_NONE,
        "hostname": "127.0.0.1",
        "port": dovecot.pop3,
        "username": dovecot.user,
        "password": dovecot.password,
        **overrides,
    }
    if "credential_id" in overrides:
        fields["password"] = None  # account_fields drops it
    return client.create_account(**account_fields(**fields))


# -- create ---------------------------------------------------------------------------------


def test_create_with_password_stores_an_encrypted_credential(
    client: AccountClient, settings: Settings
) -> None:
    password = unique_password()
    account = client.create_account(**account_fields(password=password))
    assert account.credential_id
    rows = credential_rows(settings.database_url)
    assert client.caller is not None
    tenant_id, user_id, ciphertext = rows[account.credential_id]
    assert (tenant_id, user_id) == (client.caller.tenant_id, client.caller.user_id)
    assert password not in ciphertext


@SQLITE_ONLY
def test_create_response_never_contains_the_password(client: AccountClient) -> None:
    password = unique_password()
    account = client.create_account(**account_fields(password=password))
    assert password not in str(account)
    assert password not in str(client.get_account(account.id))
    assert password not in str(client.list_accounts())


def test_create_with_own_credential_id_shares_the_credential(
    client: AccountClient, settings: Settings
) -> None:
    first = client.create_account(**account_fields())
    second = client.create_account(
        **account_fields(password=None, credential_id=first.credential_id)
    )
    assert second.credential_id == first.credential_id
    assert len(credential_rows(settings.database_url)) == 1


def test_create_with_another_tenants_credential_id_is_invalid(client: AccountClient) -> None:
    theirs = client.as_caller(new_caller()).create_account(**account_fields())
    err = expect_error(
        INVALID,
        client.create_account,
        **account_fields(password=None, credential_id=theirs.credential_id),
    )
    assert "credentialId" in bad_request_fields(err)


@SQLITE_ONLY
def test_unknown_credential_id_fails_exactly_like_a_foreign_one(client: AccountClient) -> None:
    theirs = client.as_caller(new_caller()).create_account(**account_fields())
    foreign = expect_error(
        INVALID,
        client.create_account,
        **account_fields(password=None, credential_id=theirs.credential_id),
    )
    unknown = expect_error(
        INVALID,
        client.create_account,
        **account_fields(password=None, credential_id=str(uuid.uuid4())),
    )
    assert unknown.details() == foreign.details()
    assert bad_request_fields(unknown) == bad_request_fields(foreign)


@SQLITE_ONLY
def test_password_and_credential_id_together_are_invalid(client: AccountClient) -> None:
    mine = client.create_account(**account_fields())
    err = expect_error(
        INVALID,
        client.create_account,
        **account_fields(credential_id=mine.credential_id),
    )
    assert "either credentialId or password" in bad_request_fields(err)["password"]


# -- update ---------------------------------------------------------------------------------


def test_updated_password_is_used_by_the_next_test(
    loopback_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_account(loopback_client, dovecot, password=unique_password())
    assert (
        loopback_client.test_connection(account.id, timeout_seconds=10).error_code == AUTH_FAILURE
    )
    updated = loopback_client.update_account(account.id, password=dovecot.password)
    assert updated.credential_id != account.credential_id
    result = loopback_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message


def test_update_password_deletes_the_unused_old_credential(
    client: AccountClient, settings: Settings
) -> None:
    account = client.create_account(**account_fields())
    updated = client.update_account(account.id, password=unique_password())
    assert set(credential_rows(settings.database_url)) == {updated.credential_id}


def test_update_password_keeps_an_old_credential_another_account_uses(
    loopback_client: AccountClient, dovecot: DovecotServer, settings: Settings
) -> None:
    first = dovecot_account(loopback_client, dovecot)
    second = dovecot_account(loopback_client, dovecot, credential_id=first.credential_id)
    updated = loopback_client.update_account(first.id, password=unique_password())
    assert set(credential_rows(settings.database_url)) == {
        first.credential_id,
        updated.credential_id,
    }
    assert loopback_client.get_account(second.id).credential_id == first.credential_id
    result = loopback_client.test_connection(second.id, timeout_seconds=10)
    assert result.success, result.message


# -- the password never appears -------------------------------------------------------------


@SQLITE_ONLY
def test_password_never_appears_in_database_files_responses_or_logs(
    loopback_client: AccountClient,
    dovecot: DovecotServer,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mailaccounts_server")
    caplog.set_level(logging.DEBUG, logger="imapclient")
    created, overridden, replaced = unique_password(), unique_password(), unique_password()
    account = dovecot_account(
        loopback_client,
        dovecot,
        protocol=pb.PROTOCOL_IMAP,
        encryption=pb.ENCRYPTION_NONE,
        port=dovecot.imap,
        password=created,
    )
    stored_fails = loopback_client.test_connection(account.id, timeout_seconds=10)
    override_fails = loopback_client.test_connection(
        account.id, password=overridden, timeout_seconds=10
    )
    fixed = loopback_client.update_account(account.id, password=dovecot.password)
    stored_works = loopback_client.test_connection(account.id, timeout_seconds=10)
    assert stored_fails.error_code == override_fails.error_code == AUTH_FAILURE
    assert stored_works.success, stored_works.message
    responses: list[object] = [account, stored_fails, override_fails, fixed, stored_works]
    responses.append(loopback_client.update_account(account.id, password=replaced))
    responses.append(loopback_client.get_account(account.id))
    responses.append(loopback_client.list_accounts())
    responses.append(loopback_client.list_audit_events())

    secrets = [created, overridden, replaced, dovecot.password]
    db_path = Path(sa.engine.make_url(settings.database_url).database or "")
    db_files = [p for p in db_path.parent.glob(db_path.name + "*") if p.suffix != "-shm"]
    assert {db_path, Path(f"{db_path}-wal")} <= set(db_files)
    for secret in secrets:
        for path in db_files:
            assert secret.encode() not in path.read_bytes(), path
        for response in responses:
            assert secret not in str(response)
        assert secret not in caplog.text
    logged = {r.name.split(".")[0] for r in caplog.records}
    assert {"mailaccounts_server", "imapclient"} <= logged


# -- key rotation ---------------------------------------------------------------------------


@pytest.fixture
def key_a() -> str:
    return generate_key()


@pytest.fixture
def key_b() -> str:
    return generate_key()


@pytest.fixture
def account_under_key_a(
    make_server: Callable[..., ServerThread], dovecot: DovecotServer, key_a: str
) -> tuple[pb.Account, Credentials]:
    """An account whose credential was sealed with key A only, and its owner."""
    server = make_server(allow_networks=LOOPBACK, credential_keys=key_a)
    owner = new_caller()
    with AccountClient(server.target, owner) as client:
        return dovecot_account(client, dovecot), owner


def rotate_keys(database_url: str, keys: str, workdir: Path) -> None:
    env = {**os.environ, "MAILACCOUNTS_CREDENTIAL_KEYS": keys}
    done = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "rotate-keys", "--database-url",
         database_url],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 credentials" in done.stderr


def stored_test(
    make_server: Callable[..., ServerThread], keys: str, account: pb.Account, owner: Credentials
) -> pb.TestConnectionResponse:
    """TestConnection with the stored credential on a new server holding `keys`."""
    server = make_server(allow_networks=LOOPBACK, credential_keys=keys)
    with AccountClient(server.target, owner) as client:
        return client.test_connection(account.id, timeout_seconds=10)


@SQLITE_ONLY
def test_new_primary_key_still_decrypts_credentials_sealed_with_the_old_one(
    make_server: Callable[..., ServerThread],
    account_under_key_a: tuple[pb.Account, Credentials],
    key_a: str,
    key_b: str,
) -> None:
    account, owner = account_under_key_a
    result = stored_test(make_server, f"{key_b},{key_a}", account, owner)
    assert result.success, result.message


def test_rotate_keys_lets_the_new_key_alone_decrypt(
    make_server: Callable[..., ServerThread],
    account_under_key_a: tuple[pb.Account, Credentials],
    settings: Settings,
    tmp_path: Path,
    key_a: str,
    key_b: str,
) -> None:
    account, owner = account_under_key_a
    before = credential_rows(settings.database_url)[account.credential_id][2]
    rotate_keys(settings.database_url, f"{key_b},{key_a}", tmp_path)
    assert credential_rows(settings.database_url)[account.credential_id][2] != before
    result = stored_test(make_server, key_b, account, owner)
    assert result.success, result.message


@SQLITE_ONLY
def test_retired_key_alone_gets_a_clean_error_after_rotation(
    make_server: Callable[..., ServerThread],
    account_under_key_a: tuple[pb.Account, Credentials],
    settings: Settings,
    tmp_path: Path,
    key_a: str,
    key_b: str,
) -> None:
    """After rotating to key B, a server holding only the retired key A refuses to start and
    names both key ids (it could open no stored credential)."""
    rotate_keys(settings.database_url, f"{key_b},{key_a}", tmp_path)
    with pytest.raises(ConfigurationError) as info:
        make_server(credential_keys=key_a)
    message = str(info.value)
    assert key_id_for(parse_keys(key_b)[0]).hex() in message
    assert key_id_for(parse_keys(key_a)[0]).hex() in message


@SQLITE_ONLY
def test_rotate_keys_reports_credentials_no_key_can_decrypt(
    account_under_key_a: tuple[pb.Account, Credentials],
    settings: Settings,
    tmp_path: Path,
    key_a: str,
    key_b: str,
) -> None:
    account, _ = account_under_key_a
    before = credential_rows(settings.database_url)[account.credential_id][2]
    env = {**os.environ, "MAILACCOUNTS_CREDENTIAL_KEYS": key_b}  # key A already dropped
    done = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "rotate-keys", "--database-url",
         settings.database_url],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "1 credentials could not be decrypted" in done.stderr
    assert account.credential_id in done.stderr
    assert credential_rows(settings.database_url)[account.credential_id][2] == before
