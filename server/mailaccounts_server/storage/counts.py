"""Per-owner live account counters (total_size of an unfiltered ListAccounts in O(1))."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from mailaccounts_server.domain.model import Caller
from mailaccounts_server.storage.models import AccountCountRow, AccountRow
from mailaccounts_server.storage.sql import Statement, Tx

_T = cast(Table, AccountCountRow.__table__)
_GET = Statement(
    select(_T.c.live).where(
        _T.c.tenant_id == bindparam("tenant_id"), _T.c.user_id == bindparam("user_id")
    )
)


def _upsert(dialect: str) -> Any:
    # Both dialects spell INSERT ... ON CONFLICT alike; the construct itself is per dialect.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_T).values(
        tenant_id=bindparam("tenant_id"), user_id=bindparam("user_id"), live=bindparam("delta")
    )
    return stmt.on_conflict_do_update(
        index_elements=[_T.c.tenant_id, _T.c.user_id],
        set_={"live": _T.c.live + stmt.excluded.live},
    )


_ADD = Statement(_upsert)


def add_live(tx: Tx, caller: Caller, delta: int) -> None:
    """Adjusts the owner's live count inside the current (write) transaction."""
    tx.execute(_ADD, {"tenant_id": caller.tenant_id, "user_id": caller.user_id, "delta": delta})


def live_count(tx: Tx, caller: Caller) -> int:
    value = tx.scalar(_GET, {"tenant_id": caller.tenant_id, "user_id": caller.user_id})
    return int(value or 0)


_TENANT = Statement(
    select(func.coalesce(func.sum(_T.c.live), 0)).where(_T.c.tenant_id == bindparam("tenant_id"))
)


def tenant_live_count(tx: Tx, tenant_id: str) -> int:
    """Live accounts of every user of a tenant (a tenant admin's unfiltered list)."""
    return int(tx.scalar(_TENANT, {"tenant_id": tenant_id}) or 0)


_CLEAR = Statement(delete(_T))


def _recount(dialect: str) -> Any:
    accounts = cast(Table, AccountRow.__table__)
    live = (
        select(accounts.c.tenant_id, accounts.c.user_id, func.count())
        .where(accounts.c.deleted_at.is_(None))
        .group_by(accounts.c.tenant_id, accounts.c.user_id)
    )
    return insert(_T).from_select(["tenant_id", "user_id", "live"], live)


_RECOUNT = Statement(_recount)


def recount_all(tx: Tx) -> None:
    """Rebuilds every owner's counter from the rows (after a rolling deploy in which replicas
    without counters kept writing). Scans the accounts table: run it off-peak."""
    tx.execute(_CLEAR)
    tx.execute(_RECOUNT)
