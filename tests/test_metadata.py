"""Every AccountService RPC refuses a call that does not say, once, who the caller is."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.factories import account_fields, expect_error

_ID = str(uuid.uuid4())
CALLS: list[tuple[str, Any]] = [
    ("CreateAccount", pb.CreateAccountRequest(**account_fields())),
    ("ListAccounts", pb.ListAccountsRequest()),
    ("GetAccount", pb.GetAccountRequest(id=_ID)),
    ("UpdateAccount", pb.UpdateAccountRequest(id=_ID, account_name="x")),
    ("DeleteAccount", pb.DeleteAccountRequest(id=_ID)),
    ("UndeleteAccount", pb.UndeleteAccountRequest(id=_ID)),
    ("TestConnection", pb.TestConnectionRequest(id=_ID)),
    ("ListAuditEvents", pb.ListAuditEventsRequest()),
]
METADATA = {
    "none": (),
    "tenant-only": (("x-tenant-id", "t1"),),
    "user-only": (("x-user-id", "u1"),),
    "empty-values": (("x-tenant-id", ""), ("x-user-id", "")),
    "inner-space": (("x-tenant-id", "t 1"), ("x-user-id", "u1")),
}


@pytest.mark.parametrize(("method", "request_msg"), CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("metadata", list(METADATA.values()), ids=list(METADATA))
def test_rpc_without_identity_is_unauthenticated(
    client: AccountClient, method: str, request_msg: Any, metadata: Any
) -> None:
    err = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        getattr(client.stub, method),
        request_msg,
        metadata=metadata,
        timeout=10,
    )
    assert "x-tenant-id" in err.details() or "x-user-id" in err.details()
    # Nothing was created on the way.
    assert client.list_accounts().count == 0


def test_duplicate_identity_metadata_is_unauthenticated(client: AccountClient) -> None:
    metadata = (("x-tenant-id", "t1"), ("x-user-id", "u1"), ("x-tenant-id", "t2"))
    err = expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        client.stub.ListAccounts,
        pb.ListAccountsRequest(),
        metadata=metadata,
    )
    assert "x-tenant-id" in err.details()
