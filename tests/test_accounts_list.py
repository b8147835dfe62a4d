"""ListAccounts: ownership isolation, keyset pagination and page tokens."""

from __future__ import annotations

import grpc
from mailaccounts_client import AccountClient
from support.factories import account_fields, bad_request_fields, expect_error, new_caller
from support.grpc_server import ServerThread


def test_list_is_empty_for_a_new_caller(client: AccountClient) -> None:
    page = client.list_accounts()
    assert page.count == 0
    assert list(page.accounts) == []
    assert page.next_page_token == ""
    assert page.total_size == 0


def test_list_returns_one_account(client: AccountClient) -> None:
    created = client.create_account(**account_fields())
    page = client.list_accounts()
    assert page.count == 1
    assert page.accounts[0] == created


def test_list_returns_many_newest_first(client: AccountClient) -> None:
    ids = [client.create_account(**account_fields()).id for _ in range(5)]
    page = client.list_accounts()
    assert page.count == 5
    assert [a.id for a in page.accounts] == list(reversed(ids))


def test_list_is_isolated_between_tenants(client: AccountClient) -> None:
    mine = client.create_account(**account_fields())
    other = client.as_caller(new_caller())
    theirs = other.create_account(**account_fields())
    assert [a.id for a in client.list_accounts().accounts] == [mine.id]
    assert [a.id for a in other.list_accounts().accounts] == [theirs.id]


def test_list_is_isolated_between_users_of_one_tenant(client: AccountClient) -> None:
    assert client.caller is not None
    colleague = client.as_caller(
        type(client.caller)(tenant_id=client.caller.tenant_id, user_id="someone-else")
    )
    mine = client.create_account(**account_fields())
    theirs = colleague.create_account(**account_fields())
    assert [a.id for a in client.list_accounts().accounts] == [mine.id]
    assert [a.id for a in colleague.list_accounts().accounts] == [theirs.id]


def test_pagination_walks_250_accounts_exactly_once(client: AccountClient) -> None:
    created = {client.create_account(**account_fields()).id for _ in range(250)}
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = client.list_accounts(page_size=100, page_token=token)
        pages += 1
        assert page.count == len(page.accounts) <= 100
        assert page.total_size == 250
        seen.extend(a.id for a in page.accounts)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert len(seen) == 250
    assert set(seen) == created


def test_default_page_size_is_50(client: AccountClient) -> None:
    for _ in range(55):
        client.create_account(**account_fields())
    page = client.list_accounts()
    assert page.count == 50
    assert page.next_page_token


def test_negative_page_size_is_invalid(client: AccountClient) -> None:
    err = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.list_accounts, page_size=-1)
    assert "pageSize" in bad_request_fields(err)


def test_forged_page_token_is_invalid(client: AccountClient) -> None:
    for token in ["garbage", "AAAA", "eyJpZCI6IjEifQ"]:
        err = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.list_accounts, page_token=token)
        assert "pageToken" in bad_request_fields(err)


def test_page_token_of_another_tenant_is_invalid(client: AccountClient) -> None:
    for _ in range(3):
        client.create_account(**account_fields())
    token = client.list_accounts(page_size=1).next_page_token
    assert token
    other = client.as_caller(new_caller())
    err = expect_error(grpc.StatusCode.INVALID_ARGUMENT, other.list_accounts, page_token=token)
    assert "pageToken" in bad_request_fields(err)


def test_tampered_page_token_is_invalid(client: AccountClient) -> None:
    for _ in range(3):
        client.create_account(**account_fields())
    token = client.list_accounts(page_size=1).next_page_token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.list_accounts, page_token=tampered)


def test_page_token_works_on_another_replica(
    client: AccountClient, make_server: object, server: ServerThread
) -> None:
    """Replicas are stateless: a token from one server is honoured by another."""
    for _ in range(3):
        client.create_account(**account_fields())
    first = client.list_accounts(page_size=2)
    second_server = make_server()  # type: ignore[operator]
    with AccountClient(second_server.target, client.caller) as other_replica:
        rest = other_replica.list_accounts(page_size=2, page_token=first.next_page_token)
    assert rest.count == 1
    assert {a.id for a in first.accounts}.isdisjoint({a.id for a in rest.accounts})
