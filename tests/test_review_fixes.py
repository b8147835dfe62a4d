"""Edge cases found in review: input that must be refused cleanly, and cancelled tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.factories import account_fields, bad_request_fields, expect_error, new_caller
from support.grpc_server import ServerThread
from test_connection_rpc_outcomes import accepting_blackhole, port_account

INVALID = grpc.StatusCode.INVALID_ARGUMENT
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_update_to_unspecified_encryption_is_invalid(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    err = expect_error(
        INVALID, client.update_account, account.id, encryption=pb.ENCRYPTION_UNSPECIFIED
    )
    assert "encryption" in bad_request_fields(err)
    assert client.get_account(account.id) == account


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


@pytest.mark.parametrize("query", ["a\x00b", "x" * 256])
def test_bad_list_query_is_invalid(client: AccountClient, query: str) -> None:
    err = expect_error(INVALID, client.list_accounts, query=query)
    assert "query" in bad_request_fields(err)


@pytest.mark.parametrize(
    "request_id",
    [
        "{" + str(uuid.uuid4()) + "}",
        "urn:uuid:" + str(uuid.uuid4()),
        uuid.uuid4().hex,
    ],
    ids=["braces", "urn", "bare-hex"],
)
def test_non_canonical_request_id_is_invalid(client: AccountClient, request_id: str) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(request_id=request_id))
    assert "requestId" in bad_request_fields(err)


def test_hostname_with_ipv6_scope_id_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(hostname="fe80::1%eth0"))
    assert "hostname" in bad_request_fields(err)


def test_duplicate_identity_metadata_is_unauthenticated(client: AccountClient) -> None:
    metadata = (("x-tenant-id", "t1"), ("x-user-id", "u1"), ("x-tenant-id", "t2"))
    err = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        client.stub.ListAccounts,
        pb.ListAccountsRequest(),
        metadata=metadata,
    )
    assert "x-tenant-id" in err.details()


@SQLITE_ONLY
def test_cancelled_test_keeps_its_slot_until_the_probe_ends_and_is_audited(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(allow_networks=("127.0.0.0/8",), max_tests_per_tenant=1)
    with (
        accepting_blackhole() as (port, accepted),
        AccountClient(server.target, new_caller()) as client,
    ):
        assert client.caller is not None
        account = port_account(client, port)
        request = pb.TestConnectionRequest(id=account.id, timeout_seconds=2)
        call = client.stub.TestConnection.future(
            request, metadata=client.caller.metadata(), timeout=10
        )
        deadline = time.monotonic() + 5
        while not accepted:
            assert time.monotonic() < deadline, "the probe never connected"
            time.sleep(0.02)
        call.cancel()
        # The abandoned probe still runs, so the tenant's only slot is still taken.
        err = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, client.test_connection, account.id)
        assert "per tenant" in err.details()
        # Once it timed out, it is recorded like any other test, and the slot is free again.
        deadline = time.monotonic() + 10
        while not client.get_account(account.id).HasField("last_connection_test"):
            assert time.monotonic() < deadline, "the abandoned test was never recorded"
            time.sleep(0.1)
        events = client.list_audit_events(account_id=account.id).events
        assert [e.action for e in events][0] == pb.AUDIT_ACTION_TEST_CONNECTION
        again = client.test_connection(account.id, timeout_seconds=1)
        assert again.error_code == pb.CONNECTION_ERROR_CODE_TIMEOUT
