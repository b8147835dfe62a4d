"""Audit log rows: written in the change's own transaction, read newest first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select

from mailaccounts_server.domain.model import Caller
from mailaccounts_server.storage.models import AuditEventRow
from mailaccounts_server.storage.sql import Statement, StatementCache, Tx

_T = cast(Table, AuditEventRow.__table__)
_INSERT = Statement(insert(_T))
_pages = StatementCache()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record as the domain sees it."""

    id: str
    time_us: int
    tenant_id: str
    user_id: str
    account_id: str
    action: str
    changed_fields: list[str]
    outcome: str
    actor_identity: str = ""
    actor_subject: str = ""


def record(
    tx: Tx,
    caller: Caller,
    *,
    account_id: str,
    action: str,
    changed_fields: list[str],
    outcome: str,
    now_us: int,
) -> None:
    """Adds an audit record to the current transaction."""
    tx.execute(
        _INSERT,
        {
            "id": str(uuid.uuid4()),
            "tenant_id": caller.tenant_id,
            "user_id": caller.user_id,
            "account_id": account_id,
            "action": action,
            "changed_fields": ",".join(changed_fields),
            "outcome": outcome,
            "time": now_us,
            "actor_identity": caller.actor.identity,
            "actor_subject": caller.actor.subject,
        },
    )


def list_events(
    tx: Tx,
    caller: Caller,
    *,
    account_id: str | None,
    after: tuple[int, str] | None,
    limit: int,
    all_users: bool = False,
) -> list[AuditEvent]:
    """One page of the caller's events (with `all_users`, its tenant's), newest first,
    strictly after the keyset `after`."""
    shape = (bool(account_id), after is not None, all_users)

    def build() -> object:
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

    params: dict[str, object] = {"tenant_id": caller.tenant_id, "limit": limit}
    if not all_users:
        params["user_id"] = caller.user_id
    if account_id:
        params["account_id"] = account_id
    if after is not None:
        params["after_time"], params["after_id"] = after
    names = [c.name for c in _T.c]
    events = []
    for row in tx.rows(_pages.get(shape, build), params):
        r = dict(zip(names, row, strict=True))
        events.append(
            AuditEvent(
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
        )
    return events
