"""The audit trail: what each change records, and for whom (the authenticated actor)."""

from __future__ import annotations

import uuid

from mailaccounts_server.domain.model import Caller
from mailaccounts_server.domain.ports import AuditLog, AuditRecord, Tx


class AuditTrail:
    """Writes audit events in the change's own transaction."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def record(
        self, tx: Tx, caller: Caller, account_id: str, action: str, fields: list[str],
        now_us: int, *, outcome: str = "SUCCESS",
    ) -> None:  # fmt: skip
        event = self.event(caller, account_id, action, fields, now_us, outcome=outcome)
        await self._log.record(tx, caller.owner, event)

    @staticmethod
    def event(
        caller: Caller, account_id: str, action: str, fields: list[str], now_us: int, *,
        outcome: str = "SUCCESS",
    ) -> AuditRecord:  # fmt: skip
        """The event a change records: what, when, and the authenticated actor."""
        return AuditRecord(
            id=str(uuid.uuid4()),
            time_us=now_us,
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            account_id=account_id,
            action=action,
            changed_fields=fields,
            outcome=outcome,
            actor_identity=caller.actor.identity,
            actor_subject=caller.actor.subject,
        )
