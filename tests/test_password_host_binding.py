"""A stored password only goes to the server it was entered for: a changed hostname needs the
password again, and nothing (not even a database edit) sends the old one to the new host."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from mailaccounts_server import app
from mailaccounts_server.config import Settings
from mailaccounts_server.domain.vault import credential_aad
from support.dovecot import DovecotServer
from support.factories import account_fields, expect_error


class CountingListener:
    """A TCP port on loopback that counts connections (and closes them): proof that no
    connection, and so no password, went to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


def _pop3_account(client: AccountClient, dovecot: DovecotServer, **overrides: Any) -> pb.Account:
    fields: dict[str, Any] = {
        "protocol": pb.PROTOCOL_POP3,
        "encryption": pb.ENCRYPTION_NONE,
        "hostname": "127.0.0.1",
        "port": dovecot.pop3,
        "username": dovecot.user,
        "password": dovecot.password,
        **overrides,
    }
    return client.create_account(**account_fields(**fields))


def _password_violation(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            [violation] = failure.violations
            assert violation.subject == "password"
            assert violation.type == "PASSWORD_REQUIRED"
            return violation.description
    raise AssertionError("no PreconditionFailure detail")


def test_hostname_change_is_accepted_and_marks_the_password_required(
    loopback_client: AccountClient, dovecot: DovecotServer, listener: CountingListener
) -> None:
    account = _pop3_account(loopback_client, dovecot)
    assert not account.password_required
    moved = loopback_client.update_account(account.id, hostname="localhost", port=listener.port)
    assert moved.hostname == "localhost"
    assert moved.password_required
    assert loopback_client.get_account(account.id).password_required
    err = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION, loopback_client.test_connection, account.id
    )
    assert "again for the new server" in _password_violation(err)
    assert listener.accepted == 0, "the stored password must not be sent to the new host"


def test_a_new_password_for_the_new_host_is_used_again(
    loopback_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = _pop3_account(loopback_client, dovecot)
    loopback_client.update_account(account.id, hostname="localhost")
    # A password given with the test itself may be used for the new host...
    given = loopback_client.test_connection(
        account.id, password=dovecot.password, timeout_seconds=10
    )
    assert given.success, given.message
    # ...and one stored for it makes the account whole again.
    updated = loopback_client.update_account(account.id, password=dovecot.password)
    assert not updated.password_required
    result = loopback_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message


def test_hostname_and_password_changed_together_bind_to_the_new_host(
    loopback_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = _pop3_account(loopback_client, dovecot, password="wrong-at-first")
    updated = loopback_client.update_account(
        account.id, hostname="localhost", password=dovecot.password
    )
    assert not updated.password_required
    assert loopback_client.test_connection(account.id, timeout_seconds=10).success


def test_moving_back_to_the_original_host_needs_no_new_password(
    loopback_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = _pop3_account(loopback_client, dovecot)
    loopback_client.update_account(account.id, hostname="LOCALHOST")
    back = loopback_client.update_account(account.id, hostname="127.0.0.1")
    assert not back.password_required
    assert loopback_client.test_connection(account.id, timeout_seconds=10).success


def test_a_shared_credential_stays_bound_to_its_own_host(
    loopback_client: AccountClient, dovecot: DovecotServer, listener: CountingListener
) -> None:
    first = _pop3_account(loopback_client, dovecot)
    fields = account_fields(
        protocol=pb.PROTOCOL_POP3, encryption=pb.ENCRYPTION_NONE, hostname="localhost",
        port=listener.port, username=dovecot.user, credential_id=first.credential_id,
        password=None,
    )  # fmt: skip
    second = loopback_client.create_account(**fields)
    assert second.password_required
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, loopback_client.test_connection, second.id)
    assert listener.accepted == 0


@pytest.mark.parametrize("also_credential_row", [False, True])
def test_a_hostname_edited_in_the_database_cannot_redirect_the_password(
    loopback_client: AccountClient,
    dovecot: DovecotServer,
    listener: CountingListener,
    database_url: str,
    also_credential_row: bool,
) -> None:
    """Someone with write access to the database points the account (and its recorded host)
    at their own server: the associated data sealed into the ciphertext still says the old
    host, so the password is never decrypted for the new one."""
    account = _pop3_account(loopback_client, dovecot)
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE accounts SET hostname = 'localhost', credential_host = 'localhost', "
                    "port = :port WHERE id = :id"
                ),
                {"port": listener.port, "id": account.id},
            )
            if also_credential_row:
                conn.execute(
                    sa.text("UPDATE credentials SET host = 'localhost' WHERE id = :id"),
                    {"id": account.credential_id},
                )
    finally:
        engine.dispose()
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, loopback_client.test_connection, account.id)
    assert listener.accepted == 0


def test_rotate_keys_binds_a_credential_stored_before_host_binding(
    loopback_client: AccountClient,
    dovecot: DovecotServer,
    listener: CountingListener,
    settings: Settings,
) -> None:
    """A credential sealed before migration 0004 (no host in its associated data) still works,
    and `rotate-keys` re-seals it bound to its account's host."""
    account = _pop3_account(loopback_client, dovecot)
    cipher = app.build_cipher_for(settings)
    tenant, user = account.tenant_id, account.user_id
    legacy = cipher.encrypt(
        dovecot.password, aad=credential_aad(tenant, user, account.credential_id, None)
    )
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE credentials SET ciphertext = :c, host = NULL WHERE id = :id"),
                {"c": legacy, "id": account.credential_id},
            )
        assert loopback_client.test_connection(account.id, timeout_seconds=10).success
        count, unreadable = app.rotate_keys(settings)
        assert (count, unreadable) == (1, 0)
        with engine.connect() as conn:
            host = conn.execute(
                sa.text("SELECT host FROM credentials WHERE id = :id"),
                {"id": account.credential_id},
            ).scalar_one()
        assert host == "127.0.0.1"
        assert loopback_client.test_connection(account.id, timeout_seconds=10).success
        with engine.begin() as conn:  # now a redirect in the database no longer decrypts
            conn.execute(
                sa.text(
                    "UPDATE accounts SET hostname = 'localhost', credential_host = 'localhost', "
                    "port = :port WHERE id = :id"
                ),
                {"port": listener.port, "id": account.id},
            )
            conn.execute(
                sa.text("UPDATE credentials SET host = 'localhost' WHERE id = :id"),
                {"id": account.credential_id},
            )
    finally:
        engine.dispose()
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, loopback_client.test_connection, account.id)
    assert listener.accepted == 0
