"""Requests that do not decode are the caller's error: INVALID_ARGUMENT, no traceback, and a
flood of them costs one log line per interval."""

from __future__ import annotations

import logging

import grpc
import pytest
from mailaccounts_client import AccountClient
from support.factories import SQLITE_ONLY
from support.grpc_server import ServerThread

_INVALID_UTF8_NAME = b"\x0a\x02\xff\xfe"  # field 1 (account_name), 2 bytes, not UTF-8


def _raw_call(server: ServerThread, method: str, payload: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(f"/mailaccounts.v1.AccountService/{method}")
        with pytest.raises(grpc.RpcError) as info:
            call(payload, metadata=(("x-tenant-id", "t1"), ("x-user-id", "u1")), timeout=5)
    return info.value


@SQLITE_ONLY  # decoding happens before any storage work
@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("CreateAccount", _INVALID_UTF8_NAME),
        ("GetAccount", b"\x0a\x03\xc3\x28\x41"),
        ("UpdateAccount", b"\x12\x05\xed\xa0\x80ab"),  # a lone surrogate, UTF-8 encoded
        ("ListAccounts", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),  # broken varint
        ("TestConnection", b"\x0a"),  # a tag with no value
    ],
)
def test_undecodable_request_is_invalid_argument_without_traceback(
    server: ServerThread, method: str, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    err = _raw_call(server, method, payload)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "the request could not be decoded"
    assert not [r for r in caplog.records if r.exc_info]


@SQLITE_ONLY
def test_a_flood_of_undecodable_requests_logs_one_line(
    server: ServerThread, client: AccountClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(50):
        assert _raw_call(server, "CreateAccount", _INVALID_UTF8_NAME).code() == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    lines = [r for r in caplog.records if "could not be decoded" in r.getMessage()]
    assert len(lines) == 1
    assert client.list_accounts().total_size == 0


@SQLITE_ONLY
def test_undecodable_request_without_identity_is_unauthenticated(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary("/mailaccounts.v1.AccountService/CreateAccount")
        with pytest.raises(grpc.RpcError) as info:
            call(_INVALID_UTF8_NAME, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
