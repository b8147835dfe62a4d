"""The caller's identity, read from metadata once per call by the auth interceptor."""

from __future__ import annotations

import contextvars
import re
from collections.abc import Sequence
from typing import Any

from mailaccounts_server.domain.errors import UnauthenticatedError
from mailaccounts_server.domain.model import Caller

TENANT_KEY = "x-tenant-id"
USER_KEY = "x-user-id"
_MAX_ID = 128
_VALID_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces

_CURRENT: contextvars.ContextVar[Caller] = contextvars.ContextVar("mailaccounts_caller")


def caller_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> Caller:
    """The (tenant, user) of a call; UNAUTHENTICATED when either is missing or malformed."""
    tenant = user = ""
    seen: set[str] = set()
    for key, value in metadata or ():
        if key in (TENANT_KEY, USER_KEY):
            if key in seen:
                # A proxy that appends instead of replacing must not let a client pick its tenant.
                raise UnauthenticatedError(f"metadata {key} must be given once")
            seen.add(key)
            text = value if isinstance(value, str) else ""
            if key == TENANT_KEY:
                tenant = text
            else:
                user = text
    tenant, user = tenant.strip(), user.strip()
    if not tenant or not user:
        missing = [k for k, v in ((TENANT_KEY, tenant), (USER_KEY, user)) if not v]
        raise UnauthenticatedError(f"missing or empty metadata: {', '.join(missing)}")
    for key, value in ((TENANT_KEY, tenant), (USER_KEY, user)):
        if len(value) > _MAX_ID or not _VALID_ID.fullmatch(value):
            raise UnauthenticatedError(
                f"metadata {key} must be 1 to {_MAX_ID} printable ASCII characters"
            )
    return Caller(tenant_id=tenant, user_id=user)


def set_current(caller: Caller) -> contextvars.Token[Caller]:
    return _CURRENT.set(caller)


def reset_current(token: contextvars.Token[Caller]) -> None:
    _CURRENT.reset(token)


def current_caller() -> Caller:
    """The caller of the RPC being served; set by the auth interceptor."""
    return _CURRENT.get()
