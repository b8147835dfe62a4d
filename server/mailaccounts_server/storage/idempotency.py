"""Idempotency keys of CreateAccount: request_id -> the account it created."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from mailaccounts_server.domain.model import Owner
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


def _claim(dialect: str) -> Any:
    # ON CONFLICT DO NOTHING: a key already taken is an answer (0 rows), not an error that
    # would abort a PostgreSQL transaction (and its pipeline).
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_T).on_conflict_do_nothing()


_CLAIM = Statement(_claim)
_DELETE_OLD = Statement(delete(_T).where(_T.c.created_at < bindparam("before")))


def key_values(
    owner: Owner, request_id: str, request_hash: str, account_id: str, now_us: int
) -> dict[str, Any]:
    """The columns of an idempotency key row."""
    return {
        "tenant_id": owner.tenant_id,
        "user_id": owner.user_id,
        "request_id": request_id,
        "request_hash": request_hash,
        "account_id": account_id,
        "created_at": now_us,
    }


class SqlIdempotencyKeys:
    """IdempotencyKeys over SQLAlchemy-compiled statements."""

    async def find(self, tx: Tx, owner: Owner, request_id: str) -> tuple[str, str] | None:
        """(request_hash, account_id) recorded for this owner's request_id, if any."""
        params = {"tenant_id": owner.tenant_id, "user_id": owner.user_id,
                  "request_id": request_id}  # fmt: skip
        row = await tx.first(_FIND, params)
        return (row["request_hash"], row["account_id"]) if row else None

    async def claim(
        self, tx: Tx, owner: Owner, request_id: str, request_hash: str, account_id: str,
        now_us: int,
    ) -> bool:  # fmt: skip
        """Records the key; False when another request claimed it first (on PostgreSQL this
        waits for that request's transaction to end)."""
        values = key_values(owner, request_id, request_hash, account_id, now_us)
        return await tx.count(_CLAIM, values) == 1

    async def delete_before(self, tx: Tx, before_us: int) -> int:
        """Forgets keys older than the retention (at least 24 hours)."""
        return await tx.count(_DELETE_OLD, {"before": before_us})
