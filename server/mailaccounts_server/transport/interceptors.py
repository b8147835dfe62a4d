"""The service's interceptor: who is calling, and how domain errors become gRPC statuses.

Both concerns wrap the service's handlers in one place, so the servicer only reads the caller
and raises domain errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
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
from mailaccounts_server.domain.ports import StorageFull, StorageUnavailable, call_deadline
from mailaccounts_server.logs import REQUEST_ID_KEY, new_request_id, request_id
from mailaccounts_server.transport.auth.authenticator import Authenticator
from mailaccounts_server.transport.caller import reset_current, set_current
from mailaccounts_server.transport.ratelimit import CLASS_OF, RateLimiter, to_rpc_status
from mailaccounts_server.transport.shutdown import CallTracker

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
        await abort_with_status(context, status)
    await context.abort(code, str(error))


async def abort_with_status(
    context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status
) -> None:
    """Ends the call with a google.rpc.Status and its details (in the trailing metadata,
    beside the request id)."""
    converted = rpc_status.to_status(status)
    trailing = (*converted.trailing_metadata, (REQUEST_ID_KEY, request_id.get()))
    await context.abort(converted.code, converted.details, trailing)


def _metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else None
    return None


class _DecodeFailures:
    """One log line per interval for requests that do not decode, whatever their number: an
    anonymous caller must not be able to flood the log (or fill it with tracebacks)."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def note(self, method: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        _LOG.warning("a request to %s could not be decoded (%d more since the last such line)",
                     method, self._suppressed)  # fmt: skip
        self._next, self._suppressed = now + self._interval, 0


def _wrap(
    behavior: Behavior,
    method: str,
    authenticator: Authenticator,
    request_type: type[Message],
    decode_failures: _DecodeFailures,
    calls: CallTracker,
    limiter: RateLimiter,
) -> Behavior:
    authenticate = authenticator.authenticate
    decode = request_type.FromString
    call_class = CLASS_OF[method.rsplit("/", 1)[-1]]

    async def guarded(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if calls.refusing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        task = calls.enter()
        try:
            return await _serve(raw, context)
        except asyncio.CancelledError:
            if not calls.cutting or task is None:
                raise
            # The grace period ended with this call still running: retryable, not CANCELLED.
            task.uncancel()
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        finally:
            calls.leave(task)

    async def _serve(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # Every log line of the call carries its request id; the caller gets it back.
        rid = new_request_id(_metadata_value(context, REQUEST_ID_KEY))
        request_id.set(rid)
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        remaining = context.time_remaining()
        if remaining is not None:
            call_deadline.set(asyncio.get_running_loop().time() + remaining)
        try:
            caller = await authenticate(context)
        except DomainError as exc:  # UNAUTHENTICATED or PERMISSION_DENIED, nothing touched
            await abort_with(context, exc)
            raise AssertionError("unreachable") from None
        refusal = limiter.check(caller.tenant_id, call_class)
        if refusal is not None:
            await abort_with_status(context, to_rpc_status(refusal))
        token = set_current(caller)
        try:
            # Decoded here, not by grpc: a malformed request (invalid UTF-8 in a string field,
            # a broken varint) is the caller's error, answered as such, with no traceback.
            try:
                request = decode(raw)
            except DecodeError:
                decode_failures.note(method)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the request could not be decoded"
                )
            return await behavior(request, context)
        except DomainError as exc:
            await abort_with(context, exc)
        except StorageUnavailable as exc:
            # Logged once per outage by the storage layer, not once per call.
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "database unavailable; the outcome is unknown: retry with the same requestId "
                "or etag"
                if exc.outcome_unknown
                else "database unavailable, retry",
            )
        except StorageFull:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "the database is out of space; nothing changed"
            )
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


_SHUTTING_DOWN = "the server is shutting down; retry"


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def guard(
    servicer: Any,
    service: ServiceDescriptor,
    authenticator: Authenticator,
    calls: CallTracker,
    limiter: RateLimiter,
) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    """The handlers of every RPC of `service`: request decoded, caller authenticated, domain
    errors mapped to status codes, in one wrapper per method.

    Applied once when the server is built, rather than as a grpc.aio ServerInterceptor: the
    interceptor chain runs for every call and cost a measurable share of a GetAccount's server
    CPU (README, Performance). Only this service is wrapped, so health and reflection need no
    caller identity.
    """
    decode_failures = _DecodeFailures()
    handlers = {
        m.name: grpc.unary_unary_rpc_method_handler(
            _wrap(
                getattr(servicer, m.name),
                f"/{service.full_name}/{m.name}",
                authenticator,
                GetMessageClass(m.input_type),
                decode_failures,
                calls,
                limiter,
            ),
            request_deserializer=None,  # raw bytes: decoded in the wrapper
            response_serializer=_serialize,
        )
        for m in service.methods
    }
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
