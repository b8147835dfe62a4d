"""CreateAccount retries (request_id) and the one-live-account-per-address rule."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from support.factories import account_fields, bad_request_fields, expect_error, new_caller
from support.grpc_server import ServerThread
from support.racing import run_together

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXISTS = grpc.StatusCode.ALREADY_EXISTS
THREADS = 8


def listed_ids(client: AccountClient, **params: Any) -> list[str]:
    return [a.id for a in client.iter_accounts(**params)]


@pytest.fixture
def racers(server: ServerThread, client: AccountClient) -> Iterator[list[AccountClient]]:
    """THREADS clients of the same caller, each on its own connected channel."""
    with ExitStack() as stack:
        clients = []
        for _ in range(THREADS):
            c = stack.enter_context(AccountClient(server.target, client.caller))
            grpc.channel_ready_future(c.channel).result(timeout=10)
            clients.append(c)
        yield clients


# -- request_id -----------------------------------------------------------------------------


def test_retry_with_same_request_id_returns_the_same_account(client: AccountClient) -> None:
    fields = account_fields(request_id=str(uuid.uuid4()))
    first = client.create_account(**fields)
    second = client.create_account(**fields)
    assert second == first
    assert listed_ids(client) == [first.id]


def test_request_id_is_matched_case_insensitively(client: AccountClient) -> None:
    request_id = str(uuid.uuid4())
    fields = account_fields()
    first = client.create_account(**fields, request_id=request_id)
    second = client.create_account(**fields, request_id=request_id.upper())
    assert second.id == first.id
    assert listed_ids(client) == [first.id]


def test_same_request_id_with_different_content_is_invalid(client: AccountClient) -> None:
    request_id = str(uuid.uuid4())
    first = client.create_account(**account_fields(request_id=request_id))
    err = expect_error(
        INVALID, client.create_account, **account_fields(request_id=request_id, port=143)
    )
    assert "requestId" in bad_request_fields(err)
    assert listed_ids(client) == [first.id]


def test_same_request_id_with_another_password_is_invalid(client: AccountClient) -> None:
    fields = account_fields(request_id=str(uuid.uuid4()))
    client.create_account(**fields)
    err = expect_error(INVALID, client.create_account, **{**fields, "password": "0ther-Secret"})
    assert "requestId" in bad_request_fields(err)


def test_request_id_that_is_not_a_uuid_is_invalid(client: AccountClient) -> None:
    err = expect_error(INVALID, client.create_account, **account_fields(request_id="retry-1"))
    assert "requestId" in bad_request_fields(err)
    assert listed_ids(client) == []


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


def test_same_request_id_in_another_tenant_creates_its_own_account(client: AccountClient) -> None:
    fields = account_fields(request_id=str(uuid.uuid4()))
    mine = client.create_account(**fields)
    other = client.as_caller(new_caller())
    theirs = other.create_account(**fields)
    assert theirs.id != mine.id
    assert theirs.tenant_id != mine.tenant_id
    assert listed_ids(client) == [mine.id]
    assert listed_ids(other) == [theirs.id]


def test_concurrent_retries_all_get_the_one_account(
    client: AccountClient, racers: list[AccountClient]
) -> None:
    fields = account_fields(request_id=str(uuid.uuid4()))
    results = run_together(racers, lambda c, _i: c.create_account(**fields))
    errors = [r for r in results if isinstance(r, grpc.RpcError)]
    assert errors == [], [e.details() for e in errors]
    assert len({r.id for r in results}) == 1
    assert listed_ids(client) == [results[0].id]


# -- one live account per address -----------------------------------------------------------


def test_duplicate_address_is_already_exists(client: AccountClient) -> None:
    first = client.create_account(**account_fields(email_address="dup@example.com"))
    err = expect_error(
        EXISTS, client.create_account, **account_fields(email_address="dup@example.com")
    )
    assert "emailAddress" in err.details()
    assert listed_ids(client) == [first.id]


def test_duplicate_address_is_detected_case_insensitively(client: AccountClient) -> None:
    client.create_account(**account_fields(email_address="User@X.com"))
    expect_error(EXISTS, client.create_account, **account_fields(email_address="user@x.com"))
    expect_error(EXISTS, client.create_account, **account_fields(email_address="USER@X.COM"))


def test_same_address_for_another_user_of_the_tenant_is_allowed(client: AccountClient) -> None:
    assert client.caller is not None
    colleague = client.as_caller(Credentials(client.caller.tenant_id, "colleague"))
    mine = client.create_account(**account_fields(email_address="shared@example.com"))
    theirs = colleague.create_account(**account_fields(email_address="shared@example.com"))
    assert theirs.id != mine.id


def test_same_address_in_another_tenant_is_allowed(client: AccountClient) -> None:
    mine = client.create_account(**account_fields(email_address="shared@example.com"))
    theirs = client.as_caller(new_caller()).create_account(
        **account_fields(email_address="shared@example.com")
    )
    assert theirs.id != mine.id


def test_update_to_another_live_accounts_address_is_refused_and_changes_nothing(
    client: AccountClient,
) -> None:
    client.create_account(**account_fields(email_address="taken@example.com"))
    other = client.create_account(**account_fields(email_address="free@example.com"))
    expect_error(EXISTS, client.update_account, other.id, email_address="TAKEN@example.com")
    assert client.get_account(other.id) == other


def test_update_to_a_new_case_of_its_own_address_is_allowed(client: AccountClient) -> None:
    account = client.create_account(**account_fields(email_address="me@example.com"))
    updated = client.update_account(account.id, email_address="Me@Example.com")
    assert updated.email_address == "Me@Example.com"


def test_soft_deleted_account_does_not_block_its_address(client: AccountClient) -> None:
    old = client.create_account(**account_fields(email_address="again@example.com"))
    client.delete_account(old.id)
    new = client.create_account(**account_fields(email_address="again@example.com"))
    assert new.id != old.id
    assert listed_ids(client) == [new.id]


def test_undelete_when_address_was_re_added_is_already_exists(client: AccountClient) -> None:
    old = client.create_account(**account_fields(email_address="again@example.com"))
    client.delete_account(old.id)
    new = client.create_account(**account_fields(email_address="Again@example.com"))
    expect_error(EXISTS, client.undelete_account, old.id)
    expect_error(grpc.StatusCode.NOT_FOUND, client.get_account, old.id)
    assert listed_ids(client) == [new.id]


def test_concurrent_creates_of_one_address_let_exactly_one_succeed(
    client: AccountClient, racers: list[AccountClient]
) -> None:
    results = run_together(
        racers,
        lambda c, i: c.create_account(
            **account_fields(
                email_address="race@example.com", account_name=f"racer {i}",
                request_id=str(uuid.uuid4()),
            )
        ),
    )  # fmt: skip
    created = [r for r in results if isinstance(r, pb.Account)]
    codes = [r.code() for r in results if isinstance(r, grpc.RpcError)]
    assert len(created) == 1, codes
    assert codes == [EXISTS] * (THREADS - 1)
    assert listed_ids(client) == [created[0].id]
