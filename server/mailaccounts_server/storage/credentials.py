"""Encrypted credential rows. Only ciphertext passes through here."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update

from mailaccounts_server.domain.ports import StoredCredential
from mailaccounts_server.storage.models import CredentialRow
from mailaccounts_server.storage.sql import Row, Statement, Tx

_T = cast(Table, CredentialRow.__table__)
_INSERT = Statement(insert(_T))
_SELECT = select(_T.c.id, _T.c.tenant_id, _T.c.user_id, _T.c.ciphertext, _T.c.host).where(
    _T.c.id == bindparam("credential_id")
)
# On PostgreSQL an account that starts using a credential (FOR SHARE) and the deletion of an
# unused one (FOR UPDATE) serialise on the row; SQLite compiles the locks away (its writers are
# serialised already).
_GET = {
    None: Statement(_SELECT),
    "share": Statement(_SELECT.with_for_update(read=True)),
    "update": Statement(_SELECT.with_for_update()),
}
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


def _credential(row: Row) -> StoredCredential:
    return StoredCredential(
        id=row["id"], tenant_id=row["tenant_id"], user_id=row["user_id"],
        ciphertext=row["ciphertext"], host=row["host"],
    )  # fmt: skip


def credential_values(credential: StoredCredential, now_us: int) -> dict[str, Any]:
    """The columns of a new credential row."""
    return {
        "id": credential.id,
        "tenant_id": credential.tenant_id,
        "user_id": credential.user_id,
        "ciphertext": credential.ciphertext,
        "host": credential.host,
        "created_at": now_us,
        "updated_at": now_us,
    }


class SqlCredentials:
    """CredentialRepository over SQLAlchemy-compiled statements."""

    async def get(
        self, tx: Tx, credential_id: str, *, lock: str | None = None
    ) -> StoredCredential | None:
        """A credential, whoever owns it (the vault checks). `lock` holds the row until the
        transaction ends: "share" while an account takes it into use, "update" before
        deciding to delete it."""
        row = await tx.first(_GET[lock], {"credential_id": credential_id})
        return _credential(row) if row is not None else None

    async def insert(self, tx: Tx, credential: StoredCredential, now_us: int) -> None:
        await tx.execute(_INSERT, credential_values(credential, now_us))

    async def set_ciphertext(
        self, tx: Tx, credential_id: str, ciphertext: str, host: str | None, now_us: int
    ) -> None:
        params = {"credential_id": credential_id, "ciphertext": ciphertext, "host": host,
                  "now": now_us}  # fmt: skip
        await tx.execute(_SET, params)

    async def delete(self, tx: Tx, credential_id: str) -> None:
        await tx.execute(_DELETE, {"credential_id": credential_id})

    async def page(self, tx: Tx, after_id: str, limit: int) -> list[StoredCredential]:
        """Credentials in id order, for key rotation in batches."""
        rows = await tx.rows(_PAGE, {"after_id": after_id, "limit": limit})
        return [_credential(r) for r in rows]
