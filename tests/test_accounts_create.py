"""CreateAccount over gRPC: fields, defaults and every validation rule."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.factories import account_fields, bad_request_fields, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_create_with_all_fields_returns_them(client: AccountClient) -> None:
    fields = account_fields(
        account_name="Personal",
        protocol=pb.PROTOCOL_POP3,
        hostname="pop.example.org",
        port=995,
        encryption=pb.ENCRYPTION_STARTTLS,
        username="me@example.org",
        is_sync_enabled=False,
        sync_interval=900,
    )
    account = client.create_account(**fields)
    assert account.id and len(account.id) == 36
    assert account.tenant_id == client.caller.tenant_id  # type: ignore[union-attr]
    assert account.user_id == client.caller.user_id  # type: ignore[union-attr]
    assert account.account_name == "Personal"
    assert account.email_address == fields["email_address"]
    assert account.protocol == pb.PROTOCOL_POP3
    assert account.hostname == "pop.example.org"
    assert account.port == 995
    assert account.encryption == pb.ENCRYPTION_STARTTLS
    assert account.username == "me@example.org"
    assert account.credential_id
    assert account.is_sync_enabled is False
    assert account.sync_interval == 900
    assert not account.HasField("last_sync_at")
    assert account.is_syncing is False
    assert account.is_enabled is True
    assert account.created_at.seconds > 0
    assert account.created_at == account.updated_at
    assert account.etag


def test_create_applies_defaults(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    assert account.protocol == pb.PROTOCOL_IMAP
    assert account.encryption == pb.ENCRYPTION_TLS
    assert account.is_sync_enabled is True
    assert account.sync_interval == 300
    assert account.is_enabled is True
    assert account.is_syncing is False


def test_created_ids_are_distinct_uuids(client: AccountClient) -> None:
    ids = {client.create_account(**account_fields()).id for _ in range(3)}
    assert len(ids) == 3


def test_create_with_existing_credential_id_reuses_it(client: AccountClient) -> None:
    first = client.create_account(**account_fields())
    second = client.create_account(
        **account_fields(password=None, credential_id=first.credential_id)
    )
    assert second.credential_id == first.credential_id


@pytest.mark.parametrize(
    ("field", "json_name"),
    [
        ("account_name", "accountName"),
        ("email_address", "emailAddress"),
        ("hostname", "hostname"),
        ("port", "port"),
        ("username", "username"),
    ],
)
def test_create_without_required_field_is_invalid(
    client: AccountClient, field: str, json_name: str
) -> None:
    fields = account_fields()
    del fields[field]
    err = expect_error(INVALID, client.create_account, **fields)
    assert json_name in err.details()
    assert json_name in bad_request_fields(err)


def test_create_without_credential_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(password=None))
    assert "credentialId" in bad_request_fields(err)


@pytest.mark.parametrize("value", ["", "   "])
def test_create_with_blank_required_text_is_invalid(client: AccountClient, value: str) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(account_name=value))
    assert "accountName" in bad_request_fields(err)


def test_bad_request_lists_every_violated_field(client: AccountClient) -> None:
    err = expect_error(
        INVALID,
        client.create_account,
        email_address="nope",
        port=70000,
        sync_interval=5,
        password="x",
    )
    fields = bad_request_fields(err)
    assert {"accountName", "emailAddress", "hostname", "port", "username", "syncInterval"} <= set(
        fields
    )
    assert "70000" in fields["port"]


@pytest.mark.parametrize(
    "email",
    [
        "userexample.com",
        "a@b@c.com",
        "@example.com",
        "user@",
        "us er@example.com",
        "user@exa mple.com",
        "user@.example.com",
        "user@example..com",
    ],
)
def test_create_with_bad_email_is_invalid(client: AccountClient, email: str) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(email_address=email))
    assert "emailAddress" in err.details()
    assert "emailAddress" in bad_request_fields(err)


@pytest.mark.parametrize(("port", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_port_bounds(client: AccountClient, port: int, ok: bool) -> None:
    if ok:
        assert client.create_account(**account_fields(port=port)).port == port
    else:
        err = expect_error(INVALID, client.create_account, **account_fields(port=port))
        assert "port" in bad_request_fields(err)


def test_negative_port_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(port=-1))
    assert "port" in bad_request_fields(err)


@pytest.mark.parametrize(
    ("interval", "ok"), [(59, False), (60, True), (3600, True), (3601, False), (0, False)]
)
def test_sync_interval_bounds(client: AccountClient, interval: int, ok: bool) -> None:
    if ok:
        account = client.create_account(**account_fields(sync_interval=interval))
        assert account.sync_interval == interval
    else:
        err = expect_error(INVALID, client.create_account, **account_fields(sync_interval=interval))
        assert "syncInterval" in bad_request_fields(err)


@pytest.mark.parametrize("protocol", [pb.PROTOCOL_IMAP, pb.PROTOCOL_POP3])
@pytest.mark.parametrize(
    "encryption", [pb.ENCRYPTION_TLS, pb.ENCRYPTION_STARTTLS, pb.ENCRYPTION_NONE]
)
def test_every_protocol_and_encryption_is_accepted(
    client: AccountClient, protocol: int, encryption: int
) -> None:
    account = client.create_account(**account_fields(protocol=protocol, encryption=encryption))
    assert (account.protocol, account.encryption) == (protocol, encryption)
    again = client.get_account(account.id)
    assert (again.protocol, again.encryption) == (protocol, encryption)


@pytest.mark.parametrize(
    ("field", "json_name"), [("protocol", "protocol"), ("encryption", "encryption")]
)
def test_unknown_enum_number_is_invalid(client: AccountClient, field: str, json_name: str) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(**{field: 42}))
    assert json_name in bad_request_fields(err)


def test_bad_hostname_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(hostname="bad host!"))
    assert "hostname" in bad_request_fields(err)


def test_hostname_with_ipv6_scope_id_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(hostname="fe80::1%eth0"))
    assert "hostname" in bad_request_fields(err)


@pytest.mark.parametrize(
    ("field", "json_name"),
    [("account_name", "accountName"), ("username", "username"), ("hostname", "hostname")],
)
def test_control_characters_in_text_are_invalid(
    client: AccountClient, field: str, json_name: str
) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(**{field: "a\x00b"}))
    assert json_name in bad_request_fields(err)
    assert client.list_accounts().total_size == 0


def test_nul_in_password_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(password="pw\x00x"))
    assert "password" in bad_request_fields(err)


def test_invalid_create_stores_nothing(client: AccountClient) -> None:
    expect_error(INVALID, client.create_account, **account_fields(port=0))
    assert client.list_accounts().count == 0


@pytest.mark.parametrize(
    "metadata",
    [
        (("x-user-id", "u1"),),
        (("x-tenant-id", "t1"),),
        (("x-tenant-id", ""), ("x-user-id", "u1")),
        (("x-tenant-id", "t1"), ("x-user-id", "  ")),
    ],
    ids=["no-tenant", "no-user", "empty-tenant", "blank-user"],
)
def test_create_without_identity_is_unauthenticated(client: AccountClient, metadata: Any) -> None:
    request = pb.CreateAccountRequest(**account_fields())
    err = expect_error(
        grpc.StatusCode.UNAUTHENTICATED, client.stub.CreateAccount, request, metadata=metadata
    )
    assert "x-tenant-id" in err.details() or "x-user-id" in err.details()
