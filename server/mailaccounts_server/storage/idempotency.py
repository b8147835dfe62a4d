"""Idempotency keys of CreateAccount: request_id -> the account it created."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select

from mailaccounts_server.domain.model import Caller
from mailaccounts_server.storage.models import IdempotencyKeyRow
from mailaccounts_server.storage.sql import Statement, Tx

_T = cast(Table, IdempotencyKeyRow.__table__)
_FIND = Statement(
    select(_T.c.request_hash, _T.c.account_id).where(
        _T.c.tenant_id == bindparam("tenant_id"),
        _T.c.user_id == bindparam("user_id"),
        _T.c.request_id == bindparam("request_id"),
    )
)
_INSERT = Statement(insert(_T))
_DELETE_OLD = Statement(delete(_T).where(_T.c.created_at < bindparam("before")))


def find_key(tx: Tx, caller: Caller, request_id: str) -> tuple[str, str] | None:
    """(request_hash, account_id) recorded for this caller's request_id, if any."""
    row = tx.first(
        _FIND,
        {"tenant_id": caller.tenant_id, "user_id": caller.user_id, "request_id": request_id},
    )
    return (row[0], row[1]) if row else None


def claim_key(
    tx: Tx, caller: Caller, request_id: str, request_hash: str, account_id: str, now_us: int
) -> bool:
    """Records the key; False when a concurrent request claimed it first (the caller then
    rolls back and reads what that one created)."""
    try:
        tx.execute(
            _INSERT,
            {
                "tenant_id": caller.tenant_id,
                "user_id": caller.user_id,
                "request_id": request_id,
                "request_hash": request_hash,
                "account_id": account_id,
                "created_at": now_us,
            },
        )
    except tx.integrity_error:
        return False
    return True


def delete_keys_before(tx: Tx, before_us: int) -> int:
    """Forgets keys older than the retention (at least 24 hours)."""
    return int(tx.execute(_DELETE_OLD, {"before": before_us}).rowcount)
