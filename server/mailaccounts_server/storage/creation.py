"""CreateAccount's writes in as few round trips as each database allows: on PostgreSQL one
statement whose data-modifying CTEs insert the request id claim, the credential, the account,
the owner's count and the audit row together; on SQLite (local, no round trips) one statement
after another in the write transaction."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, literal
from sqlalchemy.dialects import postgresql, sqlite

from mailaccounts_server.domain.model import Owner
from mailaccounts_server.domain.ports import AccountCreation, UniqueViolation
from mailaccounts_server.storage import counts
from mailaccounts_server.storage.audit import audit_values
from mailaccounts_server.storage.credentials import credential_values
from mailaccounts_server.storage.idempotency import key_values
from mailaccounts_server.storage.models import (
    AccountCountRow,
    AccountRow,
    AuditEventRow,
    CredentialRow,
    IdempotencyKeyRow,
)
from mailaccounts_server.storage.sql import Statement, Tx

_ACCOUNTS = cast(Table, AccountRow.__table__)
_CREDENTIALS = cast(Table, CredentialRow.__table__)
_KEYS = cast(Table, IdempotencyKeyRow.__table__)
_AUDIT = cast(Table, AuditEventRow.__table__)
_COUNTS = cast(Table, AccountCountRow.__table__)
_INSERT_ACCOUNT = Statement(insert(_ACCOUNTS))
_INSERT_CREDENTIAL = Statement(insert(_CREDENTIALS))
_INSERT_KEY = Statement(insert(_KEYS))
_INSERT_AUDIT = Statement(insert(_AUDIT))
_CLAIM_SQLITE = Statement(sqlite.insert(_KEYS).on_conflict_do_nothing())


def _values(table: Table, prefix: str) -> dict[str, Any]:
    return {c.name: bindparam(f"{prefix}{c.name}") for c in table.c}


def _one_statement(with_claim: bool, with_credential: bool) -> Statement:
    """PostgreSQL: WITH k AS (INSERT key), c AS (INSERT credential), a AS (INSERT account),
    n AS (INSERT count ON CONFLICT add one) INSERT audit. One statement is one transaction in
    autocommit and one round trip otherwise; a violated unique rule fails it whole."""
    ctes = []
    if with_claim:
        ctes.append(insert(_KEYS).values(_values(_KEYS, "k_")).cte("k"))
    if with_credential:
        ctes.append(insert(_CREDENTIALS).values(_values(_CREDENTIALS, "c_")).cte("c"))
    ctes.append(insert(_ACCOUNTS).values(_values(_ACCOUNTS, "a_")).cte("a"))
    count = postgresql.insert(_COUNTS).values(
        tenant_id=bindparam("a_tenant_id"), user_id=bindparam("a_user_id"), live=literal(1)
    )
    count = count.on_conflict_do_update(
        index_elements=[_COUNTS.c.tenant_id, _COUNTS.c.user_id],
        set_={"live": _COUNTS.c.live + 1},
    )
    ctes.append(count.cte("n"))
    return Statement(insert(_AUDIT).values(_values(_AUDIT, "e_")).add_cte(*ctes))


_ONE_STATEMENT = {
    (claim, credential): _one_statement(claim, credential)
    for claim in (False, True)
    for credential in (False, True)
}


async def create_account(tx: Tx, creation: AccountCreation, rows: dict[str, Any]) -> None:
    """Writes `creation`; `rows` is the account's row (see accounts.to_values)."""
    account = creation.account
    owner = Owner(account.tenant_id, account.user_id)
    key = (
        key_values(owner, creation.request_id, creation.request_hash, account.id, creation.now_us)
        if creation.request_id
        else None
    )
    credential = (
        credential_values(creation.credential, creation.now_us) if creation.credential else None
    )
    audit = audit_values(owner, creation.audit)
    if tx.dialect.name == "postgresql":
        params = {f"a_{k}": v for k, v in rows.items()}
        params.update({f"e_{k}": v for k, v in audit.items()})
        if key is not None:
            params.update({f"k_{k}": v for k, v in key.items()})
        if credential is not None:
            params.update({f"c_{k}": v for k, v in credential.items()})
        await tx.execute(_ONE_STATEMENT[key is not None, credential is not None], params)
        return
    if key is not None and not await tx.count(_CLAIM_SQLITE, key):
        raise UniqueViolation("request_id")
    if credential is not None:
        await tx.execute(_INSERT_CREDENTIAL, credential)
    try:
        await tx.execute(_INSERT_ACCOUNT, rows)
    except tx.integrity_error as exc:
        raise UniqueViolation("email") from exc
    await counts.add_live(tx, owner, +1)
    await tx.execute(_INSERT_AUDIT, audit)
