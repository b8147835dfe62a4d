"""Domain errors: what went wrong in terms of the service's rules, mapped to gRPC in transport."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its proto JSON name and why it is invalid."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a caller can cause; the message is safe to return."""


class ValidationError(DomainError):
    """The request breaks one or more field rules."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class UnauthenticatedError(DomainError):
    """The call does not say who the caller is."""


class PermissionDeniedError(DomainError):
    """The resource belongs to another tenant or user."""


class NotFoundError(DomainError):
    """No such resource."""


class AlreadyExistsError(DomainError):
    """A resource with the same identity already exists."""


class ConflictError(DomainError):
    """A concurrent change won: the caller's etag is stale."""


class FailedPreconditionError(DomainError):
    """The system is not in a state where the request can run; `violations` name the request
    fields that would fix it (sent as google.rpc.PreconditionFailure, of type `reason`, and
    BadRequest details)."""

    def __init__(
        self, message: str, *, violations: list[FieldViolation] | None = None, reason: str = ""
    ) -> None:
        self.violations = violations or []
        self.reason = reason or "FAILED_PRECONDITION"
        super().__init__(message)


class ResourceExhaustedError(DomainError):
    """A quota or concurrency cap was hit; retry later."""


def invalid(field: str, description: str) -> ValidationError:
    """Shorthand for a validation error on a single field."""
    return ValidationError([FieldViolation(field, description)])
