"""Per-owner live account counters (total_size of an unfiltered ListAccounts in O(1))."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from mailaccounts_server.domain.model import Owner
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


async def add_live(tx: Tx, owner: Owner, delta: int) -> None:
    """Adjusts the owner's live count inside the current (write) transaction."""
    await tx.execute(_ADD, {"tenant_id": owner.tenant_id, "user_id": owner.user_id, "delta": delta})


async def live_count(tx: Tx, owner: Owner) -> int:
    value = await tx.scalar(_GET, {"tenant_id": owner.tenant_id, "user_id": owner.user_id})
    return int(value or 0)


_TENANT = Statement(
    select(func.coalesce(func.sum(_T.c.live), 0)).where(_T.c.tenant_id == bindparam("tenant_id"))
)


async def tenant_live_count(tx: Tx, tenant_id: str) -> int:
    """Live accounts of every user of a tenant (a tenant admin's unfiltered list)."""
    return int(await tx.scalar(_TENANT, {"tenant_id": tenant_id}) or 0)


_CLEAR = Statement(delete(_T))


_ACCOUNTS = cast(Table, AccountRow.__table__)
_RECOUNT = Statement(
    insert(_T).from_select(
        ["tenant_id", "user_id", "live"],
        select(_ACCOUNTS.c.tenant_id, _ACCOUNTS.c.user_id, func.count())
        .where(_ACCOUNTS.c.deleted_at.is_(None))
        .group_by(_ACCOUNTS.c.tenant_id, _ACCOUNTS.c.user_id),
    )
)


async def recount_all(tx: Tx) -> None:
    """Rebuilds every owner's counter from the rows (after a rolling deploy in which replicas
    without counters kept writing). Scans the accounts table: run it off-peak."""
    await tx.execute(_CLEAR)
    await tx.execute(_RECOUNT)
