"""Encrypted credential rows. Only ciphertext passes through here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update

from mailaccounts_server.storage.models import CredentialRow
from mailaccounts_server.storage.sql import Statement, Tx

_T = cast(Table, CredentialRow.__table__)
_INSERT = Statement(insert(_T))
_SELECT = select(_T.c.tenant_id, _T.c.user_id, _T.c.ciphertext, _T.c.host).where(
    _T.c.id == bindparam("credential_id")
)
_GET = Statement(_SELECT)
# On PostgreSQL an account that starts using a credential (FOR SHARE) and the deletion of an
# unused one (FOR UPDATE) serialise on the row; SQLite compiles the locks away (its writers are
# serialised already).
_GET_SHARED = Statement(_SELECT.with_for_update(read=True))
_GET_EXCLUSIVE = Statement(_SELECT.with_for_update())
_SET = Statement(
    update(_T)
    .where(_T.c.id == bindparam("credential_id"))
    .values(ciphertext=bindparam("ciphertext"), host=bindparam("host"), updated_at=bindparam("now"))
)
_DELETE = Statement(delete(_T).where(_T.c.id == bindparam("credential_id")))
_PAGE = Statement(
    select(_T.c.id, _T.c.tenant_id, _T.c.user_id, _T.c.ciphertext, _T.c.host)
    .where(_T.c.id > bindparam("after_id"))
    .order_by(_T.c.id)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A credential row: its owner, its ciphertext and the host it is bound to (None: legacy)."""

    tenant_id: str
    user_id: str
    ciphertext: str
    host: str | None


def insert_credential(
    tx: Tx,
    *,
    credential_id: str,
    tenant_id: str,
    user_id: str,
    ciphertext: str,
    host: str,
    now_us: int,
) -> None:
    tx.execute(
        _INSERT,
        {
            "id": credential_id,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "ciphertext": ciphertext,
            "host": host,
            "created_at": now_us,
            "updated_at": now_us,
        },
    )


def get_credential(
    tx: Tx, credential_id: str, *, lock: Literal["share", "update"] | None = None
) -> StoredCredential | None:
    """A credential, whoever owns it; callers check.

    `lock` holds the row until the transaction ends: "share" while an account takes it into
    use, "update" before deciding to delete it.
    """
    statement = {None: _GET, "share": _GET_SHARED, "update": _GET_EXCLUSIVE}[lock]
    row = tx.first(statement, {"credential_id": credential_id})
    return StoredCredential(row[0], row[1], row[2], row[3]) if row else None


def set_ciphertext(
    tx: Tx, credential_id: str, ciphertext: str, host: str | None, now_us: int
) -> None:
    tx.execute(
        _SET,
        {"credential_id": credential_id, "ciphertext": ciphertext, "host": host, "now": now_us},
    )


def delete_credentials(tx: Tx, credential_ids: list[str]) -> None:
    for credential_id in credential_ids:
        tx.execute(_DELETE, {"credential_id": credential_id})


def credentials_page(tx: Tx, after_id: str, limit: int) -> list[Any]:
    """(id, tenant_id, user_id, ciphertext, host) in id order, for key rotation in batches."""
    return tx.rows(_PAGE, {"after_id": after_id, "limit": limit})
