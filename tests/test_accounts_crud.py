"""GetAccount, UpdateAccount and DeleteAccount: ownership, partial updates, not-found rules."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from support.factories import account_fields, bad_request_fields, expect_error, new_caller

NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stranger(client: AccountClient) -> AccountClient:
    return client.as_caller(new_caller())


@pytest.fixture
def colleague(client: AccountClient) -> AccountClient:
    assert client.caller is not None
    return client.as_caller(Credentials(client.caller.tenant_id, "another-user"))


# -- get ------------------------------------------------------------------------------------


def test_get_returns_the_account(client: AccountClient, account: pb.Account) -> None:
    assert client.get_account(account.id) == account


def test_get_unknown_id_is_not_found(client: AccountClient) -> None:
    err = expect_error(NOT_FOUND, client.get_account, str(uuid.uuid4()))
    assert "not found" in err.details()


def test_get_malformed_id_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.get_account, "not-a-uuid")
    assert "id" in bad_request_fields(err)


def test_get_empty_id_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.get_account, "")
    assert "id" in bad_request_fields(err)


def test_get_of_another_tenant_is_denied(stranger: AccountClient, account: pb.Account) -> None:
    err = expect_error(DENIED, stranger.get_account, account.id)
    assert account.email_address not in err.details()


def test_get_of_another_user_of_the_tenant_is_denied(
    colleague: AccountClient, account: pb.Account
) -> None:
    expect_error(DENIED, colleague.get_account, account.id)


# -- update ---------------------------------------------------------------------------------


def test_update_one_field(client: AccountClient, account: pb.Account) -> None:
    updated = client.update_account(account.id, account_name="Renamed")
    assert updated.account_name == "Renamed"
    assert client.get_account(account.id).account_name == "Renamed"


def test_update_all_fields(client: AccountClient, account: pb.Account) -> None:
    changes = {
        "account_name": "All New",
        "email_address": "new-address@example.net",
        "hostname": "mail.example.net",
        "port": 143,
        "encryption": pb.ENCRYPTION_STARTTLS,
        "username": "new-user",
        "is_sync_enabled": False,
        "sync_interval": 1200,
        "is_enabled": False,
    }
    updated = client.update_account(account.id, **changes)
    for name, value in changes.items():
        assert getattr(updated, name) == value, name
    assert client.get_account(account.id) == updated


def test_partial_update_keeps_other_fields(client: AccountClient, account: pb.Account) -> None:
    updated = client.update_account(account.id, port=995)
    for name in (
        "account_name",
        "email_address",
        "hostname",
        "encryption",
        "username",
        "is_sync_enabled",
        "sync_interval",
        "is_enabled",
        "credential_id",
        "created_at",
    ):
        assert getattr(updated, name) == getattr(account, name), name
    assert updated.port == 995


def test_update_can_set_booleans_to_false(client: AccountClient, account: pb.Account) -> None:
    assert account.is_sync_enabled and account.is_enabled
    updated = client.update_account(account.id, is_sync_enabled=False, is_enabled=False)
    assert updated.is_sync_enabled is False
    assert updated.is_enabled is False
    again = client.update_account(account.id, is_enabled=True)
    assert again.is_enabled is True
    assert again.is_sync_enabled is False


def test_update_changes_updated_at_but_never_created_at(
    client: AccountClient, account: pb.Account
) -> None:
    first = client.update_account(account.id, account_name="One")
    second = client.update_account(account.id, account_name="Two")
    assert first.created_at == second.created_at == account.created_at
    assert account.updated_at.ToMicroseconds() < first.updated_at.ToMicroseconds()
    assert first.updated_at.ToMicroseconds() < second.updated_at.ToMicroseconds()
    assert len({account.etag, first.etag, second.etag}) == 3


def test_update_unknown_id_is_not_found(client: AccountClient) -> None:
    expect_error(NOT_FOUND, client.update_account, str(uuid.uuid4()), account_name="x")


@pytest.mark.parametrize(
    ("changes", "json_name"),
    [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"sync_interval": 59}, "syncInterval"),
        ({"sync_interval": 3601}, "syncInterval"),
        ({"email_address": "no-at-sign"}, "emailAddress"),
        ({"account_name": ""}, "accountName"),
        ({"hostname": "bad host"}, "hostname"),
        ({"encryption": 17}, "encryption"),
    ],
)
def test_invalid_update_is_refused_and_changes_nothing(
    client: AccountClient, account: pb.Account, changes: dict[str, object], json_name: str
) -> None:
    err = expect_error(INVALID, client.update_account, account.id, **{"username": "ok", **changes})
    assert json_name in bad_request_fields(err)
    assert client.get_account(account.id) == account


def test_update_to_unspecified_encryption_is_invalid(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    err = expect_error(
        INVALID, client.update_account, account.id, encryption=pb.ENCRYPTION_UNSPECIFIED
    )
    assert "encryption" in bad_request_fields(err)
    assert client.get_account(account.id) == account


def test_update_of_another_tenant_is_denied_and_changes_nothing(
    client: AccountClient, stranger: AccountClient, account: pb.Account
) -> None:
    expect_error(DENIED, stranger.update_account, account.id, account_name="hijacked")
    assert client.get_account(account.id) == account


def test_update_of_another_user_is_denied(
    client: AccountClient, colleague: AccountClient, account: pb.Account
) -> None:
    expect_error(DENIED, colleague.update_account, account.id, is_enabled=False)
    assert client.get_account(account.id).is_enabled is True


# -- delete ---------------------------------------------------------------------------------


def test_delete_then_get_is_not_found(client: AccountClient, account: pb.Account) -> None:
    before = time.time()
    response = client.delete_account(account.id)
    assert response.message == "Account deleted successfully"
    assert response.id == account.id
    assert response.delete_time.seconds >= int(before) - 1
    expect_error(NOT_FOUND, client.get_account, account.id)
    assert client.list_accounts().count == 0


def test_delete_unknown_id_is_not_found(client: AccountClient) -> None:
    expect_error(NOT_FOUND, client.delete_account, str(uuid.uuid4()))


def test_delete_twice_is_not_found(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    expect_error(NOT_FOUND, client.delete_account, account.id)


def test_delete_of_another_tenant_is_denied_and_keeps_the_account(
    client: AccountClient, stranger: AccountClient, account: pb.Account
) -> None:
    expect_error(DENIED, stranger.delete_account, account.id)
    assert client.get_account(account.id) == account


def test_delete_of_another_user_is_denied(
    client: AccountClient, colleague: AccountClient, account: pb.Account
) -> None:
    expect_error(DENIED, colleague.delete_account, account.id)
    assert client.get_account(account.id) == account
