"""The service's interceptor: who is calling, and how domain errors become gRPC statuses.

Both concerns wrap the service's handlers in one place, so the servicer only reads the caller
and raises domain errors.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2
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
from mailaccounts_server.transport.auth.authenticator import Authenticator
from mailaccounts_server.transport.caller import reset_current, set_current

_LOG = logging.getLogger(__name__)

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


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> None:
    """Ends the call with the status of a domain error (BadRequest details for validation)."""
    code = _status_code(error)
    violations = getattr(error, "violations", None)
    if isinstance(error, ValidationError | FailedPreconditionError) and violations:
        status = status_pb2.Status(code=code.value[0], message=str(error))
        status.details.add().Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in violations
                ]
            )
        )
        if isinstance(error, FailedPreconditionError):
            status.details.add().Pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=error.reason,
                            subject=v.field,
                            description=v.description,
                        )
                        for v in violations
                    ]
                )
            )
        converted = rpc_status.to_status(status)
        await context.abort(converted.code, converted.details, converted.trailing_metadata)
    await context.abort(code, str(error))


def _wrap(behavior: Behavior, method: str, authenticator: Authenticator) -> Behavior:
    authenticate = authenticator.authenticate

    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            token = set_current(await authenticate(context))
        except DomainError as exc:  # UNAUTHENTICATED or PERMISSION_DENIED, nothing touched
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


def guard(servicer: Any, service: ServiceDescriptor, authenticator: Authenticator) -> Any:
    """The servicer with every RPC of `service` wrapped: caller authenticated, errors mapped.

    Applied once when the server is built, rather than as a grpc.aio ServerInterceptor: the
    interceptor chain runs for every call and cost a measurable share of a GetAccount's server
    CPU (README, Performance). Only this service is wrapped, so health and reflection need no
    caller identity.
    """
    methods = {
        m.name: _wrap(getattr(servicer, m.name), f"/{service.full_name}/{m.name}", authenticator)
        for m in service.methods
    }
    return SimpleNamespace(**methods)
