"""Per-tenant rate limits and the failed-password guard: refusals are RESOURCE_EXHAUSTED with
RetryInfo (when to retry) and QuotaFailure (which limit), and touch nothing."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mailaccounts_client import AccountClient
from support.factories import SQLITE_ONLY, account_fields, new_caller
from support.grpc_server import ServerThread


def _details(err: grpc.RpcError) -> tuple[float, list[str]]:
    """(RetryInfo delay in seconds, QuotaFailure subjects) of a refusal."""
    status = rpc_status.from_call(err)
    assert status is not None
    delay, subjects = -1.0, []
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay.ToNanoseconds() / 1e9
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            subjects = [v.subject for v in failure.violations]
    return delay, subjects


@SQLITE_ONLY  # the limits live in the replica, not the database
def test_reads_beyond_the_tenant_burst_are_refused_with_retry_info(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(rate_reads_per_second=0.5, rate_reads_burst=3)
    caller = new_caller()
    with AccountClient(server.target, caller) as client:
        for _ in range(3):
            client.list_accounts()
        with pytest.raises(grpc.RpcError) as info:
            client.list_accounts()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay, subjects = _details(info.value)
    assert 0 < delay <= 2.0
    assert subjects == [f"tenant:{caller.tenant_id}"]
    with AccountClient(server.target, new_caller()) as other:  # another tenant is unaffected
        assert other.list_accounts().total_size == 0


@SQLITE_ONLY
def test_write_limit_refusal_changes_nothing(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_writes_per_second=0.1, rate_writes_burst=1)
    with AccountClient(server.target, new_caller()) as client:
        client.create_account(**account_fields())
        with pytest.raises(grpc.RpcError) as info:
            client.create_account(**account_fields())
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.list_accounts().total_size == 1


@SQLITE_ONLY
def test_defaults_never_limit_a_normal_tenant(client: AccountClient) -> None:
    for _ in range(50):
        client.create_account(**account_fields())
    for _ in range(200):
        client.list_accounts(page_size=1)
