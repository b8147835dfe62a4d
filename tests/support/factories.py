"""Test data: unique callers and valid account requests."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mailaccounts_client import Credentials

PASSWORD = "Corr3ct-Horse-Battery"


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
