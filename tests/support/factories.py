"""Test data and shared helpers: unique callers, valid account requests, error checks."""

from __future__ import annotations

import os
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials

PASSWORD = "Corr3ct-Horse-Battery"
# allow_networks for servers that must reach the test mail servers on loopback.
LOOPBACK = ("127.0.0.0/8",)
# Runs a test on SQLite only (overrides the conftest `database_url` parameters).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def new_caller() -> Credentials:
    """A caller in a tenant of its own."""
    suffix = uuid.uuid4().hex[:8]
    return Credentials(tenant_id=f"tenant-{suffix}", user_id=f"user-{suffix}")


def account_fields(**overrides: Any) -> dict[str, Any]:
    """A valid CreateAccountRequest, with a unique address so accounts never collide."""
    fields: dict[str, Any] = {
        "account_name": "Work Email",
        "email_address": f"user-{uuid.uuid4().hex[:10]}@company.com",
        "hostname": "imap.company.com",
        "port": 993,
        "username": "user@company.com",
        "password": PASSWORD,
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def port_account(client: AccountClient, port: int) -> pb.Account:
    """An IMAP account on 127.0.0.1:`port` without transport security."""
    return client.create_account(
        **account_fields(hostname="127.0.0.1", port=port, encryption=pb.ENCRYPTION_NONE)
    )


def clean_env() -> dict[str, str]:
    """This process's environment without any MAILACCOUNTS_* variable, for server subprocesses."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILACCOUNTS_")}


def expect_error(code: grpc.StatusCode, fn: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    """Calls `fn` and checks it fails with `code`; returns the error for further checks."""
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
    return err


def bad_request_fields(err: grpc.RpcError) -> dict[str, str]:
    """field -> description from the google.rpc.BadRequest detail of an INVALID_ARGUMENT."""
    status = rpc_status.from_call(err)
    assert status is not None, "INVALID_ARGUMENT without google.rpc.Status details"
    fields: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.update({v.field: v.description for v in bad.field_violations})
    assert fields, "INVALID_ARGUMENT without a BadRequest detail"
    return fields
