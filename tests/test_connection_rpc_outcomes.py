"""TestConnection over gRPC: the outcome is recorded on the account and audited, the per-tenant
cap, and hanging tests never hold up other calls."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.dovecot import DovecotServer
from support.factories import (
    LOOPBACK,
    SQLITE_ONLY,
    account_fields,
    expect_error,
    new_caller,
    port_account,
)
from support.grpc_server import ServerThread

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TIMEOUT = pb.CONNECTION_ERROR_CODE_TIMEOUT


def dovecot_pop3_account(client: AccountClient, dovecot: DovecotServer) -> pb.Account:
    return client.create_account(
        **account_fields(
            protocol=pb.PROTOCOL_POP3,
            encryption=pb.ENCRYPTION_NONE,
            hostname="127.0.0.1",
            port=dovecot.pop3,
            username=dovecot.user,
            password=dovecot.password,
        )
    )


def call_or_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The call's result, or the grpc.RpcError it raised."""
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err


# -- the outcome is recorded ----------------------------------------------------------------


def test_success_is_recorded_on_the_account(
    loopback_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_pop3_account(loopback_client, dovecot)
    assert not account.HasField("last_connection_test")
    result = loopback_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message
    summary = loopback_client.get_account(account.id).last_connection_test
    assert summary.time == result.timestamp
    assert summary.success is True
    assert summary.error_code == pb.CONNECTION_ERROR_CODE_UNSPECIFIED
    assert summary.message == result.message == "Connection successful"


def test_failure_is_recorded_on_the_account(
    loopback_client: AccountClient, closed_port: int
) -> None:
    account = port_account(loopback_client, closed_port)
    result = loopback_client.test_connection(account.id, timeout_seconds=5)
    summary = loopback_client.get_account(account.id).last_connection_test
    assert summary.time == result.timestamp
    assert summary.success is False
    assert summary.error_code == pb.CONNECTION_ERROR_CODE_CONNECTION_REFUSED
    assert summary.message == result.message
    assert "refused" in summary.message


def test_success_is_audited(loopback_client: AccountClient, dovecot: DovecotServer) -> None:
    account = dovecot_pop3_account(loopback_client, dovecot)
    assert loopback_client.test_connection(account.id, timeout_seconds=10).success
    newest = loopback_client.list_audit_events(account_id=account.id).events[0]
    assert newest.action == pb.AUDIT_ACTION_TEST_CONNECTION
    assert newest.outcome == pb.AUDIT_OUTCOME_SUCCESS
    assert newest.account_id == account.id
    assert list(newest.changed_fields) == []


def test_failure_is_audited(loopback_client: AccountClient, closed_port: int) -> None:
    account = port_account(loopback_client, closed_port)
    assert not loopback_client.test_connection(account.id, timeout_seconds=5).success
    newest = loopback_client.list_audit_events(account_id=account.id).events[0]
    assert newest.action == pb.AUDIT_ACTION_TEST_CONNECTION
    assert newest.outcome == pb.AUDIT_OUTCOME_FAILURE
    assert newest.account_id == account.id


def test_recording_a_test_keeps_the_etag(loopback_client: AccountClient, closed_port: int) -> None:
    account = port_account(loopback_client, closed_port)
    loopback_client.test_connection(account.id, timeout_seconds=5)
    after = loopback_client.get_account(account.id)
    assert after.HasField("last_connection_test")
    assert after.etag == account.etag
    assert after.updated_at == account.updated_at
    # The etag read before the test still allows a conditional update.
    renamed = loopback_client.update_account(account.id, account_name="Renamed", etag=account.etag)
    assert renamed.account_name == "Renamed"


# -- per-tenant cap -------------------------------------------------------------------------


@SQLITE_ONLY
def test_third_concurrent_test_of_a_tenant_is_refused(
    make_server: Callable[..., ServerThread], blackhole_port: int
) -> None:
    server = make_server(allow_networks=LOOPBACK, max_tests_per_tenant=2)
    with AccountClient(server.target, new_caller()) as client:
        account = port_account(client, blackhole_port)
        barrier = threading.Barrier(3)

        def run(_: int) -> Any:
            barrier.wait(timeout=10)
            return call_or_error(client.test_connection, account.id, timeout_seconds=2)

        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(run, range(3)))
    refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    results = [o for o in outcomes if not isinstance(o, grpc.RpcError)]
    assert [err.code() for err in refused] == [EXHAUSTED], [str(o) for o in outcomes]
    assert "at most 2 connection tests per tenant" in str(refused[0].details())
    assert [r.error_code for r in results] == [TIMEOUT, TIMEOUT]


