"""Encrypted credential rows. Only ciphertext passes through here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from mailaccounts_server.storage.models import CredentialRow

_T = cast(Table, CredentialRow.__table__)


def insert_credential(
    session: Session,
    *,
    credential_id: str,
    tenant_id: str,
    user_id: str,
    ciphertext: str,
    now_us: int,
) -> None:
    session.execute(
        insert(_T).values(
            id=credential_id,
            tenant_id=tenant_id,
            user_id=user_id,
            ciphertext=ciphertext,
            created_at=now_us,
            updated_at=now_us,
        )
    )


def get_credential(session: Session, credential_id: str) -> tuple[str, str, str] | None:
    """(tenant_id, user_id, ciphertext) of a credential, whoever owns it; callers check."""
    row = session.execute(
        select(_T.c.tenant_id, _T.c.user_id, _T.c.ciphertext).where(_T.c.id == credential_id)
    ).first()
    return (row[0], row[1], row[2]) if row else None


def set_ciphertext(session: Session, credential_id: str, ciphertext: str, now_us: int) -> None:
    session.execute(
        update(_T).where(_T.c.id == credential_id).values(ciphertext=ciphertext, updated_at=now_us)
    )


def delete_credentials(session: Session, credential_ids: Sequence[str]) -> None:
    session.execute(delete(_T).where(_T.c.id.in_(credential_ids)))


def credentials_page(session: Session, after_id: str, limit: int) -> Sequence[Any]:
    """(id, tenant_id, user_id, ciphertext) in id order, for key rotation in batches."""
    stmt = (
        select(_T.c.id, _T.c.tenant_id, _T.c.user_id, _T.c.ciphertext)
        .where(_T.c.id > after_id)
        .order_by(_T.c.id)
        .limit(limit)
    )
    return session.execute(stmt).all()
