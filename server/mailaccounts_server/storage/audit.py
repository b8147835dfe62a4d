"""Audit log rows: written in the change's own transaction, read newest first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, and_, insert, or_, select
from sqlalchemy.orm import Session

from mailaccounts_server.domain.model import Caller
from mailaccounts_server.storage.models import AuditEventRow

_T = cast(Table, AuditEventRow.__table__)


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


def record(
    session: Session,
    caller: Caller,
    *,
    account_id: str,
    action: str,
    changed_fields: list[str],
    outcome: str,
    now_us: int,
) -> None:
    """Adds an audit record to the current transaction."""
    session.execute(
        insert(_T).values(
            id=str(uuid.uuid4()),
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            account_id=account_id,
            action=action,
            changed_fields=",".join(changed_fields),
            outcome=outcome,
            time=now_us,
        )
    )


def list_events(
    session: Session,
    caller: Caller,
    *,
    account_id: str | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[AuditEvent]:
    """One page of the caller's events, newest first, strictly after the keyset `after`."""
    conditions = [_T.c.tenant_id == caller.tenant_id, _T.c.user_id == caller.user_id]
    if account_id:
        conditions.append(_T.c.account_id == account_id)
    if after is not None:
        time_us, last_id = after
        conditions.append(or_(_T.c.time < time_us, and_(_T.c.time == time_us, _T.c.id < last_id)))
    stmt = select(_T).where(*conditions).order_by(_T.c.time.desc(), _T.c.id.desc()).limit(limit)
    return [
        AuditEvent(
            id=r.id,
            time_us=r.time,
            tenant_id=r.tenant_id,
            user_id=r.user_id,
            account_id=r.account_id,
            action=r.action,
            changed_fields=[f for f in r.changed_fields.split(",") if f],
            outcome=r.outcome,
        )
        for r in session.execute(stmt)
    ]