@SQLITE_ONLY
def test_a_tenant_at_its_cap_does_not_block_another_tenant(
    make_server: Callable[..., ServerThread], closed_port: int
) -> None:
    server = make_server(allow_networks=LOOPBACK, max_tests_per_tenant=2)
    with (
        accepting_blackhole() as (port, accepted),
        AccountClient(server.target, new_caller()) as busy,
        AccountClient(server.target, new_caller()) as other,
        ThreadPoolExecutor(2) as pool,
    ):
        hanging = port_account(busy, port)
        free = port_account(other, closed_port)
        pending = [
            pool.submit(busy.test_connection, hanging.id, timeout_seconds=5) for _ in range(2)
        ]
        # Both tests hold their slots once both connections reached the silent server.
        deadline = time.monotonic() + 4
        while len(accepted) < 2:
            assert time.monotonic() < deadline, "the two tests never connected"
            time.sleep(0.02)
        extra = call_or_error(busy.test_connection, hanging.id, timeout_seconds=2)
        result = other.test_connection(free.id, timeout_seconds=2)
        still_pending = not any(f.done() for f in pending)
        assert [f.result().error_code for f in pending] == [TIMEOUT, TIMEOUT]
    assert isinstance(extra, grpc.RpcError) and extra.code() == EXHAUSTED, extra
    assert result.error_code == pb.CONNECTION_ERROR_CODE_CONNECTION_REFUSED
    assert still_pending, "the other tenant's test only ran after the busy tenant's finished"


@SQLITE_ONLY
def test_cancelled_test_keeps_its_slot_until_the_probe_ends_and_is_audited(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(allow_networks=LOOPBACK, max_tests_per_tenant=1)
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
        err = expect_error(EXHAUSTED, client.test_connection, account.id)
        assert "per tenant" in err.details()
        # Once it timed out, it is recorded like any other test, and the slot is free again.
        deadline = time.monotonic() + 10
        while not client.get_account(account.id).HasField("last_connection_test"):
            assert time.monotonic() < deadline, "the abandoned test was never recorded"
            time.sleep(0.1)
        events = client.list_audit_events(account_id=account.id).events
        assert [e.action for e in events][0] == pb.AUDIT_ACTION_TEST_CONNECTION
        again = client.test_connection(account.id, timeout_seconds=1)
        assert again.error_code == TIMEOUT


# -- isolation ------------------------------------------------------------------------------


@contextlib.contextmanager
def accepting_blackhole() -> Iterator[tuple[int, list[socket.socket]]]:
    """A loopback port that accepts connections (recording them) and never sends a byte."""
    accepted: list[socket.socket] = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.05)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in accepted:
            conn.close()


HANGING_TESTS = 50
READS = 20


@SQLITE_ONLY
def test_reads_complete_while_many_tests_hang(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(allow_networks=LOOPBACK, max_tests_per_tenant=HANGING_TESTS)
    with (
        accepting_blackhole() as (port, accepted),
        AccountClient(server.target, new_caller()) as client,
    ):
        assert client.caller is not None
        metadata = client.caller.metadata()
        account = port_account(client, port)
        request = pb.TestConnectionRequest(id=account.id, timeout_seconds=5)
        tests = [
            client.stub.TestConnection.future(request, metadata=metadata, timeout=10)
            for _ in range(HANGING_TESTS)
        ]
        # Every test is inside its probe once its connection reached the silent server.
        deadline = time.monotonic() + 4
        while len(accepted) < HANGING_TESTS and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(accepted) == HANGING_TESTS

        reads = [
            client.stub.GetAccount.future(
                pb.GetAccountRequest(id=account.id), metadata=metadata, timeout=10
            )
            for _ in range(READS)
        ]
        read_ids = [r.result().id for r in reads]
        tests_done_after_reads = sum(t.done() for t in tests)
        outcomes = [t.result() for t in tests]
    assert read_ids == [account.id] * READS
    assert tests_done_after_reads == 0
    assert {o.error_code for o in outcomes} == {TIMEOUT}
