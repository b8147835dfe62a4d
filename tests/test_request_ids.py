"""Request ids and JSON logs: every call's lines carry its x-request-id (or a generated one),
which comes back in trailing metadata, on success and on error."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from conftest import TEST_KEY
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.factories import SQLITE_ONLY, account_fields, new_caller
from support.process import ServerProcess


def _trailing_request_id(call: grpc.Call) -> str | None:
    return dict(call.trailing_metadata() or ()).get("x-request-id")


@SQLITE_ONLY  # transport behaviour
def test_request_id_is_returned_on_success_and_on_error(client: AccountClient) -> None:
    metadata = (*client.caller.metadata(), ("x-request-id", "req-123"))  # type: ignore[union-attr]
    created = client.create_account(**account_fields())
    _, call = client.stub.GetAccount.with_call(
        pb.GetAccountRequest(id=created.id), metadata=metadata, timeout=5
    )
    assert _trailing_request_id(call) == "req-123"
    with pytest.raises(grpc.RpcError) as info:
        client.stub.GetAccount(pb.GetAccountRequest(id="nope"), metadata=metadata, timeout=5)
    assert _trailing_request_id(info.value) == "req-123"  # type: ignore[arg-type]


@SQLITE_ONLY
def test_a_request_id_is_generated_when_none_or_a_bad_one_is_sent(client: AccountClient) -> None:
    for extra in ((), (("x-request-id", "has space"),)):
        metadata = (*client.caller.metadata(), *extra)  # type: ignore[union-attr]
        _, call = client.stub.ListAccounts.with_call(
            pb.ListAccountsRequest(), metadata=metadata, timeout=5
        )
        generated = _trailing_request_id(call)
        assert generated and generated != "has space" and len(generated) == 32


def test_json_log_lines_carry_the_request_id(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'j.db'}", tmp_path, "--log-format", "json",
        env={"MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY},
    )  # fmt: skip
    try:
        caller = new_caller()
        with AccountClient(server.target, caller) as client:
            client.stub.CreateAccount(
                pb.CreateAccountRequest(**account_fields()),
                metadata=(*caller.metadata(), ("x-request-id", "create-42")),
                timeout=10,
            )
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in lines)
    created = [r for r in lines if r["message"].startswith("account created")]
    assert [r["request_id"] for r in created] == ["create-42"]
