"""AccountService servicer: proto in, domain call, proto out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc

from mailaccounts_server.domain import fields, validation
from mailaccounts_server.domain.accounts import AccountManager
from mailaccounts_server.domain.connection_tests import ConnectionTestRunner
from mailaccounts_server.domain.errors import FieldViolation, ValidationError
from mailaccounts_server.domain.model import AccountFilter
from mailaccounts_server.mail import ErrorCode
from mailaccounts_server.transport import convert
from mailaccounts_server.transport.caller import current_caller
from mailaccounts_server.transport.interceptors import abort_with_status
from mailaccounts_server.transport.ratelimit import RateLimiter, to_rpc_status

Context = grpc.aio.ServicerContext[Any, Any]
_DELETED_MESSAGE = "Account deleted successfully"


class AccountServicer(pb_grpc.AccountServiceServicer):
    """Thin adapter: every rule lives in the domain, and where work runs is the execution
    policy's business (see execution.py)."""

    def __init__(
        self, accounts: AccountManager, tester: ConnectionTestRunner, limiter: RateLimiter
    ) -> None:
        self._accounts = accounts
        self._tester = tester
        self._limiter = limiter

    async def CreateAccount(self, request: pb.CreateAccountRequest, context: Context) -> pb.Account:
        _check_enum(request.protocol, convert.PROTOCOL_FROM_PB, "protocol")
        _check_enum(request.encryption, convert.ENCRYPTION_FROM_PB, "encryption")
        new = validation.validate_new_account(
            account_name=request.account_name,
            email_address=request.email_address,
            protocol=convert.PROTOCOL_FROM_PB.get(request.protocol),
            hostname=request.hostname,
            port=request.port if request.HasField("port") else None,
            encryption=convert.ENCRYPTION_FROM_PB.get(request.encryption),
            username=request.username,
            credential_id=request.credential_id,
            password=request.password if request.HasField("password") else None,
            is_sync_enabled=request.is_sync_enabled
            if request.HasField("is_sync_enabled")
            else None,
            sync_interval=request.sync_interval if request.HasField("sync_interval") else None,
            request_id=request.request_id,
        )
        account = await self._accounts.create(current_caller(), new)
        return convert.account_to_pb(account)

    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.Account:
        account_id = validation.validate_id(request.id)
        account = await self._accounts.get(current_caller(), account_id)
        return convert.account_to_pb(account)

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        page_size = validation.validate_page_size(request.page_size)
        _check_enum(request.protocol, convert.PROTOCOL_FROM_PB, "protocol")
        flt = AccountFilter(
            protocol=convert.PROTOCOL_FROM_PB.get(request.protocol),
            is_enabled=request.is_enabled if request.HasField("is_enabled") else None,
            is_sync_enabled=(
                request.is_sync_enabled if request.HasField("is_sync_enabled") else None
            ),
            query=validation.validate_query(request.query),
            show_deleted=request.show_deleted,
            all_users=request.all_users,
        )
        page = await self._accounts.list_page(current_caller(), flt, page_size, request.page_token)
        return pb.ListAccountsResponse(
            accounts=[convert.account_to_pb(a) for a in page.accounts],
            count=len(page.accounts),
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateAccount(self, request: pb.UpdateAccountRequest, context: Context) -> pb.Account:
        account_id = validation.validate_id(request.id)
        present = convert.present_fields(request, fields.PATCHABLE)
        if "encryption" in present:
            if present["encryption"] not in convert.ENCRYPTION_FROM_PB:
                raise ValidationError(
                    [FieldViolation("encryption", "encryption must be TLS, STARTTLS or NONE")]
                )
            present["encryption"] = convert.ENCRYPTION_FROM_PB[present["encryption"]]
        password = request.password if request.HasField("password") else None
        patch = validation.validate_patch(present, password)
        account = await self._accounts.update(current_caller(), account_id, patch, request.etag)
        return convert.account_to_pb(account)

    async def DeleteAccount(
        self, request: pb.DeleteAccountRequest, context: Context
    ) -> pb.DeleteAccountResponse:
        account_id = validation.validate_id(request.id)
        done = await self._accounts.delete(current_caller(), account_id, request.etag)
        return pb.DeleteAccountResponse(
            message=_DELETED_MESSAGE,
            id=done.account_id,
            delete_time=convert.timestamp(done.deleted_at_us),
            expire_time=convert.timestamp(done.expires_at_us),
        )

    async def UndeleteAccount(
        self, request: pb.UndeleteAccountRequest, context: Context
    ) -> pb.Account:
        account_id = validation.validate_id(request.id)
        account = await self._accounts.undelete(current_caller(), account_id)
        return convert.account_to_pb(account)

    async def TestConnection(
        self, request: pb.TestConnectionRequest, context: Context
    ) -> pb.TestConnectionResponse:
        account_id = validation.validate_id(request.id)
        password = request.password if request.HasField("password") else None
        if password is not None:
            # Brute-force guard: failed logins with a caller-supplied password, per account.
            refusal = self._limiter.check_password_override(account_id)
            if refusal is not None:
                await abort_with_status(context, to_rpc_status(refusal))
        failed = False
        try:
            outcome = await self._tester.run(
                current_caller(),
                account_id,
                password=password,
                timeout_seconds=(
                    request.timeout_seconds if request.HasField("timeout_seconds") else None
                ),
                rpc_time_remaining=context.time_remaining(),
            )
            failed = outcome.result.error_code is ErrorCode.AUTH_FAILURE
        finally:
            if password is not None:
                self._limiter.record_password_override(account_id, failed=failed)
        return convert.test_outcome_to_pb(outcome)

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        page_size = validation.validate_page_size(request.page_size)
        account_id = (
            validation.validate_id(request.account_id, "accountId") if request.account_id else ""
        )
        events, token = await self._accounts.list_audit(
            current_caller(),
            account_id,
            page_size,
            request.page_token,
            all_users=request.all_users,
        )
        return pb.ListAuditEventsResponse(
            events=[convert.audit_event_to_pb(e) for e in events], next_page_token=token
        )


def _check_enum(value: int, known: Mapping[Any, Any], name: str) -> None:
    """Refuses enum numbers this server does not know (proto3 enums are open)."""
    if value and value not in known:
        raise ValidationError([FieldViolation(name, f"{name} has an unknown value {value}")])
