"""A small typed client: sends the caller's metadata and a deadline on every call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Credentials:
    """Who the calls are made for: sent as x-tenant-id and x-user-id (either may be empty to
    leave it out, as with a token that names them), plus `authorization: Bearer <token>` when
    a token is given."""

    tenant_id: str
    user_id: str
    token: str | None = field(default=None, repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [("x-tenant-id", self.tenant_id), ("x-user-id", self.user_id)]
        if self.token is not None:
            pairs.append(("authorization", f"Bearer {self.token}"))
        return tuple((k, v) for k, v in pairs if v or k == "authorization")


class AccountClient:
    """Blocking client of AccountService for one caller.

    `timeout` (seconds) is the default deadline of each call; every method takes `timeout=` to
    override it. Errors surface as `grpc.RpcError` with the server's status code and details.
    """

    def __init__(
        self,
        target: str | grpc.Channel,
        caller: Credentials | None,
        *,
        timeout: float = 10.0,
        channel_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`target` is an address (a channel is opened: TLS with `channel_credentials`, e.g.
        grpc.ssl_channel_credentials(ca, key, cert) for mTLS, else plaintext) or a channel."""
        self._owns_channel = isinstance(target, str)
        if isinstance(target, str):
            self.channel: grpc.Channel = (
                grpc.secure_channel(target, channel_credentials)
                if channel_credentials is not None
                else grpc.insecure_channel(target)
            )
        else:
            self.channel = target
        self.stub = pb_grpc.AccountServiceStub(self.channel)
        self.caller = caller
        self.timeout = timeout

    def as_caller(self, caller: Credentials | None) -> AccountClient:
        """The same channel, calling as someone else (or with no metadata at all)."""
        return AccountClient(self.channel, caller, timeout=self.timeout)

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> AccountClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _kw(self, timeout: float | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"timeout": self.timeout if timeout is None else timeout}
        if self.caller is not None:
            kw["metadata"] = self.caller.metadata()
        return kw

    def create_account(self, *, timeout: float | None = None, **fields: Any) -> pb.Account:
        """Creates an account; `fields` are CreateAccountRequest fields (snake_case)."""
        return self.stub.CreateAccount(pb.CreateAccountRequest(**fields), **self._kw(timeout))

    def get_account(self, account_id: str, *, timeout: float | None = None) -> pb.Account:
        return self.stub.GetAccount(pb.GetAccountRequest(id=account_id), **self._kw(timeout))

    def list_accounts(
        self, *, timeout: float | None = None, **params: Any
    ) -> pb.ListAccountsResponse:
        """One page; `params` are ListAccountsRequest fields (page_size, page_token, filters)."""
        return self.stub.ListAccounts(pb.ListAccountsRequest(**params), **self._kw(timeout))

    def iter_accounts(self, *, page_size: int = 100, **params: Any) -> Iterator[pb.Account]:
        """Every matching account, following page tokens."""
        token = ""
        while True:
            page = self.list_accounts(page_size=page_size, page_token=token, **params)
            yield from page.accounts
            token = page.next_page_token
            if not token:
                return

    def update_account(
        self, account_id: str, *, timeout: float | None = None, **changes: Any
    ) -> pb.Account:
        """Partial update: only the given fields change (`etag=` for a conditional update)."""
        request = pb.UpdateAccountRequest(id=account_id, **changes)
        return self.stub.UpdateAccount(request, **self._kw(timeout))

    def delete_account(
        self, account_id: str, *, etag: str = "", timeout: float | None = None
    ) -> pb.DeleteAccountResponse:
        request = pb.DeleteAccountRequest(id=account_id, etag=etag)
        return self.stub.DeleteAccount(request, **self._kw(timeout))

    def undelete_account(self, account_id: str, *, timeout: float | None = None) -> pb.Account:
        request = pb.UndeleteAccountRequest(id=account_id)
        return self.stub.UndeleteAccount(request, **self._kw(timeout))

    def test_connection(
        self,
        account_id: str,
        *,
        password: str | None = None,
        timeout_seconds: int | None = None,
        timeout: float | None = None,
    ) -> pb.TestConnectionResponse:
        """Asks the server to log in; the RPC deadline defaults to the test's limit plus slack."""
        request = pb.TestConnectionRequest(id=account_id)
        if password is not None:
            request.password = password
        if timeout_seconds is not None:
            request.timeout_seconds = timeout_seconds
        if timeout is None:
            timeout = max(self.timeout, (timeout_seconds or 30) + 5.0)
        return self.stub.TestConnection(request, **self._kw(timeout))

    def list_audit_events(
        self, *, timeout: float | None = None, **params: Any
    ) -> pb.ListAuditEventsResponse:
        request = pb.ListAuditEventsRequest(**params)
        return self.stub.ListAuditEvents(request, **self._kw(timeout))
