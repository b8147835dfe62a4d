"""Optimistic concurrency over gRPC: etags, racing writers, and replicas sharing one database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from support.factories import account_fields, expect_error, new_caller
from support.grpc_server import ServerThread
from support.racing import run_together

ABORTED = grpc.StatusCode.ABORTED
THREADS = 8
Connect = Callable[[list[str], Credentials | None], list[AccountClient]]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Opens one client per target, each on its own ready channel; all closed after the test."""
    with ExitStack() as stack:

        def open_clients(targets: list[str], caller: Credentials | None) -> list[AccountClient]:
            clients = []
            for target in targets:
                c = stack.enter_context(AccountClient(target, caller))
                grpc.channel_ready_future(c.channel).result(timeout=10)
                clients.append(c)
            return clients

        yield open_clients


def split(results: list[Any]) -> tuple[list[pb.Account], list[grpc.StatusCode]]:
    """(successful replies, status codes of the failed calls)."""
    ok = [r for r in results if not isinstance(r, grpc.RpcError)]
    codes = [r.code() for r in results if isinstance(r, grpc.RpcError)]
    return ok, codes


# -- etags ----------------------------------------------------------------------------------


def test_etag_changes_on_every_write(client: AccountClient, account: pb.Account) -> None:
    updated = client.update_account(account.id, account_name="Renamed")
    client.delete_account(account.id)
    deleted = client.list_accounts(show_deleted=True).accounts[0]
    restored = client.undelete_account(account.id)
    etags = [account.etag, updated.etag, deleted.etag, restored.etag]
    assert all(etags)
    assert len(set(etags)) == 4
    assert client.get_account(account.id).etag == restored.etag


def test_update_with_stale_etag_is_aborted_and_changes_nothing(
    client: AccountClient, account: pb.Account
) -> None:
    current = client.update_account(account.id, port=143)
    err = expect_error(
        ABORTED, client.update_account, account.id, account_name="Lost", etag=account.etag
    )
    assert "etag" in err.details()
    assert client.get_account(account.id) == current


def test_update_with_current_etag_succeeds(client: AccountClient, account: pb.Account) -> None:
    updated = client.update_account(account.id, account_name="Mine", etag=account.etag)
    assert updated.account_name == "Mine"
    assert updated.etag != account.etag


def test_delete_with_stale_etag_is_aborted_and_keeps_the_account(
    client: AccountClient, account: pb.Account
) -> None:
    current = client.update_account(account.id, port=143)
    expect_error(ABORTED, client.delete_account, account.id, etag=account.etag)
    assert client.get_account(account.id) == current


def test_delete_with_current_etag_succeeds(client: AccountClient, account: pb.Account) -> None:
    response = client.delete_account(account.id, etag=account.etag)
    assert response.id == account.id
    expect_error(grpc.StatusCode.NOT_FOUND, client.get_account, account.id)


# -- racing writers -------------------------------------------------------------------------


def test_concurrent_updates_with_the_same_etag_let_exactly_one_win(
    client: AccountClient, server: ServerThread, account: pb.Account, connect: Connect
) -> None:
    clients = connect([server.target] * THREADS, client.caller)
    results = run_together(
        clients,
        lambda c, i: c.update_account(account.id, account_name=f"writer-{i}", etag=account.etag),
    )
    ok, codes = split(results)
    assert len(ok) == 1, codes
    assert codes == [ABORTED] * (THREADS - 1)
    final = client.get_account(account.id)
    assert final.account_name == ok[0].account_name
    assert final.etag == ok[0].etag


def test_concurrent_partial_updates_without_etag_all_apply(
    client: AccountClient, server: ServerThread, account: pb.Account, connect: Connect
) -> None:
    changes: list[dict[str, Any]] = [
        {"account_name": "Racing Name"},
        {"hostname": "racing.example.org"},
        {"port": 1143},
        {"encryption": pb.ENCRYPTION_STARTTLS},
        {"username": "racing-user"},
        {"is_sync_enabled": False},
        {"sync_interval": 1800},
        {"is_enabled": False},
        {"email_address": "racing@example.org"},
    ]
    clients = connect([server.target] * len(changes), client.caller)
    results = run_together(clients, lambda c, i: c.update_account(account.id, **changes[i]))
    ok, codes = split(results)
    assert codes == []
    assert len(ok) == len(changes)
    final = client.get_account(account.id)
    for change in changes:
        for name, value in change.items():
            assert getattr(final, name) == value, name
    # Every write bumped the version once: nine distinct etags were handed out.
    assert len({a.etag for a in ok} | {account.etag}) == len(changes) + 1


# -- several replicas on one database -------------------------------------------------------


@pytest.fixture
def replicas(make_server: Callable[..., ServerThread]) -> tuple[ServerThread, ServerThread]:
    return make_server(), make_server()


def test_replicas_share_created_accounts(
    replicas: tuple[ServerThread, ServerThread], connect: Connect
) -> None:
    a, b = connect([replicas[0].target, replicas[1].target], new_caller())
    created = a.create_account(**account_fields())
    assert b.get_account(created.id) == created


def test_update_on_one_replica_is_seen_by_the_other(
    replicas: tuple[ServerThread, ServerThread], connect: Connect
) -> None:
    a, b = connect([replicas[0].target, replicas[1].target], new_caller())
    created = a.create_account(**account_fields())
    updated = b.update_account(created.id, account_name="From B", etag=created.etag)
    assert a.get_account(created.id) == updated
    expect_error(ABORTED, a.update_account, created.id, port=1, etag=created.etag)


def test_replicas_list_the_same_accounts(
    replicas: tuple[ServerThread, ServerThread], connect: Connect
) -> None:
    a, b = connect([replicas[0].target, replicas[1].target], new_caller())
    ids = [a.create_account(**account_fields()).id for _ in range(3)]
    ids += [b.create_account(**account_fields()).id for _ in range(3)]
    b.delete_account(ids[0])
    from_a = a.list_accounts()
    from_b = b.list_accounts()
    assert list(from_a.accounts) == list(from_b.accounts)
    assert {x.id for x in from_a.accounts} == set(ids[1:])
    assert from_a.total_size == from_b.total_size == 5


def test_same_etag_updates_split_across_replicas_let_exactly_one_win(
    replicas: tuple[ServerThread, ServerThread], connect: Connect
) -> None:
    targets = [replicas[i % 2].target for i in range(THREADS)]
    clients = connect(targets, new_caller())
    created = clients[0].create_account(**account_fields())
    results = run_together(
        clients,
        lambda c, i: c.update_account(created.id, sync_interval=60 + i, etag=created.etag),
    )
    ok, codes = split(results)
    assert len(ok) == 1, codes
    assert codes == [ABORTED] * (THREADS - 1)
    for c in clients[:2]:
        assert c.get_account(created.id).sync_interval == ok[0].sync_interval
