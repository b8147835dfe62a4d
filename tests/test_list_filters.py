"""ListAccounts filters, total_size, stable ordering, and paging while the data changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from mailaccounts_server.config import Settings
from sqlalchemy import create_engine, text
from support.factories import account_fields, bad_request_fields, expect_error
from support.grpc_server import ServerThread

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def ids(client: AccountClient, **params: Any) -> set[str]:
    return {a.id for a in client.iter_accounts(**params)}


def walk(client: AccountClient, page_size: int, **params: Any) -> list[pb.ListAccountsResponse]:
    """Every page of a listing, following next_page_token."""
    pages = []
    token = ""
    while True:
        page = client.list_accounts(page_size=page_size, page_token=token, **params)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


# -- filters --------------------------------------------------------------------------------


def test_protocol_filter(client: AccountClient) -> None:
    imap = client.create_account(**account_fields(protocol=pb.PROTOCOL_IMAP))
    pop3 = client.create_account(**account_fields(protocol=pb.PROTOCOL_POP3, port=995))
    assert ids(client, protocol=pb.PROTOCOL_POP3) == {pop3.id}
    assert ids(client, protocol=pb.PROTOCOL_IMAP) == {imap.id}
    assert ids(client, protocol=pb.PROTOCOL_UNSPECIFIED) == {imap.id, pop3.id}


@pytest.fixture
def enabled_and_disabled(client: AccountClient) -> tuple[pb.Account, pb.Account]:
    enabled = client.create_account(**account_fields())
    disabled = client.create_account(**account_fields())
    client.update_account(disabled.id, is_enabled=False)
    return enabled, disabled


def test_is_enabled_true_filter(
    client: AccountClient, enabled_and_disabled: tuple[pb.Account, pb.Account]
) -> None:
    assert ids(client, is_enabled=True) == {enabled_and_disabled[0].id}


def test_is_enabled_false_filter(
    client: AccountClient, enabled_and_disabled: tuple[pb.Account, pb.Account]
) -> None:
    assert ids(client, is_enabled=False) == {enabled_and_disabled[1].id}


def test_is_sync_enabled_filter(client: AccountClient) -> None:
    syncing = client.create_account(**account_fields(is_sync_enabled=True))
    idle = client.create_account(**account_fields(is_sync_enabled=False))
    assert ids(client, is_sync_enabled=True) == {syncing.id}
    assert ids(client, is_sync_enabled=False) == {idle.id}


def test_filters_combine(client: AccountClient) -> None:
    wanted = client.create_account(
        **account_fields(protocol=pb.PROTOCOL_POP3, is_sync_enabled=False)
    )
    client.create_account(**account_fields(protocol=pb.PROTOCOL_POP3, is_sync_enabled=True))
    client.create_account(**account_fields(protocol=pb.PROTOCOL_IMAP, is_sync_enabled=False))
    assert ids(client, protocol=pb.PROTOCOL_POP3, is_sync_enabled=False) == {wanted.id}


def test_query_matches_email_address_case_insensitively(client: AccountClient) -> None:
    boss = client.create_account(**account_fields(email_address="The.Boss@Corp.example"))
    client.create_account(**account_fields(email_address="someone@other.example"))
    assert ids(client, query="boss@CORP") == {boss.id}


def test_query_matches_account_name_case_insensitively(client: AccountClient) -> None:
    holiday = client.create_account(**account_fields(account_name="Holiday Mailbox"))
    client.create_account(**account_fields(account_name="Work"))
    assert ids(client, query="dAY mAIL") == {holiday.id}


def test_query_matches_non_ascii_account_name_case_insensitively(client: AccountClient) -> None:
    school = client.create_account(**account_fields(account_name="ÉCOLE Überall"))
    client.create_account(**account_fields(account_name="Ecole Uberall"))
    assert ids(client, query="école über") == {school.id}


def test_query_treats_like_special_characters_literally(client: AccountClient) -> None:
    client.create_account(**account_fields(account_name="50Xoff"))
    client.create_account(**account_fields(account_name="50off"))
    literal = {
        char: client.create_account(**account_fields(account_name=f"50{char}off")).id
        for char in ("%", "_", "/", "\\")
    }
    for char, account_id in literal.items():
        assert ids(client, query=f"50{char}off") == {account_id}, char


@pytest.mark.parametrize("query", ["a\x00b", "x" * 256])
def test_bad_list_query_is_invalid(client: AccountClient, query: str) -> None:
    err = expect_error(INVALID, client.list_accounts, query=query)
    assert "query" in bad_request_fields(err)


def test_total_size_counts_matches_across_pages(client: AccountClient) -> None:
    matching = {
        client.create_account(**account_fields(account_name=f"Team {i}")).id for i in range(7)
    }
    for _ in range(3):
        client.create_account(**account_fields(account_name="Private"))
    pages = walk(client, 3, query="team")
    assert [p.count for p in pages] == [3, 3, 1]
    assert all(p.total_size == 7 for p in pages)
    assert {a.id for p in pages for a in p.accounts} == matching


def test_listing_is_newest_first(client: AccountClient) -> None:
    created = [client.create_account(**account_fields()) for _ in range(4)]
    listed = [a.id for p in walk(client, 3) for a in p.accounts]
    assert listed == [a.id for a in reversed(created)]


@pytest.fixture
def same_instant(settings: Settings, server: ServerThread) -> Iterator[Any]:
    """Gives accounts one shared created_at (as a fast burst or several replicas could)."""
    engine = create_engine(settings.database_url)

    def set_created_at(account_ids: list[str], created_at_us: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE accounts SET created_at = :t WHERE id = :id"),
                [{"t": created_at_us, "id": i} for i in account_ids],
            )

    yield set_created_at
    engine.dispose()


def test_ties_on_created_at_are_ordered_by_id_across_pages(
    client: AccountClient, same_instant: Any
) -> None:
    created = [client.create_account(**account_fields()) for _ in range(7)]
    same_instant([a.id for a in created], created[0].created_at.ToMicroseconds())
    listed = [a.id for p in walk(client, 2) for a in p.accounts]
    assert listed == sorted((a.id for a in created), reverse=True)


# -- page tokens ----------------------------------------------------------------------------


def test_page_token_with_different_filters_is_invalid(client: AccountClient) -> None:
    for _ in range(3):
        client.create_account(**account_fields())
    token = client.list_accounts(page_size=1).next_page_token
    assert token
    other_filters: list[dict[str, Any]] = [
        {"query": "other"},
        {"protocol": pb.PROTOCOL_POP3},
        {"is_enabled": True},
        {"is_sync_enabled": False},
        {"show_deleted": True},
    ]
    for filters in other_filters:
        err = expect_error(INVALID, client.list_accounts, page_token=token, **filters)
        assert "pageToken" in bad_request_fields(err), filters


def test_paging_while_accounts_are_created_and_deleted(client: AccountClient) -> None:
    existing = [client.create_account(**account_fields()).id for _ in range(35)]
    unseen = list(reversed(existing))  # the order the walk reaches them: newest first
    deleted: set[str] = set()
    added: set[str] = set()
    seen: list[str] = []
    token = ""
    while True:
        page = client.list_accounts(page_size=10, page_token=token)
        seen.extend(a.id for a in page.accounts)
        token = page.next_page_token
        if not token:
            break
        # Between pages: two new accounts appear and the two oldest not-yet-seen ones go away.
        for _ in range(2):
            added.add(client.create_account(**account_fields()).id)
        remaining = [i for i in unseen if i not in set(seen) and i not in deleted]
        for victim in remaining[-2:]:
            client.delete_account(victim)
            deleted.add(victim)
    assert len(deleted) == 5  # 2 + 2 + the last unseen one
    assert len(seen) == len(set(seen)), "an account was returned twice"
    assert set(existing) - deleted <= set(seen), "a surviving account was skipped"
    assert not deleted & set(seen)
    assert not added & set(seen), "accounts newer than the cursor appear on the next walk"
