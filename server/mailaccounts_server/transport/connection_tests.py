"""TestConnection: placeholder until the mail adapters land."""

from __future__ import annotations

from mailaccounts.v1 import account_service_pb2 as pb

from mailaccounts_server.domain.errors import DomainError
from mailaccounts_server.domain.model import Caller


class UnimplementedError(DomainError):
    """The RPC exists in the contract but is not served yet."""


class ConnectionTestRunner:
    async def run(
        self, request: pb.TestConnectionRequest, caller: Caller, time_remaining: float | None
    ) -> pb.TestConnectionResponse:
        raise UnimplementedError("TestConnection is not implemented yet")
