"""Server interceptors: who is calling, and how domain errors become gRPC statuses.

Both concerns wrap the service's handlers in one place, so the servicer only reads the caller
and raises domain errors.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mailaccounts_server.domain.errors import (
    AlreadyExistsError,
    ConflictError,
    DomainError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    ValidationError,
)
from mailaccounts_server.transport.caller import caller_from_metadata, reset_current, set_current

_LOG = logging.getLogger(__name__)
SERVICE_PREFIX = "/mailaccounts.v1.AccountService/"

_STATUS_OF: dict[type[DomainError], grpc.StatusCode] = {
    ValidationError: grpc.StatusCode.INVALID_ARGUMENT,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    ConflictError: grpc.StatusCode.ABORTED,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _status_code(error: DomainError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> None:
    """Ends the call with the status of a domain error (BadRequest details for validation)."""
    code = _status_code(error)
    if isinstance(error, ValidationError):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error))
        status.details.add().Pack(detail)
        converted = rpc_status.to_status(status)
        await context.abort(converted.code, converted.details, converted.trailing_metadata)
    await context.abort(code, str(error))


def _wrap(behavior: Behavior, method: str) -> Behavior:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            token = set_current(caller_from_metadata(context.invocation_metadata()))  # type: ignore[arg-type]
        except UnauthenticatedError as exc:
            await abort_with(context, exc)
            raise AssertionError("unreachable") from None
        try:
            return await behavior(request, context)
        except DomainError as exc:
            await abort_with(context, exc)
        except grpc.aio.AbortError:
            raise
        except Exception:
            # Details stay in the log; the caller gets a reference to quote, never a trace or SQL.
            ref = uuid.uuid4().hex[:12]
            _LOG.exception("unexpected error in %s (ref %s)", method, ref)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {ref})")
        finally:
            reset_current(token)

    return guarded


class AccountServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Reads the caller from metadata and maps errors, for AccountService methods only."""

    def __init__(self) -> None:
        # Handlers are fixed per method, so each is wrapped once rather than on every call.
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(SERVICE_PREFIX) or not handler.unary_unary:
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _wrap(handler.unary_unary, method),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped
