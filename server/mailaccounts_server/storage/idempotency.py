"""Idempotency keys of CreateAccount: request_id -> the account it created."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailaccounts_server.domain.model import Caller
from mailaccounts_server.storage.models import IdempotencyKeyRow

_T = cast(Table, IdempotencyKeyRow.__table__)


def find_key(session: Session, caller: Caller, request_id: str) -> tuple[str, str] | None:
    """(request_hash, account_id) recorded for this caller's request_id, if any."""
    row = session.execute(
        select(_T.c.request_hash, _T.c.account_id).where(
            _T.c.tenant_id == caller.tenant_id,
            _T.c.user_id == caller.user_id,
            _T.c.request_id == request_id,
        )
    ).first()
    return (row[0], row[1]) if row else None


def claim_key(
    session: Session,
    caller: Caller,
    request_id: str,
    request_hash: str,
    account_id: str,
    now_us: int,
) -> bool:
    """Records the key; False when a concurrent request claimed it first (the caller then
    rolls back and reads what that one created)."""
    try:
        session.execute(
            insert(_T).values(
                tenant_id=caller.tenant_id,
                user_id=caller.user_id,
                request_id=request_id,
                request_hash=request_hash,
                account_id=account_id,
                created_at=now_us,
            )
        )
    except IntegrityError:
        return False
    return True


def delete_keys_before(session: Session, before_us: int) -> int:
    """Forgets keys older than the retention (at least 24 hours)."""
    result = session.execute(delete(_T).where(_T.c.created_at < before_us))
    return int(result.rowcount)  # type: ignore[attr-defined]
