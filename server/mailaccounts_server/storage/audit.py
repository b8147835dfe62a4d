"""Audit log rows: written in the change's own transaction, read newest first."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select

from mailaccounts_server.domain.model import Owner
from mailaccounts_server.domain.ports import AuditRecord
from mailaccounts_server.storage.models import AuditEventRow
from mailaccounts_server.storage.sql import Statement, StatementCache, Tx

_T = cast(Table, AuditEventRow.__table__)
_INSERT = Statement(insert(_T))
_pages = StatementCache()


def audit_values(owner: Owner, event: AuditRecord) -> dict[str, Any]:
    """The columns of an audit row."""
    return {
        "id": event.id,
        "tenant_id": owner.tenant_id,
        "user_id": owner.user_id,
        "account_id": event.account_id,
        "action": event.action,
        "changed_fields": ",".join(event.changed_fields),
        "outcome": event.outcome,
        "time": event.time_us,
        "actor_identity": event.actor_identity,
        "actor_subject": event.actor_subject,
    }


class SqlAuditLog:
    """AuditLog over SQLAlchemy-compiled statements."""

    async def record(self, tx: Tx, owner: Owner, event: AuditRecord) -> None:
        """Adds an audit record to the current transaction."""
        await tx.execute(_INSERT, audit_values(owner, event))

    async def page(
        self, tx: Tx, owner: Owner, *, account_id: str | None, after: tuple[int, str] | None,
        limit: int,
    ) -> list[AuditRecord]:  # fmt: skip
        """One page of the owner's events (user None: the tenant's), newest first, strictly
        after the keyset `after`."""
        all_users = owner.user_id is None
        shape = (bool(account_id), after is not None, all_users)

        def build() -> Any:
            conditions = [_T.c.tenant_id == bindparam("tenant_id")]
            if not all_users:
                conditions.append(_T.c.user_id == bindparam("user_id"))
            if account_id:
                conditions.append(_T.c.account_id == bindparam("account_id"))
            if after is not None:
                time_us: Any = bindparam("after_time")
                last_id: Any = bindparam("after_id")
                conditions.append(
                    or_(_T.c.time < time_us, and_(_T.c.time == time_us, _T.c.id < last_id))
                )
            return (
                select(*_T.c)
                .where(*conditions)
                .order_by(_T.c.time.desc(), _T.c.id.desc())
                .limit(bindparam("limit"))
            )

        params: dict[str, object] = {"tenant_id": owner.tenant_id, "limit": limit}
        if not all_users:
            params["user_id"] = owner.user_id
        if account_id:
            params["account_id"] = account_id
        if after is not None:
            params["after_time"], params["after_id"] = after
        return [
            AuditRecord(
                id=r["id"],
                time_us=r["time"],
                tenant_id=r["tenant_id"],
                user_id=r["user_id"],
                account_id=r["account_id"],
                action=r["action"],
                changed_fields=[f for f in r["changed_fields"].split(",") if f],
                outcome=r["outcome"],
                actor_identity=r["actor_identity"],
                actor_subject=r["actor_subject"],
            )
            for r in await tx.rows(_pages.get(shape, build), params)
        ]
