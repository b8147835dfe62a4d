"""The audit trail: one event per change, written in the change's own transaction."""

from __future__ import annotations

import grpc
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from sqlalchemy import Engine, text
from support.factories import PASSWORD, account_fields, bad_request_fields, expect_error, new_caller

SUCCESS = pb.AUDIT_OUTCOME_SUCCESS


def events(client: AccountClient, **params: object) -> list[pb.AuditEvent]:
    """Every audit event the caller may see, following page tokens."""
    found: list[pb.AuditEvent] = []
    token = ""
    while True:
        page = client.list_audit_events(page_token=token, **params)
        found.extend(page.events)
        token = page.next_page_token
        if not token:
            return found


# -- one event per change -------------------------------------------------------------------


def test_create_writes_one_create_event(client: AccountClient, account: pb.Account) -> None:
    [event] = events(client)
    assert event.action == pb.AUDIT_ACTION_CREATE
    assert event.account_id == account.id
    assert event.outcome == SUCCESS
    assert client.caller is not None
    assert (event.tenant_id, event.user_id) == (client.caller.tenant_id, client.caller.user_id)
    assert "emailAddress" in event.changed_fields
    assert "password" not in event.changed_fields
    assert event.id and event.time.ToMicroseconds() > 0


def test_update_event_names_the_changed_fields(client: AccountClient, account: pb.Account) -> None:
    client.update_account(account.id, port=143, account_name="Renamed")
    event = events(client)[0]
    assert event.action == pb.AUDIT_ACTION_UPDATE
    assert event.account_id == account.id
    assert list(event.changed_fields) == ["accountName", "port"]
    assert event.outcome == SUCCESS
    assert len(events(client)) == 2


def test_update_event_uses_json_names(client: AccountClient, account: pb.Account) -> None:
    client.update_account(account.id, is_sync_enabled=False, sync_interval=600, is_enabled=False)
    event = events(client)[0]
    assert sorted(event.changed_fields) == ["isEnabled", "isSyncEnabled", "syncInterval"]


def test_password_change_is_named_but_its_value_never_recorded(
    client: AccountClient, account: pb.Account
) -> None:
    secret = "N3w-Secret-Value!"
    client.update_account(account.id, password=secret, username="new-login")
    event = events(client)[0]
    assert list(event.changed_fields) == ["username", "password"]
    every_event = "".join(str(e) for e in events(client))
    assert secret not in every_event
    assert PASSWORD not in every_event


def test_delete_writes_one_delete_event(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    found = events(client)
    assert len(found) == 2
    assert found[0].action == pb.AUDIT_ACTION_DELETE
    assert found[0].account_id == account.id
    assert found[0].outcome == SUCCESS


def test_undelete_writes_one_undelete_event(client: AccountClient, account: pb.Account) -> None:
    client.delete_account(account.id)
    client.undelete_account(account.id)
    found = events(client)
    assert len(found) == 3
    assert found[0].action == pb.AUDIT_ACTION_UNDELETE
    assert found[0].account_id == account.id
    assert found[0].outcome == SUCCESS


# -- listing --------------------------------------------------------------------------------


def test_events_are_listed_newest_first(client: AccountClient, account: pb.Account) -> None:
    client.update_account(account.id, port=143)
    client.delete_account(account.id)
    client.undelete_account(account.id)
    found = events(client)
    assert [e.action for e in found] == [
        pb.AUDIT_ACTION_UNDELETE,
        pb.AUDIT_ACTION_DELETE,
        pb.AUDIT_ACTION_UPDATE,
        pb.AUDIT_ACTION_CREATE,
    ]
    times = [e.time.ToMicroseconds() for e in found]
    assert times == sorted(times, reverse=True)


def test_events_paginate(client: AccountClient, account: pb.Account) -> None:
    for port in range(100, 106):
        client.update_account(account.id, port=port)
    everything = client.list_audit_events(page_size=100)
    assert len(everything.events) == 7
    assert everything.next_page_token == ""
    pages = []
    token = ""
    while True:
        page = client.list_audit_events(page_size=3, page_token=token)
        pages.append(list(page.events))
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e.id for p in pages for e in p] == [e.id for e in everything.events]


def test_events_filter_by_account_id(client: AccountClient, account: pb.Account) -> None:
    other = client.create_account(**account_fields())
    client.update_account(other.id, port=143)
    client.update_account(account.id, port=110)
    mine = events(client, account_id=account.id)
    assert [e.action for e in mine] == [pb.AUDIT_ACTION_UPDATE, pb.AUDIT_ACTION_CREATE]
    assert {e.account_id for e in mine} == {account.id}


def test_page_token_for_another_account_filter_is_invalid(
    client: AccountClient, account: pb.Account
) -> None:
    client.update_account(account.id, port=143)
    token = client.list_audit_events(page_size=1).next_page_token
    assert token
    err = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.list_audit_events, page_token=token, account_id=account.id,
    )  # fmt: skip
    assert "pageToken" in bad_request_fields(err)


def test_another_tenant_sees_none_of_the_events(client: AccountClient, account: pb.Account) -> None:
    client.update_account(account.id, port=143)
    stranger = client.as_caller(new_caller())
    assert events(stranger) == []
    assert events(stranger, account_id=account.id) == []


# -- refused changes leave no trace ---------------------------------------------------------


def test_invalid_update_writes_no_event(client: AccountClient, account: pb.Account) -> None:
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.update_account, account.id, port=0)
    assert [e.action for e in events(client)] == [pb.AUDIT_ACTION_CREATE]


def test_denied_update_writes_no_event(client: AccountClient, account: pb.Account) -> None:
    stranger = client.as_caller(new_caller())
    expect_error(grpc.StatusCode.PERMISSION_DENIED, stranger.update_account, account.id, port=1)
    assert [e.action for e in events(client)] == [pb.AUDIT_ACTION_CREATE]
    assert events(stranger) == []


def test_stale_etag_update_writes_no_event(client: AccountClient, account: pb.Account) -> None:
    client.update_account(account.id, port=143)
    expect_error(grpc.StatusCode.ABORTED, client.update_account, account.id, port=1,
                 etag=account.etag)  # fmt: skip
    assert len(events(client)) == 2


def test_failed_create_writes_no_event(client: AccountClient, account: pb.Account) -> None:
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.create_account, **account_fields(email_address=account.email_address),
    )  # fmt: skip
    assert [e.account_id for e in events(client)] == [account.id]


def test_failed_create_stores_no_credential(
    client: AccountClient, account: pb.Account, engine: Engine
) -> None:
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.create_account, **account_fields(email_address=account.email_address),
    )  # fmt: skip
    assert client.caller is not None
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT id FROM credentials WHERE tenant_id = :t"),
            {"t": client.caller.tenant_id},
        ).scalars()
        assert list(stored) == [account.credential_id]
